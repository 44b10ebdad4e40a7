"""The job runner inside a container: ``python -m cryoflow.workers.container``.

It reads one :class:`~cryoflow.workers.base.Task` as JSON from the environment
variable ``CRYOFLOW_TASK``, else from the file named by ``CRYOFLOW_TASK_FILE``, else
from stdin; runs it with the same job runtime as every other worker
(:func:`cryoflow.workers.runtime.run_task`); and speaks CryoCloud's line protocol
(:mod:`cryoflow.workers.lineproto`) on stdout: status values and log lines while the
job runs, then the ``{stats}``, ``{error}``, ``{outcome}`` and ``{retval}`` records.
The exit code is 0 for a success and 1 otherwise.

Only the standard library is needed: an image with Python 3.11 and the cryoflow
package (installed, copied in, or mounted by the Docker executor) can run jobs.
stdout belongs to the protocol: ``print`` in a module becomes an ``INFO`` log line,
and output that bypasses ``sys.stdout`` (child processes) goes to stderr, which the
head logs at ``WARNING``. SIGTERM (``docker stop``, a deleted Kubernetes Job) sets the
job's cancel event.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import socket
import sys
import threading
import types
from collections.abc import Callable
from typing import IO, Any, TextIO

TASK_ENV = "CRYOFLOW_TASK"
TASK_FILE_ENV = "CRYOFLOW_TASK_FILE"
WORKER_ENV = "CRYOFLOW_WORKER_NAME"
NODE_ENV = "CRYOFLOW_NODE_NAME"


class ProtocolWriter:
    """Writes whole protocol lines to one stream, from any thread."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._stream.write(text)
            self._stream.flush()


class _PrintToLog(io.TextIOBase):
    """``sys.stdout`` while a job runs: each complete line becomes a log line."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self._emit(self._partial)
            self._partial = ""


def enter_graph_package_without_loaders() -> None:
    """Make ``cryoflow.graph.model`` importable without PyYAML.

    ``cryoflow.graph``'s package ``__init__`` imports the graph loaders, which need
    PyYAML; a job needs only the model. Where PyYAML is missing, the package is
    registered bare (its ``__init__`` not run) so its submodules still import.
    """
    if "cryoflow.graph" in sys.modules:
        return
    try:
        import yaml  # noqa: F401
    except ImportError:
        pass
    else:
        return
    spec = importlib.util.find_spec("cryoflow.graph")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType("cryoflow.graph")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__package__ = "cryoflow.graph"
    sys.modules["cryoflow.graph"] = package


def read_task_text(environ: dict[str, str], stdin: TextIO) -> str:
    """The task JSON from ``CRYOFLOW_TASK``, ``CRYOFLOW_TASK_FILE`` or stdin."""
    if environ.get(TASK_ENV):
        return environ[TASK_ENV]
    if environ.get(TASK_FILE_ENV):
        with open(environ[TASK_FILE_ENV], encoding="utf-8") as handle:
            return handle.read()
    return stdin.read()


def take_stdout() -> IO[str]:
    """A private stream on the original stdout; fd 1 then points at stderr."""
    sys.stdout.flush()
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", errors="replace")
    os.dup2(2, 1)
    return protocol


def run(task_text: str, out: ProtocolWriter, cancel_event: threading.Event) -> int:
    """Run the task, write its protocol lines to ``out``; the process exit code."""
    enter_graph_package_without_loaders()
    from cryoflow.graph.model import Outcome
    from cryoflow.workers import lineproto
    from cryoflow.workers.handle import WorkerHandle
    from cryoflow.workers.runtime import run_task

    task = lineproto.task_from_json(task_text)
    handle = WorkerHandle(
        os.environ.get(WORKER_ENV) or "container",
        host=os.environ.get(NODE_ENV) or socket.gethostname(),
        on_status=lambda _job, key, value: out.write(lineproto.format_status(key, value)),
        on_log=lambda _job, level, message: out.write(lineproto.format_log(level, message)),
    )
    previous_stdout = sys.stdout
    sys.stdout = _PrintToLog(lambda line: out.write(lineproto.format_log("INFO", line)))
    try:
        result = run_task(task, handle, cancel_event)
    finally:
        sys.stdout.flush()
        sys.stdout = previous_stdout
    out.write(lineproto.format_record("stats", dict(result.stats)))
    if result.error is not None:
        out.write(lineproto.format_record("error", result.error))
    out.write(lineproto.format_record("outcome", result.outcome.value))
    out.write(lineproto.format_record("retval", result.retval))
    return 0 if result.outcome is Outcome.SUCCESS else 1


def _cancel_on_signals(cancel_event: threading.Event) -> None:
    def on_signal(_signum: int, _frame: Any) -> None:
        cancel_event.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)


def main() -> int:
    cancel_event = threading.Event()
    _cancel_on_signals(cancel_event)
    try:
        task_text = read_task_text(dict(os.environ), sys.stdin)
    except OSError as exc:
        print(f"cryoflow.workers.container: cannot read the task: {exc}", file=sys.stderr)
        return 2
    out = ProtocolWriter(take_stdout())
    return run(task_text, out, cancel_event)


if __name__ == "__main__":
    sys.exit(main())
