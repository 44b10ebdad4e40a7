"""``/api/v1/workflow`` (graph, Cloudmesh views, pause), ``/status`` and ``/workers``."""

from __future__ import annotations

from aiohttp import web

from cryoflow.api import views
from cryoflow.api.context import ctx
from cryoflow.api.params import bad_request, integer, json_body, not_found
from cryoflow.store.runs import NodeShapes

routes = web.RouteTableDef()


@routes.get("/api/v1/workflow", allow_head=False)
async def get_workflow(request: web.Request) -> web.Response:
    c = ctx(request)
    store = c.head.store
    runs = store.node_runs(NodeShapes.of(c.head.graph))
    view = views.workflow_view(c.head.graph, counts=runs, options=c.head.options,
                               last_outputs=c.outputs.outputs, pebbles=store.pebble_counts(),
                               held=c.head.held)
    view["paused"] = c.head.paused
    view["cursor"] = {"seq": c.feed.seq, "log_id": c.feed.log_id}
    return web.json_response(view, dumps=views.dumps)


@routes.get("/api/v1/workflow/definition", allow_head=False)
async def get_definition(request: web.Request) -> web.Response:
    graph = ctx(request).head.graph
    return web.json_response({"collection": f"{graph.name}-flow",
                              "items": views.definition_view(graph)}, dumps=views.dumps)


@routes.get("/api/v1/workflow/active", allow_head=False)
async def get_active(request: web.Request) -> web.Response:
    c = ctx(request)
    graph, store = c.head.graph, c.head.store
    pebble_id = integer(request, "pebble", low=1)
    if pebble_id is None:
        items = views.active_view(graph, store.node_runs(NodeShapes.of(graph)),
                                  c.outputs.outputs)
    else:
        pebble = store.pebble(pebble_id)
        if pebble is None:
            raise not_found(f"there is no pebble {pebble_id}")
        items = views.pebble_active_view(graph, pebble, store.jobs(pebble_id=pebble_id,
                                                                   limit=1000))
    return web.json_response({"collection": f"{graph.name}-flow-active", "items": items},
                             dumps=views.dumps)


@routes.post("/api/v1/workflow/pause")
async def post_pause(request: web.Request) -> web.Response:
    body = await json_body(request)
    paused = body.get("paused")
    if not isinstance(paused, bool):
        raise bad_request('send {"paused": true} to hold queued jobs or {"paused": false}')
    head = ctx(request).head
    head.pause(paused)
    return web.json_response({"paused": head.paused})


@routes.get("/api/v1/status", allow_head=False)
async def get_status(request: web.Request) -> web.Response:
    return web.json_response({"status": ctx(request).head.store.status_values()},
                             dumps=views.dumps)


@routes.get("/api/v1/workers", allow_head=False)
async def get_workers(request: web.Request) -> web.Response:
    head = ctx(request).head
    capacity = {str(k): v for k, v in head.executor.capacity().items()}
    free = {str(k): v for k, v in head.executor.free_slots().items()}
    running = head.store.jobs(state="running", limit=1000)
    return web.json_response(views.workers_view(capacity, free, running, head.progress),
                             dumps=views.dumps)
