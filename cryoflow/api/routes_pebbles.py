"""``/api/v1/pebbles``: list with filters and paging, one pebble, cancel, retry."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cryoflow.api import views
from cryoflow.api.context import ctx
from cryoflow.api.params import (
    conflict,
    integer,
    json_body,
    limit,
    not_found,
    path_int,
    reason,
    text,
)

routes = web.RouteTableDef()

STATES = ("active", "done")
OUTCOMES = ("completed", "failed")


@routes.get("/api/v1/pebbles", allow_head=False)
async def list_pebbles(request: web.Request) -> web.Response:
    size = limit(request)
    rows = ctx(request).head.store.pebbles(
        state=text(request, "state", choices=STATES),
        outcome=text(request, "outcome", choices=OUTCOMES),
        after_id=integer(request, "after", default=0) or 0, limit=size)
    return web.json_response(views.page([views.pebble_summary(r) for r in rows], size, "id"),
                             dumps=views.dumps)


@routes.get("/api/v1/pebbles/{pebble_id}", allow_head=False)
async def get_pebble(request: web.Request) -> web.Response:
    head = ctx(request).head
    pebble = _pebble_or_404(request)
    jobs = head.store.jobs(pebble_id=pebble["id"], limit=1000)
    return web.json_response(views.pebble_view(head.graph, pebble, jobs, head.progress),
                             dumps=views.dumps)


@routes.post("/api/v1/pebbles/{pebble_id}/cancel")
async def cancel_pebble(request: web.Request) -> web.Response:
    pebble = _pebble_or_404(request)
    why = reason(await json_body(request), "cancelled through the API")
    if pebble["state"] != "active":
        raise conflict(f"pebble {pebble['id']} already finished ({pebble['outcome']}); "
                       "there is nothing to cancel")
    ctx(request).head.cancel_pebble(pebble["id"], why)
    return web.json_response({"pebble_id": pebble["id"], "accepted": True}, status=202)


@routes.post("/api/v1/pebbles/{pebble_id}/retry")
async def retry_pebble(request: web.Request) -> web.Response:
    pebble = _pebble_or_404(request)
    await json_body(request)
    if pebble["outcome"] != "failed" or not ctx(request).head.retry_pebble(pebble["id"]):
        raise conflict(f"pebble {pebble['id']} has not failed; only a failed pebble is retried")
    return web.json_response({"pebble_id": pebble["id"], "accepted": True}, status=202)


def _pebble_or_404(request: web.Request) -> dict[str, Any]:
    pebble_id = path_int(request, "pebble_id")
    pebble = ctx(request).head.store.pebble(pebble_id)
    if pebble is None:
        raise not_found(f"there is no pebble {pebble_id}")
    return pebble
