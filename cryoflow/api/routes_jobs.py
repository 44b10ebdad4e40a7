"""``/api/v1/jobs`` (list, one, its log lines and status values, cancel) and ``/logs``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cryoflow.api import views
from cryoflow.api.context import ctx
from cryoflow.api.params import conflict, integer, json_body, limit, not_found, number, text
from cryoflow.graph.instances import base_name

routes = web.RouteTableDef()

STATES = ("queued", "running", "done", "cancelled")


@routes.get("/api/v1/jobs", allow_head=False)
async def list_jobs(request: web.Request) -> web.Response:
    head, size = ctx(request).head, limit(request)
    rows = head.store.jobs(state=text(request, "state", choices=STATES),
                           node=text(request, "node"), pebble_id=integer(request, "pebble"),
                           after=text(request, "after"), limit=size)
    items = [views.job_summary(r, head.progress, head.held) for r in rows]
    return web.json_response(views.page(items, size, "id"), dumps=views.dumps)


@routes.get("/api/v1/jobs/{job_id}", allow_head=False)
async def get_job(request: web.Request) -> web.Response:
    job = _job_or_404(request)
    head = ctx(request).head
    return web.json_response(views.job_view(job, head.progress, head.held), dumps=views.dumps)


@routes.get("/api/v1/jobs/{job_id}/logs", allow_head=False)
async def get_job_logs(request: web.Request) -> web.Response:
    job, size = _job_or_404(request), limit(request, 1000)
    rows = ctx(request).head.store.logs(job_id=job["id"], limit=size,
                                        after_id=integer(request, "after", default=0) or 0)
    return web.json_response(views.page(rows, size, "id"), dumps=views.dumps)


@routes.get("/api/v1/jobs/{job_id}/status", allow_head=False)
async def get_job_status(request: web.Request) -> web.Response:
    job, head = _job_or_404(request), ctx(request).head
    channel = base_name(job["node"])
    values = head.store.status_values(channel).get(channel, {})
    return web.json_response({"job_id": job["id"], "channel": channel, "values": values,
                              "progress": head.progress.get(job["id"])}, dumps=views.dumps)


@routes.post("/api/v1/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    job = _job_or_404(request)
    await json_body(request)
    if job["state"] != "running":
        raise conflict(f"job {job['id']} is {job['state']}, not running; to stop a queued "
                       f"job cancel its pebble (POST /api/v1/pebbles/{job['pebble_id']}/cancel)")
    ctx(request).head.executor.cancel(job["id"])
    return web.json_response({"job_id": job["id"], "accepted": True}, status=202)


@routes.get("/api/v1/logs", allow_head=False)
async def list_logs(request: web.Request) -> web.Response:
    size = limit(request, 1000)
    rows = ctx(request).head.store.logs(
        pebble_id=integer(request, "pebble"), job_id=text(request, "job"),
        node=text(request, "node"), level=text(request, "level"), grep=text(request, "grep"),
        since=number(request, "since"), after_id=integer(request, "after", default=0) or 0,
        limit=size)
    return web.json_response(views.page(rows, size, "id"), dumps=views.dumps)


def _job_or_404(request: web.Request) -> dict[str, Any]:
    job_id = request.match_info["job_id"]
    job = ctx(request).head.store.job(job_id) if len(job_id) <= 500 else None
    if job is None:
        raise not_found(f"there is no job {job_id!r}")
    return job
