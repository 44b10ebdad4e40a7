"""Probes, metrics, the OpenAPI document and the web view's files."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from cryoflow.api.context import ctx
from cryoflow.api.events import events_handler
from cryoflow.api.metrics import CONTENT_TYPE

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.Response]]

STATIC_FILES = {
    "/": ("index.html", "text/html"),
    "/static/app.js": ("app.js", "text/javascript"),
    "/static/app.css": ("app.css", "text/css"),
    "/static/favicon.svg": ("favicon.svg", "image/svg+xml"),
}


def package_file(name: str) -> bytes:
    """A file shipped in the ``cryoflow.api`` package."""
    return resources.files("cryoflow.api").joinpath(name).read_bytes()


@routes.get("/healthz", allow_head=False)
async def healthz(request: web.Request) -> web.Response:
    """Alive: the head's loop answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz", allow_head=False)
async def readyz(request: web.Request) -> web.Response:
    """Ready: the head accepts items and its store answers."""
    head = ctx(request).head
    head.store.events(after_seq=2**62, limit=1)
    if not head.accepting:
        return web.json_response({"status": "stopping"}, status=503)
    return web.json_response({"status": "ready", "paused": head.paused})


@routes.get("/metrics", allow_head=False)
async def metrics(request: web.Request) -> web.Response:
    c = ctx(request)
    body = c.metrics.render(c.head, time.time())
    return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})


@routes.get("/api/v1/openapi.json", allow_head=False)
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=package_file("openapi.json"), content_type="application/json")


@routes.get("/api/v1/events", allow_head=False)
async def events(request: web.Request) -> web.StreamResponse:
    return await events_handler(request)


def _static(name: str, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=package_file("static/" + name), content_type=content_type,
                            charset="utf-8" if content_type.startswith("text/") else None)

    return serve


def static_routes() -> list[web.RouteDef]:
    """One GET route per file of the web view."""
    return [web.get(path, _static(name, kind), allow_head=False)
            for path, (name, kind) in STATIC_FILES.items()]
