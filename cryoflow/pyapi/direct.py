"""Direct operations: synchronous operations that run in this very process.

- :class:`DirectOperation` runs its tasks (Python, bash or command tasks; one after
  the other) in threads of this process, not in the worker pool or a container, and
  ``execute()`` returns the result at once: the task's result for one task, else
  ``{task name: result}``. It raises :class:`~cryoflow.pyapi.records.RunFailed` when a
  task failed. Useful for tests and small steps of a service.
- :class:`ResourceQueryOperation` answers which operation runs the root holds (the
  workflow resources): their name, status, end time, when their TTL removes them, and
  the results and errors of their tasks so far.
- :class:`DataQueryOperation` answers the data of a shared directory or volume:
  ``{relative path: bytes}`` of its files (those matching ``pattern``).

Neither query runs anything; both are read-only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryoflow.errors import ConfigError, CryoflowError
from cryoflow.pyapi import opsupport
from cryoflow.pyapi.operations import DEFAULT_ROOT, PipelineOperation
from cryoflow.pyapi.records import RunFailed, RunStatus
from cryoflow.pyapi.tasks import CustomTask, OperationTask
from cryoflow.store.guard import DB_NAME
from cryoflow.store.reader import StoreReader

RUNNING = "running"
"""The status of a run whose folder has no end record yet."""


class DirectOperation(PipelineOperation):
    """Run the tasks here and now; ``execute()`` returns their result (see the module)."""

    synchronous = True

    def __init__(self, name: str, tasks: OperationTask | Sequence[OperationTask],
                 **settings: Any) -> None:
        if settings.get("inline") is False:
            raise ConfigError("a DirectOperation always runs in this process (inline)")
        settings["inline"] = True
        items = [tasks] if isinstance(tasks, OperationTask) else list(tasks)
        containers = [t.name for t in items if isinstance(t, CustomTask)]
        if containers:
            raise ConfigError(f"task {containers[0]!r}: a DirectOperation runs its tasks in "
                              "this process, not in containers; use SingleTaskOperation or "
                              "DistributedSyncOperation for a CustomTask")
        super().__init__(name, items, **settings)

    def execute(self, timeout_s: float | None = None) -> Any:
        """The result of the one task, or ``{name: result}``; raise if a task failed."""
        record = self.start(serve=False).wait(timeout_s)
        if record.status is RunStatus.FAILED:
            raise RunFailed(record)
        if record.status is not RunStatus.FINISHED:
            raise TimeoutError(f"{record.workflow} did not end within {timeout_s:g}s")
        results = record.results
        return next(iter(results.values())) if len(self.tasks) == 1 else results


class ResourceQueryOperation:
    """The operation runs in ``root``: ``[{name, status, finished, expires, state_dir,
    results, errors}]`` (task name → result of the tasks that ended well, → error of
    those that failed).

    ``prefix`` keeps the runs of one operation (its name), ``status`` those with that
    status (``finished``, ``failed``, ``running``). Runs are listed oldest first.
    """

    synchronous = True

    def __init__(self, name: str, *, root: str | Path | None = None, prefix: str | None = None,
                 status: str | None = None) -> None:
        self.name = name
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        self.prefix, self.status = prefix, status

    def execute(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            return []
        found = [_run_info(folder) for folder in self.root.iterdir()
                 if folder.is_dir() and (folder / "state.db").exists()]
        found = [r for r in found if (self.prefix is None or r["name"].startswith(self.prefix))
                 and (self.status is None or r["status"] == self.status)]
        return sorted(found, key=lambda r: (r["finished"] or float("inf"), r["name"]))


def _run_info(folder: Path) -> dict[str, Any]:
    try:
        info = json.loads((folder / opsupport.RUN_FILE).read_text())
    except (OSError, ValueError):
        info = {}
    return {"name": folder.name, "status": info.get("status", RUNNING),
            "finished": info.get("finished"), "expires": opsupport.expires_at(info),
            "state_dir": str(folder.absolute()), **_outcomes(folder)}


def _outcomes(folder: Path) -> dict[str, dict[str, Any]]:
    """``results`` and ``errors`` of the tasks so far, from the run's state database."""
    try:
        with StoreReader((folder / DB_NAME).absolute()) as reader:
            pebbles = reader.pebbles(limit=1)
            pebble = reader.pebble(pebbles[0]["id"]) if pebbles else None
    except (CryoflowError, KeyError, IndexError):
        return {"results": {}, "errors": {}}
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for node, branches in (pebble or {}).get("nodes", {}).items():
        state = branches.get("") or {}
        output = state.get("output")
        if state.get("outcome") == "success" and isinstance(output, dict):
            results[node] = output.get("result")
        elif state.get("error"):
            errors[node] = str(state["error"])
    return {"results": results, "errors": errors}


class DataQueryOperation:
    """The files of a shared directory (``[NAME:]PATH``): ``{relative path: bytes}``."""

    synchronous = True

    def __init__(self, name: str, shared_directory: str, *, pattern: str = "**/*",
                 root: str | Path | None = None) -> None:
        self.name = name
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        [self.shared] = opsupport.shared_dirs(shared_directory, self.root)
        self.pattern = pattern

    def execute(self) -> dict[str, bytes]:
        base = self.shared.host
        if not base.is_dir():
            raise ConfigError(f"there is no data to query at {base}: the volume or folder "
                              "does not exist (yet)")
        return {str(p.relative_to(base)): p.read_bytes()
                for p in sorted(base.glob(self.pattern)) if p.is_file()}
