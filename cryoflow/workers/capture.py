"""Capture of a worker process's stdout and stderr as log lines of the running job."""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable


class OutputCapture:
    """Turns this process's stdout/stderr (file descriptors 1 and 2) into log lines.

    Output written while a job runs is handed to ``publish(level, text)`` line by line
    (stdout as INFO, stderr as WARNING); output between jobs goes to the original
    stderr. :meth:`end_job` drains what the job wrote before it returned.
    """

    def __init__(self, publish: Callable[[str, str], None]) -> None:
        self._publish = publish
        self._lock = threading.Lock()
        self._active = False
        self._probe = select.poll()
        self.original_stderr = os.dup(2)
        self._pipes: dict[int, tuple[str, bytearray]] = {}
        for fd, level in ((1, "INFO"), (2, "WARNING")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            os.set_blocking(read_end, False)
            self._pipes[read_end] = (level, bytearray())
            self._probe.register(read_end, select.POLLIN)
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=True)
        threading.Thread(target=self._pump, name="cryoflow-output", daemon=True).start()

    def begin_job(self) -> None:
        with self._lock:
            self._active = True

    def end_job(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        with self._lock:
            for fd, _ in self._probe.poll(0):
                self._drain(fd)
            for level, partial in self._pipes.values():
                if partial:
                    self._emit(level, bytes(partial))
                    partial.clear()
            self._active = False

    def _pump(self) -> None:
        poller = select.poll()
        for fd in self._pipes:
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                with self._lock:
                    self._drain(fd)

    def _drain(self, fd: int) -> None:
        level, partial = self._pipes[fd]
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            partial += chunk
            cut = partial.rfind(b"\n") + 1 if len(partial) < 1 << 16 else len(partial)
            self._emit(level, bytes(partial[:cut]))
            del partial[:cut]

    def _emit(self, level: str, data: bytes) -> None:
        if not data:
            return
        if self._active:
            self._publish(level, data.decode(errors="replace").rstrip("\n"))
        else:
            os.write(self.original_stderr, data)
