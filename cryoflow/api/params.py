"""Query and body parsing for handlers: each bad value is a 400 with a sentence."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

DIGITS = re.compile(r"[0-9]{1,18}")
_INTEGER = re.compile(r"-?[0-9]{1,30}")
MAX_LIMIT = 1000
MAX_BODY_BYTES = 64 * 1024


def bad_request(message: str) -> web.HTTPBadRequest:
    """A 400 whose JSON body carries ``message``."""
    return web.HTTPBadRequest(text=json.dumps({"error": message}),
                              content_type="application/json")


def not_found(message: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": message}), content_type="application/json")


def conflict(message: str) -> web.HTTPConflict:
    return web.HTTPConflict(text=json.dumps({"error": message}), content_type="application/json")


def integer(request: web.Request, name: str, *, default: int | None = None,
            low: int = 0, high: int = 2**62) -> int | None:
    """The query parameter ``name`` as an int within ``[low, high]``."""
    text = request.query.get(name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):  # int() would also read "١٢", "1_000" and " 12"
        raise bad_request(f"query parameter {name} must be an integer in ASCII digits, "
                          f"not {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise bad_request(f"query parameter {name} must be between {low} and {high}")
    return value


def limit(request: web.Request, default: int = 100) -> int:
    """The page size: ``?limit=`` between 1 and :data:`MAX_LIMIT`."""
    value = integer(request, "limit", default=default, low=1, high=MAX_LIMIT)
    assert value is not None
    return value


def number(request: web.Request, name: str) -> float | None:
    """The query parameter ``name`` as a finite float, or None."""
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise bad_request(f"query parameter {name} must be a number, not {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise bad_request(f"query parameter {name} must be a finite number")
    return value


def text(request: web.Request, name: str, *, choices: Collection[str] | None = None,
         max_len: int = 200) -> str | None:
    """The query parameter ``name`` as text, optionally one of ``choices``."""
    value = request.query.get(name)
    if value is None:
        return None
    if choices is not None and value not in choices:
        raise bad_request(f"query parameter {name} must be one of {', '.join(sorted(choices))}")
    if len(value) > max_len or "\x00" in value:
        raise bad_request(f"query parameter {name} must be at most {max_len} characters, "
                          "without NUL")
    return value


def path_int(request: web.Request, name: str) -> int:
    """The path parameter ``name`` as a positive int."""
    raw = request.match_info[name]
    if not DIGITS.fullmatch(raw):
        raise bad_request(f"{name} must be a positive integer, not {raw!r}")
    return int(raw)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; an empty body is ``{}``."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise bad_request("the request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def reason(body: dict[str, Any], default: str) -> str:
    """The optional ``reason`` text of an action's body."""
    value = body.get("reason", default)
    if not isinstance(value, str) or len(value) > 500:
        raise bad_request("reason must be text of at most 500 characters")
    return value or default


def json_error(status: int, message: str) -> web.Response:
    """A JSON ``{"error": message}`` response with ``status``."""
    return web.json_response({"error": message}, status=status)


def query_names(document: Mapping[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """``{(METHOD, path): query parameter names}`` from an OpenAPI document."""
    names = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            params = operation.get("parameters", [])
            names[(method.upper(), path)] = frozenset(p["name"] for p in params
                                                      if p["in"] == "query")
    return names


def query_middleware(document: Mapping[str, Any]) -> Middleware:
    """Refuse query parameters the OpenAPI document does not list for the route (400)."""
    allowed = query_names(document)

    @web.middleware
    async def check_query(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                          ) -> web.StreamResponse:
        route = request.match_info.route.resource
        known = allowed.get((request.method, route.canonical if route else ""), frozenset())
        unknown = sorted(set(request.query) - known)
        if unknown:
            takes = ", ".join(sorted(known)) or "none"
            raise bad_request(f"unknown query parameter {unknown[0]!r}; this route takes {takes}")
        return await handler(request)

    return check_query
