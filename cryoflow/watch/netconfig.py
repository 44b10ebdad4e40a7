"""The ``netwatcher`` module's args, read and checked once at start.

A host that is not loopback needs a token: :meth:`NetwatchConfig.from_args` refuses to
start without one, naming the two ways to give it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryoflow.watch import Args
from cryoflow.watch.httpguard import is_loopback
from cryoflow.watch.jsonbody import load_schema

TOKEN_ENV = "CRYOFLOW_NETWATCHER_TOKEN"


@dataclass(frozen=True)
class NetwatchConfig:
    """The ``netwatcher`` module's args, checked."""

    port: int
    host: str = "127.0.0.1"
    schema: Mapping[str, Any] | None = None
    cors: tuple[str, ...] = ()
    token: str | None = None
    max_bytes: int = 1 << 20
    max_pending: int = 10_000
    header_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    commit_timeout_s: float = 30.0
    retry_after_s: int = 1

    @classmethod
    def from_args(cls, node: str, args: Mapping[str, Any],
                  env: Mapping[str, str] | None = None) -> NetwatchConfig:
        """Read the module args (the token may come from ``env``); InputError if wrong."""
        a = Args(node, args)
        host = a.text("host", "127.0.0.1") or "127.0.0.1"
        token = a.text("token") or (env or {}).get(TOKEN_ENV) or None
        if token is None and not is_loopback(host):
            raise a.problem("host", f"is {host}, which other machines can reach; give a "
                            f"token (argument 'token' or the environment variable "
                            f"{TOKEN_ENV}) or bind to 127.0.0.1")
        if a.args.get("port") is None:
            raise a.problem("port", "is required (0 picks a free port)")
        return cls(
            port=a.integer("port", 0, minimum=0, maximum=65535), host=host,
            schema=_schema_arg(a), cors=a.strings("cors", ()), token=token,
            max_bytes=a.integer("max_bytes", 1 << 20, minimum=2),
            max_pending=a.integer("max_pending", 10_000, minimum=1),
            header_timeout_s=a.number("header_timeout", 10.0, minimum=0.01),
            read_timeout_s=a.number("read_timeout", 10.0, minimum=0.01),
            commit_timeout_s=a.number("commit_timeout", 30.0, minimum=0.01),
            retry_after_s=a.integer("retry_after", 1, minimum=1),
        )


def _schema_arg(a: Args) -> Mapping[str, Any] | None:
    value = a.args.get("schema")
    if value is None or value == "":
        return None
    try:
        return load_schema(value)
    except ValueError as exc:
        raise a.problem("schema", f"cannot be used: {exc}") from None
