"""Where ``ccstatus`` and ``cclog`` read from: a state folder or a running head's URL.

Both sources answer the same questions with the same plain shapes:

- :meth:`Source.summary`: ``{"workflow", "pebbles": {state: n}, "nodes": [{"name",
  "counts"}], "running": [job], "classes": [{"class", "capacity", "busy"}]}``; a
  running job has ``id, node, pebble_id, worker, host, started, progress``.
- :meth:`Source.logs`: log rows ``{id, ts, level, pebble_id, job_id, node, message}``
  with ``id > after``, oldest first.

A state folder is read with a read-only connection, so it works while a head runs
there and after it stopped. A URL is read over the REST API (``urllib``; no extra
dependency), with the bearer token when one is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from cryoflow.errors import CryoflowError
from cryoflow.graph.instances import base_name
from cryoflow.store.guard import DB_NAME
from cryoflow.store.reader import StoreReader
from cryoflow.store.schema import read_meta

TIMEOUT_S = 10.0
RUNNING_PAGE = 200
TOKEN_ENV = "CRYOFLOW_API_TOKEN"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class SourceError(CryoflowError):
    """A state folder or a head's URL cannot be read."""


class Source(Protocol):
    """What the tools read (see the module docstring for the shapes)."""

    def summary(self) -> dict[str, Any]: ...

    def logs(self, *, after: int, pebble: int | None = None, node: str | None = None,
             since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class StateSource:
    """Reads the ``state.db`` of a state folder."""

    def __init__(self, state_dir: Path) -> None:
        db = Path(state_dir) / DB_NAME
        if not db.is_file():
            raise SourceError(f"{state_dir} holds no cryoflow state ({DB_NAME} is missing); "
                              "give the folder a run used with --state")
        self.name = workflow_name(db) or Path(state_dir).resolve().name
        self.reader = StoreReader(db.resolve())

    def summary(self) -> dict[str, Any]:
        reader = self.reader
        counts = reader.node_runs()
        running = reader.jobs(state="running", limit=RUNNING_PAGE)
        status = reader.status_values()
        return {
            "workflow": self.name,
            "pebbles": reader.pebble_counts(),
            "nodes": [{"name": name, "counts": row} for name, row in counts.items()],
            "running": [_running(job, status.get(base_name(job["node"]), {})
                                 .get("progress")) for job in running],
            "classes": [],
        }

    def logs(self, *, after: int, pebble: int | None = None, node: str | None = None,
             since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.reader.logs(after_id=after, pebble_id=pebble, node=node, since=since,
                                limit=limit)

    def close(self) -> None:
        self.reader.close()


def workflow_name(db: Path) -> str | None:
    """The workflow a state database belongs to, from its ``meta`` table."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return read_meta(conn, "workflow")
    except sqlite3.Error:
        return None
    finally:
        conn.close()


class HttpSource:
    """Reads a running head's REST API at ``url``."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/") + "/"
        self.token = token

    def get(self, path: str, **query: Any) -> Any:
        """GET ``path`` with the non-None ``query`` values; the JSON answer."""
        params = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        request = urllib.request.Request(self.url + path + (f"?{params}" if params else ""))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise SourceError(_http_problem(self.url, exc)) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(f"cannot reach the head at {self.url} ({reason}); is it "
                              "running, and is this the URL it printed?") from exc

    def summary(self) -> dict[str, Any]:
        workflow = self.get("api/v1/workflow")
        workers = self.get("api/v1/workers")
        return {
            "workflow": workflow["name"],
            "pebbles": workflow["pebbles"],
            "nodes": [{"name": n["name"], "counts": n["counts"]} for n in workflow["nodes"]],
            "running": [_running({**w, "id": w["job_id"]}, w.get("progress"))
                        for w in workers["workers"]],
            "classes": [{"class": c["class"], "capacity": c["capacity"], "busy": c["busy"]}
                        for c in workers["classes"]],
        }

    def logs(self, *, after: int, pebble: int | None = None, node: str | None = None,
             since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        page = self.get("api/v1/logs", after=after, pebble=pebble, node=node, since=since,
                        limit=limit)
        return list(page["items"])

    def close(self) -> None:
        pass


def _running(job: dict[str, Any], progress: Any) -> dict[str, Any]:
    keys = ("id", "node", "pebble_id", "worker", "host", "started")
    return {**{k: job.get(k) for k in keys}, "progress": progress}


def _http_problem(url: str, exc: urllib.error.HTTPError) -> str:
    if exc.code == 401:
        return (f"the head at {url} needs a token; set CRYOFLOW_API_TOKEN (or --token) to "
                "its read-only token")
    try:
        detail = json.loads(exc.read()).get("error", "")
    except (ValueError, AttributeError):
        detail = ""
    return f"the head at {url} answered {exc.code} {exc.reason}: {detail}".rstrip(": ")


def open_source(*, state: Path | None, url: str | None, token: str | None,
                cwd: Path | None = None) -> Source:
    """The source the flags name; with neither, the only state folder under ./.cryoflow."""
    if url:
        return HttpSource(url, token)
    if state is not None:
        return StateSource(state)
    found = sorted((cwd or Path.cwd()).glob(f".cryoflow/*/{DB_NAME}"))
    if len(found) == 1:
        return StateSource(found[0].parent)
    where = ", ".join(str(p.parent) for p in found) or "none under ./.cryoflow"
    raise SourceError(f"say what to read with --state DIR or --url URL (state folders: {where})")


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """``--state DIR | --url URL`` and ``--token``, shared by ``ccstatus`` and ``cclog``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state", type=Path, metavar="DIR",
                       help="a state folder (default: the only one under ./.cryoflow)")
    where.add_argument("--url", metavar="URL", help="a running head, e.g. http://127.0.0.1:8080/")
    parser.add_argument("--token", metavar="TOKEN",
                        help=f"the head's read-only token (default: ${TOKEN_ENV})")


def source_from_args(args: argparse.Namespace) -> Source:
    """The source the parsed flags name (the token may come from the environment)."""
    token = args.token or os.environ.get(TOKEN_ENV)
    return open_source(state=args.state, url=args.url, token=token)


def printable(text: object) -> str:
    """``text`` with newlines, ANSI escapes and other control characters escaped.

    A file name or log message can then neither forge a line nor recolour a terminal.
    """
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), str(text))
