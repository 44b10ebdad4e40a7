"""The HTTP receiver behind the ``netwatcher`` module (aiohttp, on the head's loop).

The server runs on the running head's own event loop (the input's thread only waits
for the stop), so a post is offered and committed with no hand-over between threads:
the posts that arrive while one commit runs ride on the next one together. A handler
without a loop (no head behind it) gets a loop of the input's own thread.

Contract of :class:`NetWatcher`:

- ``POST /task`` (and any POST path but ``/status``, as CryoCloud accepted): a JSON
  object, strictly parsed (:mod:`cryoflow.watch.jsonbody`) and checked against the
  schema when one is given. The reply, 202 ``{"id": N}``, is sent only after the
  pebble is committed to the store. A post with an ``Idempotency-Key`` header that
  was committed before gets the same id again and makes no second pebble.
- ``GET /status/<id>``, ``POST /status`` (a list of ids), ``GET /schema`` and
  ``GET /close/<id>`` (kept for CryoCloud clients; it changes nothing, as no GET
  does). Nothing else is served: no files of any kind.
- Refusals are JSON ``{"error": "<what to change>"}``: 400 bad JSON, not an object or
  a schema violation (with the failing path); 401 a missing or wrong token (compared
  with :func:`hmac.compare_digest`); 404 unknown path or id; 408 a body that does not
  arrive within ``read_timeout_s``; 413 over ``max_bytes``; 415 a Content-Type that is
  not JSON; 503 with ``Retry-After`` while the intake is paused (restrictions, head
  stopping), while ``max_pending`` pebbles are unfinished, or when the store cannot
  commit (full); 503 without it, "the head stopped: ...", when the database is
  damaged or its disk fails (the head then stops).
- A connection that does not complete its request headers within
  ``header_timeout_s`` is closed (slow clients cannot hold the server).
- A host that is not loopback needs a token: :meth:`NetwatchConfig.from_args`
  refuses to start without one.
- The rules shared with the REST API (:mod:`cryoflow.watch.httpguard`): without a
  token, a ``Host`` that is not loopback is refused 403 (DNS rebinding); a POST with
  an ``Origin`` of another site is refused 403 whatever its Content-Type, unless the
  origin is in ``cors``; an id that is not ASCII digits within SQLite's integer range
  is refused 400.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from cryoflow.errors import InputError, StoreBrokenError, StoreError
from cryoflow.watch import Handler, failpoint, intake_paused
from cryoflow.watch.httpguard import check_id, host_problem, origin_problem, parse_id
from cryoflow.watch.jsonbody import BodyError, SchemaCheck, kind_of, parse_json
from cryoflow.watch.netconfig import NetwatchConfig, is_loopback
from cryoflow.watch.netstatus import status_of

log = logging.getLogger("cryoflow.watch")

MAX_STATUS_IDS = 1000
_IDEM_KEY = re.compile(r"[\x21-\x7e]{1,200}")
_JSON_TYPES = ("application/json", "text/json")
_CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key"

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refusal(Exception):
    """A request answered with an error status and ``{"error": message}``."""

    def __init__(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        response = reply(self.status, {"error": self.message})
        if self.retry_after_s is not None:
            response.headers["Retry-After"] = str(self.retry_after_s)
        if self.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response


def reply(status: int, data: Any) -> web.Response:
    body = json.dumps(data, separators=(",", ":"), default=str).encode()
    return web.Response(status=status, body=body, content_type="application/json")


class NetWatcher:
    """Serves one input node's HTTP port (see the module contract)."""

    def __init__(self, config: NetwatchConfig, handler: Handler) -> None:
        self.config = config
        self.handler = handler
        self.port: int | None = None
        self.ready = threading.Event()
        self._schema = SchemaCheck(config.schema) if config.schema is not None else None
        self._token = config.token.encode() if config.token else None
        self._inflight = 0
        self._offer_here: Callable[..., asyncio.Future[int]] | None = None

    # ------------------------------------------------------------------ life cycle

    def run(self, stop_event: threading.Event) -> None:
        """Serve until ``stop_event`` is set (blocks the calling thread).

        On the head's loop when the handler has one; the server then closes on that
        loop soon after the stop, without this thread waiting for it (the head's loop
        may be the one waiting for this thread).
        """
        loop: asyncio.AbstractEventLoop | None = getattr(self.handler, "loop", None)
        offer_here = getattr(self.handler, "offer_here", None)
        if loop is None or offer_here is None:
            asyncio.run(self._serve(stop_event))
            return
        self._offer_here = offer_here
        served = asyncio.run_coroutine_threadsafe(self._serve(stop_event), loop)
        while not stop_event.wait(0.1):
            if served.cancelled():  # the head's loop has ended
                return
            if served.done():
                served.result()  # it could not listen: the input ends with why
                return

    async def _serve(self, stop_event: threading.Event) -> None:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                               keepalive_timeout=self.config.header_timeout_s,
                               shutdown_timeout=2.0)
        await runner.setup()
        try:
            await self._listen(runner)
            while not stop_event.is_set():
                await asyncio.sleep(0.1)
        finally:
            await runner.cleanup()
            self.handler.head.release()

    async def _listen(self, runner: web.AppRunner) -> None:
        site = web.TCPSite(runner, self.config.host, self.config.port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise InputError(f"input node '{self.handler.node.name}': cannot listen on "
                             f"{self.config.host}:{self.config.port}: {exc}") from exc
        self.port = int(runner.addresses[0][1])
        self.ready.set()
        log.info("input node '%s' listens on http://%s:%d/task", self.handler.node.name,
                 self.config.host, self.port)

    def app(self) -> web.Application:
        """The aiohttp application: routes and the one middleware."""
        app = web.Application(client_max_size=self.config.max_bytes,
                              middlewares=[self._middleware()])
        app.router.add_route("POST", "/status", self.post_status)
        app.router.add_route("GET", "/status/{id}", self.get_status)
        app.router.add_route("GET", "/schema", self.get_schema)
        app.router.add_route("GET", "/close/{id}", self.get_close)
        app.router.add_route("GET", "/{tail:.*}", self.not_found)
        app.router.add_route("POST", "/{tail:.*}", self.post_task)
        app.router.add_route("OPTIONS", "/{tail:.*}", self.preflight)
        return app

    # ------------------------------------------------------------------ routes

    async def post_task(self, request: web.Request) -> web.Response:
        """A new item: 202 ``{"id"}`` once its pebble is committed."""
        self._gate()
        item = await self._read(request, schema=True)
        if not isinstance(item, dict):
            raise Refusal(400, f"the body must be a JSON object, not {kind_of(item)}")
        key = _idempotency_key(request, self.handler.node.name)
        failpoint(self.handler, "post_parsed_before_commit")
        pebble_id = await self._commit(item, key)
        return web.Response(status=202, body=b'{"id":%d}' % pebble_id,
                            content_type="application/json")

    async def get_status(self, request: web.Request) -> web.Response:
        return reply(200, self._status_or_404(request.match_info["id"]))

    async def post_status(self, request: web.Request) -> web.Response:
        """Statuses of many ids: ``{"<id>": status or null}``."""
        ids = _id_list(await self._read(request, schema=False))
        return reply(200, {str(i): self._status(i) for i in ids})

    async def get_schema(self, request: web.Request) -> web.Response:
        return reply(200, self._schema.schema if self._schema is not None else {})

    async def get_close(self, request: web.Request) -> web.Response:
        """CryoCloud's "forget this order": nothing is kept per order, so only check it."""
        status = self._status_or_404(request.match_info["id"])
        return reply(200, {"id": status["id"], "closed": True})

    async def not_found(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    # ------------------------------------------------------------------ decisions

    def _gate(self) -> None:
        retry = self.config.retry_after_s
        reason = intake_paused(self.handler)
        if reason is not None:
            raise Refusal(503, reason, retry_after_s=retry)
        pending = self.handler.head.unfinished + self._inflight
        if pending >= self.config.max_pending:
            raise Refusal(503, f"{pending} pebbles are unfinished (the limit is "
                          f"{self.config.max_pending}); retry later", retry_after_s=retry)

    async def _read(self, request: web.Request, *, schema: bool) -> Any:
        _check_content_type(request)
        length = request.content_length
        if length is not None and length > self.config.max_bytes:
            raise _too_large(self.config.max_bytes)
        try:
            async with asyncio.timeout(self.config.read_timeout_s):
                raw = await request.read()
        except TimeoutError:
            raise Refusal(408, f"the body did not arrive within "
                          f"{self.config.read_timeout_s:g} s") from None
        try:
            value = parse_json(raw)
        except BodyError as exc:
            raise Refusal(400, str(exc)) from None
        problem = self._schema.problem(value) if schema and self._schema else None
        if problem is not None:
            raise Refusal(400, f"the post does not match the schema {problem}")
        return value

    async def _commit(self, item: dict[str, Any], key: str | None) -> int:
        retry = self.config.retry_after_s
        self._inflight += 1
        try:
            future = self._offer(item, key)
            async with asyncio.timeout(self.config.commit_timeout_s):
                return await asyncio.shield(future)  # a timeout must not cancel the offer
        except StoreBrokenError as exc:
            raise Refusal(503, f"the head stopped: {exc}; nothing was stored") from None
        except StoreError as exc:
            raise Refusal(503, f"the state store cannot take the post now: {exc}",
                          retry_after_s=retry) from None
        except TimeoutError:
            raise Refusal(503, "the post was not committed in time; send it again (with "
                          "the same Idempotency-Key, to be safe)", retry_after_s=retry) from None
        except RuntimeError as exc:  # the head's loop has stopped
            raise Refusal(503, f"the workflow is not running: {exc}",
                          retry_after_s=retry) from None
        finally:
            self._inflight -= 1

    def _offer(self, item: dict[str, Any], key: str | None) -> asyncio.Future[int]:
        if self._offer_here is not None:  # on the head's loop
            return self._offer_here(item, idem_key=key)
        return asyncio.wrap_future(self.handler.submit(item, idem_key=key))

    def _status_or_404(self, text: str) -> dict[str, Any]:
        try:
            pebble_id = parse_id(text)
        except ValueError as exc:
            raise Refusal(400, str(exc)) from None
        status = self._status(pebble_id)
        if status is None:
            raise Refusal(404, f"no pebble {text[:40]!r} was posted to this input")
        return status

    def _status(self, pebble_id: int) -> dict[str, Any] | None:
        pebble = self.handler.head.pebble(pebble_id)
        if pebble is None or pebble.get("input_node") != self.handler.node.name:
            return None
        return status_of(pebble, self.handler.head.node_order, time.time())

    # ------------------------------------------------------------------ middleware

    def _middleware(self) -> Any:
        @web.middleware
        async def guard(request: web.Request, handler: Route) -> web.StreamResponse:
            try:
                self._admit(request)
                response = await handler(request)
            except Refusal as refusal:
                response = refusal.response()
            except web.HTTPException as exc:
                response = _http_error(exc, self.config.max_bytes)
            except Exception:  # a bug here must still answer in JSON
                log.exception("input node '%s': request %s %s failed",
                              self.handler.node.name, request.method, request.path)
                response = Refusal(500, "internal error; see the head's log").response()
            self._cors(request, response)
            return response

        return guard

    def _admit(self, request: web.Request) -> None:
        """Host (without a token), token, then Origin for posts: the shared rules."""
        if self._token is None:
            problem = host_problem(request.host)
            if problem is not None:
                raise Refusal(403, problem)
        if request.method == "OPTIONS":
            return
        self._authorize(request)
        if request.method not in ("GET", "HEAD"):
            problem = origin_problem(request.headers.get("Origin"), request.host,
                                     self.config.cors)
            if problem is not None:
                raise Refusal(403, problem)

    def _authorize(self, request: web.Request) -> None:
        if self._token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Refusal(401, "a token is required: send 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise Refusal(401, "the token is wrong")

    def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if not origin or not self.config.cors or response.prepared:
            return
        if "*" not in self.config.cors and origin not in self.config.cors:
            return
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = "*" if "*" in self.config.cors else origin
        headers["Vary"] = "Origin"
        headers["Access-Control-Expose-Headers"] = "Retry-After"
        if request.method == "OPTIONS":
            headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            headers["Access-Control-Max-Age"] = "600"


def _check_content_type(request: web.Request) -> None:
    given = request.headers.get("Content-Type")
    if given is None:
        return  # CryoCloud's client posts without one
    kind = request.content_type
    if kind not in _JSON_TYPES and not (kind.startswith("application/") and
                                        kind.endswith("+json")):
        raise Refusal(415, f"send the body as application/json, not {given[:60]!r}")


def _idempotency_key(request: web.Request, node: str) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _IDEM_KEY.fullmatch(key):
        raise Refusal(400, "an Idempotency-Key must be 1 to 200 visible ASCII characters")
    return f"{node}:{key}"


def _id_list(value: Any) -> list[int]:
    ids = value.get("ids") if isinstance(value, dict) else value
    if not isinstance(ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise Refusal(400, 'send a JSON list of pebble ids, e.g. [1, 2] or {"ids": [1, 2]}')
    if len(ids) > MAX_STATUS_IDS:
        raise Refusal(400, f"ask for at most {MAX_STATUS_IDS} ids at once, not {len(ids)}")
    try:
        return [check_id(i) for i in ids]
    except ValueError as exc:
        raise Refusal(400, str(exc)) from None


def _too_large(limit: int) -> Refusal:
    return Refusal(413, f"the body is larger than {limit} bytes (max_bytes)")


def _http_error(exc: web.HTTPException, max_bytes: int) -> web.Response:
    if exc.status == 413:
        return _too_large(max_bytes).response()
    if exc.status == 404:
        return Refusal(404, "not found: POST /task, GET /status/<id>, POST /status, "
                       "GET /schema, GET /close/<id>").response()
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return Refusal(405, f"{exc.method} is not allowed here; use {allowed}").response()
    return Refusal(exc.status, exc.reason or exc.text or "refused").response()


def serve(handler: Handler, args: Mapping[str, Any], stop_event: threading.Event,
          env: Mapping[str, str]) -> None:
    """The ``netwatcher`` module's ``start``: check the args, then serve until stopped."""
    config = NetwatchConfig.from_args(handler.node.name, args, env)
    NetWatcher(config, handler).run(stop_event)


__all__ = ["NetWatcher", "NetwatchConfig", "Refusal", "is_loopback", "serve"]
