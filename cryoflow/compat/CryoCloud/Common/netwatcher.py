"""``CryoCloud.Common.NetWatcher``: JSON objects posted over HTTP call ``onAdd``.

A thread serving ``POST`` (any path) on ``host`` (default 127.0.0.1) and ``port``:
the body must be a JSON object (at most 1 MiB) matching ``schema`` when one is given;
``onAdd(info)`` is called and its return value (the pebble id) is answered as
``202 {"id": ...}``. ``GET /schema`` returns the schema. cryoflow's own ``netwatcher``
input adds tokens, idempotency keys and status queries; this one is for modules
written for CryoCloud. Both refuse (403) a post from another browser origin than
``cors`` and, bound to loopback, a ``Host`` that is not loopback (DNS rebinding), with
the rules of :mod:`cryoflow.watch.httpguard`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema

from cryoflow.watch.httpguard import host_problem, is_loopback, origin_problem

MAX_BODY = 1 << 20


class NetWatcher(threading.Thread):
    def __init__(
        self,
        port: int,
        onAdd: Callable[[dict[str, Any]], Any] | None = None,  # noqa: N803 - CryoCloud's names
        onError: Callable[[str], Any] | None = None,  # noqa: N803
        stop_event: threading.Event | None = None,
        handler: Any = None,
        schema: dict[str, Any] | None = None,
        cors: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(name=f"netwatcher-{port}", daemon=True)
        self.on_add, self.on_error = onAdd, onError
        self.schema = schema
        self.cors = cors
        self.stop_event = stop_event or threading.Event()
        self.loopback = is_loopback(host)
        self.server = ThreadingHTTPServer((host, int(port)), _handler_for(self))
        self.port = self.server.server_address[1]

    def set_schema(self, schema: dict[str, Any] | None) -> None:
        self.schema = schema

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        serving = threading.Thread(target=self.server.serve_forever, args=(0.2,), daemon=True)
        serving.start()
        self.stop_event.wait()
        self.server.shutdown()
        self.server.server_close()

    def accept(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and reply for a posted body."""
        try:
            info = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return 400, {"error": f"the body is not JSON: {exc}"}
        if not isinstance(info, dict):
            return 400, {"error": "post a JSON object"}
        if self.schema is not None:
            try:
                jsonschema.validate(info, self.schema)
            except jsonschema.ValidationError as exc:
                return 400, {"error": f"the post does not match the schema: {exc.message}"}
        try:
            ident = self.on_add(info) if self.on_add is not None else None
        except Exception as exc:  # the module's callback failed: say so to the poster
            if self.on_error is not None:
                self.on_error(str(exc))
            return 500, {"error": f"{type(exc).__name__}: {exc}"}
        return 202, {"id": ident}


def _handler_for(watcher: NetWatcher) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: the input's log says what was added."""

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if watcher.cors:
                self.send_header("Access-Control-Allow-Origin", watcher.cors)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            refusal = _refusal(self.headers, watcher, post=False)
            if refusal is not None:
                self._reply(*refusal)
            elif self.path.rstrip("/") == "/schema":
                self._reply(200, watcher.schema or {})
            else:
                self._reply(404, {"error": "not found: POST a JSON object, GET /schema"})

        def do_POST(self) -> None:  # noqa: N802
            refusal = _refusal(self.headers, watcher, post=True)
            if refusal is not None:
                self._reply(*refusal)
                return
            length = int(self.headers.get("Content-Length") or 0)
            self._reply(*watcher.accept(self.rfile.read(length)))

    return Handler


def _refusal(headers: Any, watcher: NetWatcher, *,
             post: bool) -> tuple[int, dict[str, str]] | None:
    """The answer to a request that must be refused, or None: a foreign Host (when bound
    to loopback), and for a post a foreign Origin, a Content-Length that is not digits
    or is over MAX_BODY."""
    host, cors = headers.get("Host"), watcher.cors
    problem = host_problem(host) if watcher.loopback else None
    if problem is None and post:
        problem = origin_problem(headers.get("Origin"), host, (cors,) if cors else ())
    if problem is not None:
        return 403, {"error": problem}
    if not post:
        return None
    text = headers.get("Content-Length") or "0"
    if not (text.isascii() and text.isdigit()):
        return 400, {"error": "send the body with a Content-Length in digits"}
    if int(text) > MAX_BODY:
        return 413, {"error": f"the body is larger than {MAX_BODY} bytes"}
    return None
