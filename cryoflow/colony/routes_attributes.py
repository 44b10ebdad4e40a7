"""``/api/v1/processes/{id}/attributes`` and ``/api/v1/attributes/{id}``.

An executor adds an attribute to the process it runs (``{"executorid", "key",
"value"}``); anyone with read access reads one by its id. The logic is in
:mod:`cryoflow.colony.attributes` and :class:`~cryoflow.colony.queue.ColonyQueue`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cryoflow.api import views
from cryoflow.api.params import bad_request, json_body
from cryoflow.colony.queue import ColonyError, ColonyQueue

routes = web.RouteTableDef()
QUEUE: web.AppKey[ColonyQueue] = web.AppKey("cryoflow.colony.attributes", ColonyQueue)


def install(app: web.Application, queue: ColonyQueue) -> None:
    app[QUEUE] = queue
    app.add_routes(routes)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=views.dumps)


@routes.post("/api/v1/processes/{id}/attributes")
async def post_attribute(request: web.Request) -> web.Response:
    body = await json_body(request)
    executor_id = body.get("executorid")
    if not isinstance(executor_id, str) or not executor_id:
        raise bad_request("executorid must be the id the executor got when it registered")
    if "value" not in body:
        raise bad_request("give the attribute's 'key' and 'value'")
    try:
        attribute = request.app[QUEUE].add_attribute(request.match_info["id"], executor_id,
                                                     body.get("key"), body["value"])
    except ColonyError as exc:
        return _json({"error": str(exc)}, exc.status)
    return _json(attribute, 201)


@routes.get("/api/v1/attributes/{id}", allow_head=False)
async def get_attribute(request: web.Request) -> web.Response:
    try:
        return _json(request.app[QUEUE].attribute(request.match_info["id"]))
    except ColonyError as exc:
        return _json({"error": str(exc)}, exc.status)
