"""Running a command line tool for a module: output lines, status, stop and errors.

The built-in modules that wrap tools (``ffmpeg``, ``idl``, ``git``, ``docker``,
``build_docker``) and ``CryoCloud.Common.DockerProcess`` share :func:`run_tool`: the
command runs without a shell, each line of its stdout and stderr is handed to a
callback as it comes, and when ``stop_event`` is set the process is terminated (then
killed after ``grace_s``). :func:`report_line` reads the line protocol CryoCloud's
tools printed: ``[key] value`` sets a status value, ``<level> message`` logs, and
``{retval} JSON`` (or ``ret=JSON``) gives the job's outputs.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from cryoflow.errors import CryoflowError

LineCallback = Callable[[str, str], None]
"""Called as ``(stream, line)``; stream is ``stdout`` or ``stderr``."""

_STATUS = re.compile(r"^\[([\w.-]+)\] ?(.*)$")
_LOG = re.compile(r"^<(\w+)> ?(.*)$")
_RETVAL = re.compile(r"^(?:\{retval\} |ret=)(.+)$")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


class ToolMissingError(CryoflowError):
    """The command a module runs is not installed."""


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stopped: bool
    """True when the stop event ended the process."""
    stdout_tail: str
    stderr_tail: str

    def check(self, cmd: Sequence[str], what: str) -> None:
        """Raise for a process the stop event ended (``what`` names it) or that failed."""
        if self.stopped:
            raise RuntimeError(f"{what} was cancelled")
        if self.returncode != 0:
            raise RuntimeError(failure(cmd, self))


def require_tool(name: str, hint: str) -> str:
    """The full path of ``name`` on PATH, else :class:`ToolMissingError` with ``hint``."""
    found = shutil.which(name)
    if found is None:
        raise ToolMissingError(f"'{name}' is not installed on this worker (not on PATH); {hint}")
    return found


def run_tool(
    cmd: Sequence[str],
    stop_event: threading.Event | None = None,
    *,
    on_line: LineCallback | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    grace_s: float = 5.0,
    tail_lines: int = 20,
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
) -> ToolResult:
    """Run ``cmd`` to its end (or until ``stop_event``), streaming its lines.

    ``on_start(proc)`` is called once the process runs (to watch its resources)."""
    try:
        proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            cwd=cwd, env=dict(env) if env is not None else None, text=True, errors="replace",
            start_new_session=True)
    except FileNotFoundError as exc:
        raise ToolMissingError(f"cannot run {cmd[0]!r}: {exc.strerror}") from None
    if on_start is not None:
        on_start(proc)
    lines: queue.SimpleQueue[tuple[str, str | None]] = queue.SimpleQueue()
    readers = [threading.Thread(target=_pump, args=(name, stream, lines), daemon=True)
               for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for reader in readers:
        reader.start()
    tails = {"stdout": deque[str](maxlen=tail_lines), "stderr": deque[str](maxlen=tail_lines)}
    open_streams, stopped = 2, False
    while open_streams:
        if stop_event is not None and stop_event.is_set() and not stopped:
            stopped = True
            _terminate(proc, grace_s)
        try:
            name, line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
            continue
        tails[name].append(line)
        if on_line is not None:
            on_line(name, line)
    code = proc.wait()
    return ToolResult(code, stopped, "\n".join(tails["stdout"]), "\n".join(tails["stderr"]))


def _pump(name: str, stream: IO[str] | None, lines: queue.SimpleQueue[tuple[str, str | None]]
          ) -> None:
    if stream is not None:
        for line in stream:
            lines.put((name, line.rstrip("\r\n")))
        stream.close()
    lines.put((name, None))


def _terminate(proc: subprocess.Popen[str], grace_s: float) -> None:
    """SIGTERM the tool's process group (it runs in a session of its own), then SIGKILL."""
    _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def report_line(line: str, status: Any, log: Any) -> Any:
    """Apply one protocol line; return the decoded outputs for a retval line, else None."""
    text = line.strip()
    match = _RETVAL.match(text)
    if match:
        try:
            return json.loads(match.group(1))
        except json.JSONDecodeError:
            log.warning("ignored a return value that is not JSON: %s", match.group(1)[:200])
            return None
    match = _STATUS.match(text)
    if match:
        status[match.group(1)] = match.group(2)
        return None
    match = _LOG.match(text)
    if match and match.group(1).lower() in _LEVELS:
        log.log(_LEVELS[match.group(1).lower()], match.group(2))
    return None


def failure(cmd: Sequence[str], result: ToolResult) -> str:
    """A sentence for a tool that exited with an error: the command, code and stderr tail."""
    tail = (result.stderr_tail.strip().splitlines()[-5:]
            or result.stdout_tail.strip().splitlines()[-3:])
    detail = ("; last output: " + " | ".join(tail)) if tail else ""
    return f"{cmd[0]} exited with code {result.returncode}{detail}"
