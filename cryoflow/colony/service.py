"""Submitted function-spec workflows (``POST /api/v1/workflows``) beside the head.

:class:`ColonyService` starts each submitted workflow on a head of its own on this loop
(:mod:`cryoflow.colony.run`), with its own state folder under ``STATE/workflows/ID``
(``ccstatus --state`` reads it); a workflow can be read (``get``) and cancelled. The
service also sweeps the deadlines of its :class:`~cryoflow.colony.queue.ColonyQueue`
every :data:`~cryoflow.colony.queue.SWEEP_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryoflow.colony.queue import SWEEP_S, ColonyError, ColonyQueue
from cryoflow.colony.run import WorkflowRun, finish_workflow, start_workflow, workflow_view


class ColonyService:
    """Submitted workflows, each on its own head on this loop (see the module docstring)."""

    def __init__(self, state_dir: Path, queue: ColonyQueue, *,
                 local: Callable[[], Any] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.queue = queue
        self.local = local
        self.runs: dict[str, WorkflowRun] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for run in self.runs.values():
            if run.watcher is not None and not run.watcher.done():
                run.watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run.watcher

    async def _sweep(self) -> None:
        while True:
            self.queue.sweep(self.queue.clock())
            await asyncio.sleep(SWEEP_S)

    async def submit(self, spec: Any) -> WorkflowRun:
        """Check and start a function-spec workflow; :class:`GraphValidationError` if bad."""
        run = await start_workflow(spec, self.state_dir, self.queue, self.local)
        self.runs[run.id] = run
        run.watcher = asyncio.ensure_future(self._watch(run))
        return run

    async def _watch(self, run: WorkflowRun) -> None:
        try:
            await run.head.wait_idle()
        finally:
            run.final = await finish_workflow(run, self.queue)
            run.ended = time.time()

    def get(self, workflow_id: str) -> dict[str, Any]:
        run = self.runs.get(workflow_id)
        if run is None:
            raise ColonyError(404, f"there is no workflow {workflow_id}")
        return run.final if run.final is not None else workflow_view(run, self.queue)

    def list(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in self.get(i).items() if k != "processes"} for i in self.runs]

    def cancel(self, workflow_id: str) -> dict[str, Any]:
        run = self.runs.get(workflow_id)
        if run is None:
            raise ColonyError(404, f"there is no workflow {workflow_id}")
        if run.final is None:
            run.cancelled = True
            run.head.cancel_pebble(run.pebble_id, "workflow cancelled")
        return self.get(workflow_id)
