"""``/api/v1/workflows``, ``/api/v1/executors`` and ``/api/v1/processes``: ColonyOS parity.

Give :func:`route_table` to the app factory (``build_app(context, extra_routes=[...])``
or ``start_api(head, extra_routes=[...])``), or call :func:`install` on an app. Every state
change is a ``POST`` with a JSON body (the admin token, when tokens are set); an
executor proves who it is with the ``executorid`` it got when it registered. The logic
lives in :mod:`cryoflow.colony.queue`; handlers parse, call and answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from cryoflow.api import views
from cryoflow.api.context import ApiContext
from cryoflow.api.params import bad_request, json_body
from cryoflow.api.server import RouteTable
from cryoflow.colony import routes_attributes as attributes
from cryoflow.colony.queue import ColonyError, ColonyQueue
from cryoflow.colony.service import ColonyService
from cryoflow.errors import GraphValidationError

routes = web.RouteTableDef()
COLONY: web.AppKey[ColonyService] = web.AppKey("cryoflow.colony", ColonyService)


def install(app: web.Application, context: ApiContext, *,
            queue: ColonyQueue | None = None) -> ColonyService:
    """Add the routes and the service (started and stopped with the app) to ``app``.

    Pass the ``queue`` the head's own :class:`~cryoflow.workers.routing.RoutingExecutor`
    uses, so its ``executortype`` jobs are served too.
    """
    service = ColonyService(context.head.store.path.parent / "workflows",
                            queue or ColonyQueue())
    app[COLONY] = service
    app.add_routes(routes)
    attributes.install(app, service.queue)

    async def start(_app: web.Application) -> None:
        await service.start()

    async def stop(_app: web.Application) -> None:
        await service.stop()

    async def release(_app: web.Application) -> None:
        service.queue.release_waiters()  # long polls must not hold the shutdown

    app.on_startup.append(start)
    app.on_shutdown.append(release)
    app.on_cleanup.append(stop)
    return service


def route_table(queue: ColonyQueue | None = None) -> RouteTable:
    """The routes and their service as a route table for the API's app factory."""

    def add(app: web.Application, context: ApiContext) -> None:
        install(app, context, queue=queue)

    return add


def _service(request: web.Request) -> ColonyService:
    return request.app[COLONY]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=views.dumps)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _answers_colony_errors(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ColonyError as exc:
            return _json({"error": str(exc)}, exc.status)

    return wrapped


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > 200:
        raise bad_request(f"{key} must be text of 1 to 200 characters")
    return value


# ----------------------------------------------------------------------------- workflows


@routes.post("/api/v1/workflows")
@_answers_colony_errors
async def post_workflow(request: web.Request) -> web.Response:
    body = await json_body(request)
    spec = body.get("spec", body)
    try:
        run = await _service(request).submit(spec)
    except GraphValidationError as exc:
        return _json({"error": "the workflow is not valid", "problems": exc.problems}, 400)
    return _json(_service(request).get(run.id), 201)


@routes.get("/api/v1/workflows", allow_head=False)
async def get_workflows(request: web.Request) -> web.Response:
    return _json({"items": _service(request).list()})


@routes.get("/api/v1/workflows/{id}", allow_head=False)
@_answers_colony_errors
async def get_workflow(request: web.Request) -> web.Response:
    return _json(_service(request).get(request.match_info["id"]))


@routes.post("/api/v1/workflows/{id}/cancel")
@_answers_colony_errors
async def post_cancel(request: web.Request) -> web.Response:
    return _json(_service(request).cancel(request.match_info["id"]))


# ----------------------------------------------------------------------------- executors


@routes.post("/api/v1/executors")
async def post_executor(request: web.Request) -> web.Response:
    body = await json_body(request)
    functions = body.get("functions", [])
    if not isinstance(functions, list) or not all(isinstance(f, str) for f in functions):
        raise bad_request("functions must be a list of function names")
    info = _service(request).queue.register(_text(body, "name"), _text(body, "type"),
                                            tuple(functions))
    return _json({"executorid": info.id, "name": info.name, "type": info.type,
                  "functions": list(info.functions)}, 201)


@routes.post("/api/v1/executors/{id}/assign")
@_answers_colony_errors
async def post_assign(request: web.Request) -> web.Response:
    body = await json_body(request)
    timeout = body.get("timeout", 0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
        raise bad_request("timeout must be a number of seconds >= 0")
    process = await _service(request).queue.assign(request.match_info["id"], float(timeout))
    return _json({"process": process})


# ----------------------------------------------------------------------------- processes


@routes.get("/api/v1/processes/{id}", allow_head=False)
@_answers_colony_errors
async def get_process(request: web.Request) -> web.Response:
    return _json(_service(request).queue.process(request.match_info["id"]).view())


@routes.post("/api/v1/processes/{id}/close")
@_answers_colony_errors
async def post_close(request: web.Request) -> web.Response:
    body = await json_body(request)
    output = body.get("output", [])
    view = _service(request).queue.close(request.match_info["id"], _text(body, "executorid"),
                                         output)
    return _json(view)


@routes.post("/api/v1/processes/{id}/fail")
@_answers_colony_errors
async def post_fail(request: web.Request) -> web.Response:
    body = await json_body(request)
    errors = body.get("errors") or []
    if not isinstance(errors, list):
        raise bad_request("errors must be a list")
    view = _service(request).queue.fail(request.match_info["id"], _text(body, "executorid"),
                                        [str(e) for e in errors])
    return _json(view)


@routes.post("/api/v1/processes/{id}/children")
@_answers_colony_errors
async def post_child(request: web.Request) -> web.Response:
    body = await json_body(request)
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise bad_request("send the new process as a function spec under 'spec'")
    request_ = {"spec": spec, "insert": bool(body.get("insert"))}
    _service(request).queue.add_child(request.match_info["id"], _text(body, "executorid"),
                                      request_)
    return _json({"nodename": spec.get("nodename"), "insert": request_["insert"]}, 201)
