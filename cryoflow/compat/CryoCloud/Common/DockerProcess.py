"""``CryoCloud.Common.DockerProcess``: run a container and read its line protocol.

``DockerProcess(cmd, status, log, stop_event, env=..., dirs=..., gpu=..., args=...)``
runs ``docker run --rm`` with ``cmd`` (the image and anything after it) and ``args``,
as the calling user unless ``userid``/``groupid`` say otherwise. ``dirs`` are
``(source, destination[, "ro"|"rw"])`` volumes (read-only unless ``rw``); ``env`` is
set *inside* the container with ``-e``; ``gpu`` adds ``--gpus all``. The container's
output lines follow the tool protocol (:func:`cryoflow.compat.tools.report_line`):
``[key] value`` status, ``<level> message`` log, ``{retval} JSON`` outputs.
:meth:`run` returns the outputs, or raises with the exit code and the last lines.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from cryoflow.compat.tools import failure, report_line, require_tool, run_tool


class DockerProcess:
    def __init__(
        self,
        cmd: Sequence[str],
        status: Any,
        log: Any,
        stop_event: Any,
        env: Mapping[str, str] | None = None,
        dirs: Sequence[Sequence[str]] = (),
        gpu: bool = False,
        userid: int | None = None,
        groupid: int | None = None,
        log_all: bool = True,
        args: Sequence[str] = (),
        cancel_event: threading.Event | None = None,
        debug: bool = False,
    ) -> None:
        if isinstance(cmd, str) or not cmd:
            raise ValueError("DockerProcess needs cmd as a list: the image, then its arguments")
        self.cmd, self.status, self.log = list(cmd), status, log
        self.stop_event, self.cancel_event = stop_event, cancel_event
        self.env, self.dirs, self.gpu = dict(env or {}), [tuple(d) for d in dirs], bool(gpu)
        self.userid = os.getuid() if userid is None else userid
        self.groupid = os.getgid() if groupid is None else groupid
        self.log_all, self.args, self.debug = log_all, list(args), debug
        self.retval: Any = None

    def command(self) -> list[str]:
        """The ``docker run`` command line this process runs."""
        cmd = ["docker", "run", "--rm", "-u", f"{self.userid}:{self.groupid}"]
        if self.gpu:
            cmd += ["--gpus", "all"]
        for volume in self.dirs:
            if len(volume) not in (2, 3):
                raise ValueError(f"a volume is (source, destination[, mode]), not {volume!r}")
            mode = "rw" if len(volume) == 3 and volume[2] == "rw" else "ro"
            cmd += ["-v", f"{os.path.abspath(volume[0])}:{volume[1]}:{mode}"]
        for key, value in self.env.items():
            cmd += ["-e", f"{key}={value}"]
        return cmd + self.cmd + self.args

    def run(self) -> Any:
        require_tool("docker", "install Docker (docker.io) or run this node elsewhere")
        cmd = self.command()
        if self.debug:
            self.log.debug("docker command: %s", cmd)

        def on_line(stream: str, line: str) -> None:
            if self.log_all:
                self.log.debug("%s: %s", stream, line)
            found = report_line(line, self.status, self.log)
            if found is not None:
                self.retval = found

        result = run_tool(cmd, _Either(self.stop_event, self.cancel_event), on_line=on_line)
        if result.stopped:
            raise RuntimeError(f"container {self.cmd[0]} was stopped")
        if result.returncode != 0:
            raise RuntimeError(failure(cmd, result))
        self.status["progress"] = 100
        return self.retval


class _Either(threading.Event):
    """Set when either event is."""

    def __init__(self, *events: Any) -> None:
        super().__init__()
        self._events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)
