"""What CloudHarness operations add around a run: shared folders, TTL, exit notices, pods.

- :func:`shared_dirs` reads ``shared_directory`` (``[NAME:]PATH[:ro]`` or a list of
  them). ``PATH`` alone is a local folder every task shares. ``NAME:PATH`` is the
  volume ``NAME``: the folder ``ROOT/volumes/NAME``, kept when it already existed and
  otherwise made for the run and removed after it (an ephemeral volume); containers
  mount it at ``PATH`` (read-only with ``:ro``).
- :func:`expired` and :func:`prune_expired` apply ``ttl_strategy``: a finished run's
  state folder is removed ``secondsAfterSuccess``/``secondsAfterFailure`` (or
  ``secondsAfterCompletion``, whichever comes first) after it ended.
- :func:`notify` sends ``{status, payload, workflow}`` to a webhook (``url``: an HTTP
  POST of the JSON) or to a topic of the events queue (``queue``; on the ``broker``,
  a Redis server or, by default, one JSON line per message in
  ``ROOT/queues/TOPIC.jsonl``: see :mod:`cryoflow.pyapi.events`).
- :class:`PodExecutionContext` becomes the Kubernetes executor's pod affinity and
  labels (:func:`pod_settings`), so pods of the same context share a machine.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryoflow.errors import ConfigError
from cryoflow.pyapi import events

log = logging.getLogger("cryoflow.pyapi.operations")

DEFAULT_TTL: Mapping[str, int] = {
    "secondsAfterCompletion": 60 * 60,
    "secondsAfterSuccess": 60 * 20,
    "secondsAfterFailure": 60 * 120,
}
RUN_FILE = "operation.json"
"""Written into a run's state folder when it ends: name, status, end time and TTL."""
NOTIFY_TIMEOUT_S = 10.0
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class SharedDir:
    """One shared folder: where it is here, where containers see it, and how."""

    host: Path
    mount: str
    read_only: bool = False
    ephemeral: bool = False
    """Made for this run and removed after it."""


def shared_dirs(spec: str | Sequence[str] | None, root: Path) -> tuple[SharedDir, ...]:
    """Parse ``shared_directory`` (see the module docstring); :class:`ConfigError` if bad."""
    if spec is None:
        return ()
    items = [spec] if isinstance(spec, str) else list(spec)
    return tuple(_shared_dir(item, root) for item in items)


def _shared_dir(item: Any, root: Path) -> SharedDir:
    if not isinstance(item, str) or not item.strip():
        raise ConfigError(f"shared_directory {item!r}: write [NAME:]PATH[:ro]")
    parts = item.split(":")
    read_only = False
    if len(parts) > 1 and parts[-1] in ("ro", "rw"):
        read_only = parts.pop() == "ro"
    if len(parts) == 1:
        path = Path(parts[0]).absolute()
        return SharedDir(path, str(path), read_only)
    if len(parts) != 2 or not _VOLUME_NAME.fullmatch(parts[0]) or not parts[1]:
        raise ConfigError(f"shared_directory {item!r}: write [NAME:]PATH[:ro], where NAME "
                          "is a volume name of letters, digits, '_', '.' and '-'")
    host = (root / "volumes" / parts[0]).absolute()
    return SharedDir(host, parts[1], read_only, ephemeral=not host.exists())


def prepare(dirs: Sequence[SharedDir]) -> None:
    for shared in dirs:
        shared.host.mkdir(parents=True, exist_ok=True)


def remove_ephemeral(dirs: Sequence[SharedDir]) -> None:
    for shared in dirs:
        if shared.ephemeral:
            shutil.rmtree(shared.host, ignore_errors=True)


def shared_env(dirs: Sequence[SharedDir], *, container: bool) -> dict[str, str]:
    """``SHARED_DIRECTORY`` (the first folder) and ``SHARED_DIRECTORY_<n>`` for the rest."""
    env: dict[str, str] = {}
    for index, shared in enumerate(dirs):
        key = "SHARED_DIRECTORY" if index == 0 else f"SHARED_DIRECTORY_{index}"
        env[key] = shared.mount if container else str(shared.host)
    return env


def collect_files(dirs: Sequence[SharedDir]) -> dict[str, bytes]:
    """Every file in the first shared folder: relative path → content."""
    if not dirs or not dirs[0].host.is_dir():
        return {}
    base = dirs[0].host
    return {str(p.relative_to(base)): p.read_bytes()
            for p in sorted(base.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- TTL


def check_ttl(ttl: Mapping[str, Any] | None) -> Mapping[str, float] | None:
    """``ttl_strategy`` checked: known keys, numbers of seconds >= 0 (None: keep forever)."""
    if ttl is None:
        return None
    unknown = sorted(set(ttl) - set(DEFAULT_TTL))
    if unknown:
        raise ConfigError(f"ttl_strategy: unknown key {unknown[0]!r}; use "
                          f"{', '.join(DEFAULT_TTL)}")
    for key, value in ttl.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"ttl_strategy: {key} must be a number of seconds >= 0")
    return {k: float(v) for k, v in ttl.items()}


def expires_at(info: Mapping[str, Any]) -> float | None:
    """When a finished run's folder may go, from its ``operation.json``; None: never."""
    ttl, finished = info.get("ttl"), info.get("finished")
    if ttl is None or finished is None:
        return None
    key = "secondsAfterSuccess" if info.get("status") == "finished" else "secondsAfterFailure"
    delays = [ttl[k] for k in ("secondsAfterCompletion", key) if ttl.get(k) is not None]
    return float(finished) + min(delays) if delays else None


def write_run_file(state_dir: Path, info: Mapping[str, Any]) -> None:
    (state_dir / RUN_FILE).write_text(json.dumps(info))


def prune_expired(root: Path, now: float | None = None) -> list[str]:
    """Remove the state folders of operation runs whose TTL has passed; return their names."""
    now = time.time() if now is None else now
    removed = []
    for info_file in sorted(Path(root).glob(f"*/{RUN_FILE}")):
        try:
            info = json.loads(info_file.read_text())
        except (OSError, ValueError):
            continue
        expiry = expires_at(info)
        if expiry is not None and expiry <= now:
            shutil.rmtree(info_file.parent, ignore_errors=True)
            removed.append(info_file.parent.name)
    return removed


# ----------------------------------------------------------------------------- notices


def check_notify(notify: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if notify is None:
        return None
    targets = [k for k in ("url", "queue") if notify.get(k)]
    unknown = sorted(set(notify) - {"url", "queue", "payload", "broker"})
    if len(targets) != 1 or unknown:
        raise ConfigError("on_exit_notify: give either 'url' (a webhook) or 'queue' (a topic), "
                          "and optionally 'payload' (and 'broker' for a queue)")
    if notify.get("queue"):
        events.check_topic(str(notify["queue"]))
        events.broker_of(notify)
    return dict(notify)


def notify(target: Mapping[str, Any], message: Mapping[str, Any], root: Path) -> None:
    """Send ``message`` to the webhook or queue topic of ``target`` (see the module)."""
    if target.get("url"):
        _post(str(target["url"]), message)
        return
    broker = events.broker_of(target)
    try:
        events.send(broker, str(target["queue"]), message, root)
    except Exception as exc:  # OSError, or the broker client's own errors
        log.error("on_exit_notify: cannot send to queue %s on %s: %s", target["queue"],
                  broker, exc)


def read_queue(root: Path, topic: str, broker: str | None = None) -> list[dict[str, Any]]:
    """The messages sent to queue ``topic`` so far, oldest first."""
    return events.read(root, topic, broker)


def _post(url: str, message: Mapping[str, Any]) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"on_exit_notify: url {url!r} must start with http:// or https://")
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=NOTIFY_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as exc:
        log.error("on_exit_notify: cannot POST to %s: %s", url, exc)


# ----------------------------------------------------------------------------- pods


@dataclass(frozen=True)
class PodExecutionContext:
    """Pods with the same ``key: value`` label are scheduled onto the same machine."""

    key: str
    value: str
    required: bool = False


def pod_settings(context: PodExecutionContext) -> dict[str, Any]:
    """The Kubernetes executor settings of a pod context: ``labels`` and ``affinity``."""
    term: dict[str, Any] = {
        "labelSelector": {"matchExpressions": [
            {"key": context.key, "operator": "In", "values": [context.value]}]},
        "topologyKey": "kubernetes.io/hostname",
    }
    affinity: dict[str, Any]
    if context.required:
        affinity = {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    else:
        affinity = {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term}]}
    return {"labels": {context.key: context.value}, "affinity": {"podAffinity": affinity}}
