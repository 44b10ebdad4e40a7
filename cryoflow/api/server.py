"""Build the aiohttp app around a head and serve it on the head's own loop.

``start_api(head)`` binds 127.0.0.1 on a free port by default; a non-loopback host is
refused unless a token is given (:class:`~cryoflow.errors.ConfigError`). Handlers run
on the head's loop, so they call the head and read its store directly; the app hangs
off ``head.listeners`` and the core never imports it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from cryoflow.api import routes_jobs, routes_pebbles, routes_system, routes_workflow
from cryoflow.api.auth import Tokens, access_middleware, add_security_headers, is_loopback
from cryoflow.api.auth import json_errors as json_errors_middleware
from cryoflow.api.context import CONTEXT, ApiContext
from cryoflow.api.events import EventHub
from cryoflow.api.feed import EventFeed, LastOutputs
from cryoflow.api.metrics import MetricsCollector
from cryoflow.api.params import MAX_BODY_BYTES, query_middleware
from cryoflow.engine.records import Action
from cryoflow.errors import ConfigError
from cryoflow.head import Head, Listener

log = logging.getLogger("cryoflow.api")

SHUTDOWN_TIMEOUT_S = 5.0
MAX_LINE_BYTES = 64 * 1024
"""Longest request line or header: long enough that a bad query gets a JSON 400."""

RouteTable = Callable[[web.Application, ApiContext], None]
"""Adds a layer's routes (and what serves them) to the app, e.g. the ColonyOS routes."""


def build_context(head: Head, tokens: Tokens) -> ApiContext:
    """The feed, hub, metrics and output tracker for ``head`` (not started yet)."""
    feed = EventFeed(head.store, status=lambda: head.status, progress=lambda: head.progress)
    return ApiContext(head=head, tokens=tokens, feed=feed, hub=EventHub(feed, head.store),
                      metrics=MetricsCollector(head.graph), outputs=LastOutputs())


def build_app(context: ApiContext, extra_routes: Sequence[RouteTable] = ()) -> web.Application:
    """The aiohttp application: middlewares, security headers, the core routes and the
    ``extra_routes`` of the layers above."""
    app = web.Application(
        middlewares=[json_errors_middleware, access_middleware(context.tokens),
                     query_middleware(json.loads(routes_system.package_file("openapi.json")))],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONTEXT] = context
    app.on_response_prepare.append(add_security_headers)
    for module in (routes_workflow, routes_pebbles, routes_jobs, routes_system):
        app.add_routes(module.routes)
    app.add_routes(routes_system.static_routes())
    for install in extra_routes:
        install(app, context)
    return app


@dataclass
class ApiServer:
    """A running HTTP service; ``url`` is where it listens."""

    url: str
    context: ApiContext
    runner: web.AppRunner
    listener: Listener

    async def stop(self) -> None:
        """Close the WebSockets, stop the feed, and stop listening."""
        head = self.context.head
        if self.listener in head.listeners:
            head.listeners.remove(self.listener)
        await self.context.hub.close_all()
        await self.context.feed.stop()
        await self.runner.cleanup()


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not tokens.required:
        raise ConfigError(
            f"the HTTP service would listen on {host}, which other machines can reach, "
            "without a token; give ccworkflow --token-file FILE (or set CRYOFLOW_API_TOKEN; "
            "--admin-token-file for actions), or listen on 127.0.0.1")


async def start_api(head: Head, *, host: str = "127.0.0.1", port: int = 0,
                    token: str | None = None, admin_token: str | None = None,
                    extra_routes: Sequence[RouteTable] = ()) -> ApiServer:
    """Serve the API and web view for ``head`` on its loop; return the running server.

    ``token`` is the read-only token, ``admin_token`` the one for actions;
    ``extra_routes`` add the routes of layers above the API (see :data:`RouteTable`).
    """
    tokens = Tokens(read=token or None, admin=admin_token or None)
    check_bind(host, tokens)
    context = build_context(head, tokens)
    _start_side_parts(context)
    listener = _listener(context)
    head.listeners.append(listener)
    app = build_app(context, extra_routes)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                           max_line_size=MAX_LINE_BYTES, max_field_size=MAX_LINE_BYTES)
    await runner.setup()
    server = ApiServer(f"http://{host}:{port}/", context, runner, listener)
    try:
        await web.TCPSite(runner, host, port, backlog=128).start()
    except OSError as exc:
        await server.stop()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                          "pick another address with --http HOST:PORT") from exc
    server.url = _url(runner)
    return server


def _start_side_parts(context: ApiContext) -> None:
    store = context.head.store
    context.outputs.seed(store, store.next_pebble_id() - 1)
    context.metrics.seed(store)
    context.feed.start()
    context.feed.subscribe(context.metrics)


def _listener(context: ApiContext) -> Listener:
    """The head listener: remember outputs, wake the feed; never raises into the head."""

    def on_change(action: Action) -> None:
        try:
            context.outputs(action)
            context.feed.wake()
        except Exception:
            log.exception("the API's listener failed on %s", type(action).__name__)

    return on_change


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
