"""Events queues for the exit notices of operations (``on_exit_notify={"queue": TOPIC}``).

Where a topic lives is the broker, from ``on_exit_notify["broker"]``, else
``$CRYOFLOW_EVENTS``, else the embedded default:

- ``file:`` (the default): one JSON line per message in ``ROOT/queues/TOPIC.jsonl``;
- ``redis://HOST:PORT/DB`` (``rediss://`` with TLS): each message is ``RPUSH``-ed as
  JSON onto the Redis list ``TOPIC``, so a consumer takes them in order with
  ``BLPOP TOPIC`` (needs the ``redis`` package: ``pip install 'cryoflow[redis]'``).

:func:`read` returns the messages of a topic so far, oldest first, from either.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryoflow.errors import ConfigError

EVENTS_ENV = "CRYOFLOW_EVENTS"
FILE_BROKER = "file:"
TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
REDIS_TIMEOUT_S = 10.0


def broker_of(notify: Mapping[str, Any]) -> str:
    """The broker URL of an ``on_exit_notify`` (see the module docstring)."""
    broker = str(notify.get("broker") or os.environ.get(EVENTS_ENV) or FILE_BROKER)
    if broker != FILE_BROKER and not broker.startswith(("redis://", "rediss://")):
        raise ConfigError(f"events broker {broker!r}: use 'file:' or redis://HOST:PORT/DB")
    return broker


def check_topic(topic: str) -> str:
    if not TOPIC.fullmatch(topic):
        raise ConfigError(f"on_exit_notify: queue {topic!r} must be letters, digits, '_.-'")
    return topic


def send(broker: str, topic: str, message: Mapping[str, Any], root: Path) -> None:
    """Append ``message`` to ``topic``; :class:`ConnectionError` when Redis is away."""
    line = json.dumps(message)
    if broker == FILE_BROKER:
        queue = _file(root, topic)
        queue.parent.mkdir(parents=True, exist_ok=True)
        with queue.open("a") as out:
            out.write(line + "\n")
        return
    client = _redis(broker)
    try:
        client.rpush(check_topic(topic), line)
    finally:
        client.close()


def read(root: Path, topic: str, broker: str | None = None) -> list[dict[str, Any]]:
    """The messages sent to ``topic`` so far, oldest first (nothing is taken off)."""
    broker = broker or os.environ.get(EVENTS_ENV) or FILE_BROKER
    if broker == FILE_BROKER:
        queue = _file(root, topic)
        if not queue.exists():
            return []
        return [json.loads(line) for line in queue.read_text().splitlines() if line.strip()]
    client = _redis(broker)
    try:
        return [json.loads(item) for item in client.lrange(check_topic(topic), 0, -1)]
    finally:
        client.close()


def _file(root: Path, topic: str) -> Path:
    return Path(root) / "queues" / f"{check_topic(topic)}.jsonl"


def _redis(url: str) -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError("a redis:// events broker needs the redis package: "
                          "pip install 'cryoflow[redis]'") from None
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                socket_connect_timeout=REDIS_TIMEOUT_S)
