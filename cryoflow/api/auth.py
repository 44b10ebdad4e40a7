"""Who may call what, and the headers every response carries.

Contract:

- With no token configured (loopback only), every route is open, but the ``Host``
  header must name a loopback address (no DNS rebinding).
- With a token configured, every route but :data:`PUBLIC` needs
  ``Authorization: Bearer TOKEN``: the read-only token for ``GET``, the admin token for
  anything else (the admin token may also read). No token or a wrong one: 401. The
  read-only token on an admin route: 403. Tokens in the query string are ignored.
  Browsers cannot set headers on a WebSocket, so ``/api/v1/events`` also accepts the
  subprotocol ``bearer.<base64url(TOKEN)>``.
- A state change (any method but ``GET``/``HEAD``) with a body needs ``Content-Type:
  application/json``, and, when the browser sends an ``Origin``, the same origin:
  HTML forms and scripts on other sites cannot post here. No CORS headers are sent.
- Tokens are compared with :func:`hmac.compare_digest` and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from cryoflow.watch.httpguard import host_problem, origin_problem
from cryoflow.watch.httpguard import is_loopback as is_loopback

log = logging.getLogger("cryoflow.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = frozenset({"/healthz", "/readyz", "/", "/static/app.js", "/static/app.css",
                    "/static/favicon.svg"})
"""Routes that reveal nothing and need no token (probes and the page's own files)."""

READ_METHODS = frozenset({"GET", "HEAD"})

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Tokens:
    """The bearer tokens of one server; both None means an open, loopback-only server."""

    read: str | None = None
    admin: str | None = None

    @property
    def required(self) -> bool:
        return bool(self.read or self.admin)

    def role(self, presented: str | None) -> str | None:
        """``"admin"``, ``"read"`` or None for the presented token."""
        if not presented:
            return None
        given = presented.encode()
        is_admin = bool(self.admin) and hmac.compare_digest(given, (self.admin or "").encode())
        is_read = bool(self.read) and hmac.compare_digest(given, (self.read or "").encode())
        return "admin" if is_admin else "read" if is_read else None

    def __repr__(self) -> str:  # never show a token in a log or traceback
        return f"Tokens(read={'set' if self.read else None}, admin={'set' if self.admin else None})"


def presented_token(request: web.Request) -> str | None:
    """The bearer token from the Authorization header or the WebSocket subprotocol."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        proto = proto.strip()
        if proto.startswith("bearer."):
            return _b64_text(proto[len("bearer."):])
    return None


def _b64_text(encoded: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _refusal(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def check_access(request: web.Request, tokens: Tokens) -> web.Response | None:
    """The 401/403 response for a request that may not proceed, else None."""
    if not tokens.required:
        problem = host_problem(request.host)
        return None if problem is None else _refusal(403, problem)
    if request.path in PUBLIC:
        return None
    role = tokens.role(presented_token(request))
    if role is None:
        return _refusal(401, "send a valid token as 'Authorization: Bearer TOKEN'",
                        **{"WWW-Authenticate": 'Bearer realm="cryoflow"'})
    if request.method not in READ_METHODS and role != "admin":
        return _refusal(403, "this action needs the admin token")
    return None


def check_state_change(request: web.Request) -> web.Response | None:
    """Refuse a state change that a page on another site could have sent."""
    if request.method in READ_METHODS:
        return None
    problem = origin_problem(request.headers.get("Origin"), request.host)
    if problem is not None:
        return _refusal(403, problem)
    if request.body_exists and request.content_type != "application/json":
        return _refusal(415, "send actions with 'Content-Type: application/json'")
    return None


def access_middleware(tokens: Tokens) -> Middleware:
    """Middleware applying :func:`check_access` and :func:`check_state_change`."""

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        unmatched = request.match_info.http_exception
        if unmatched is not None:  # 404 or 405: no route to guard
            raise unmatched
        refusal = check_access(request, tokens) or check_state_change(request)
        return refusal if refusal is not None else await handler(request)

    return access


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answers JSON ``{"error": sentence}``; a crash is logged, not shown."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        keep = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
        return _refusal(exc.status, exc.reason, **keep)
    except Exception:
        log.exception("the API failed on %s %s", request.method, request.path)
        return _refusal(500, "internal error; the head's log has the details")


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the security headers on every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
