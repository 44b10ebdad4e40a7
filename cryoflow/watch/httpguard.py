"""The request checks every cryoflow HTTP server applies (the REST API and the netwatcher).

Pure functions of header values; each returns None when the request may go on, or the
sentence to refuse it with:

- :func:`host_problem`: a server without a token answers only to a loopback ``Host``
  name, so a web page on a name rebound to 127.0.0.1 (DNS rebinding) is refused.
- :func:`origin_problem`: a state change sent by a browser from another origin is
  refused, whatever its Content-Type (a browser sends ``text/plain`` or no
  Content-Type at all without a preflight), unless the origin is listed as allowed.
- :func:`parse_id` / :func:`check_id`: a pebble id is ASCII digits within SQLite's
  integer range; Unicode digits such as ``"²"`` or ``"١٢"`` are not numbers here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

MAX_ID = 2**63 - 1
"""The largest integer SQLite stores (a row id)."""

ID_RULE = f"a pebble id is a whole number from 1 to {MAX_ID}"
_ID_TEXT = re.compile(r"[0-9]{1,19}")
CROSS_ORIGIN = "cross-origin requests are not accepted"
FOREIGN_HOST = "this server answers only to a loopback Host name"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, brackets allowed) is this machine only."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_problem(host_header: str | None) -> str | None:
    """For a server without a token: refuse a ``Host`` that is not loopback."""
    try:
        name = urlsplit("//" + (host_header or "")).hostname or ""
    except ValueError:  # "[::1" and other broken brackets
        name = ""
    return None if is_loopback(name) else FOREIGN_HOST


def origin_problem(origin: str | None, host_header: str | None,
                   allowed: Collection[str] = ()) -> str | None:
    """Refuse a state change from a browser page of another origin (``Origin: null`` too).

    No ``Origin`` header means no browser sent it (or a same-origin GET); an origin in
    ``allowed`` (or ``"*"`` there) is accepted.
    """
    if origin is None or origin in allowed or "*" in allowed:
        return None
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return CROSS_ORIGIN
    return None if netloc and netloc == host_header else CROSS_ORIGIN


def parse_id(text: str) -> int:
    """The pebble id written in ``text``; ValueError with the rule when it is not one."""
    if not _ID_TEXT.fullmatch(text):
        raise ValueError(f"{ID_RULE} in ASCII digits, not {_shown(text)}")
    return check_id(int(text))


def check_id(value: Any) -> int:
    """``value`` if it is an int pebble id within SQLite's range, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ValueError(f"{ID_RULE}, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 128:
            return f"a number of about {int(value.bit_length() * 0.30103) + 1} digits"
        return str(value)
    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    if len(value) > 40:
        return f"{value[:20]!r}... ({len(value)} characters)"
    return repr(value)
