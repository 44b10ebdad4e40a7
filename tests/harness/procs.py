"""Start, signal and clean up ``ccworkflow`` processes (and anything they leave behind).

Every process a test starts carries ``CRYOFLOW_TEST_TAG=<tag>`` in its environment;
workers and the jobs' own children inherit it. :func:`tagged_pids` finds them all by
reading ``/proc/*/environ``, which is how a test proves that no orphan survived and
how :class:`Processes` kills whatever is left when the test ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

TAG_ENV = "CRYOFLOW_TEST_TAG"
JOB_ENV = "CRYOFLOW_JOB_ID"
REPO = Path(__file__).resolve().parents[2]
PROBE_MODULES = Path(__file__).resolve().parent / "probe_modules"
T = TypeVar("T")


def ccworkflow_command() -> list[str]:
    """The installed ``ccworkflow`` console script beside this interpreter."""
    script = Path(sys.executable).with_name("ccworkflow")
    if not script.is_file():
        raise RuntimeError(f"the ccworkflow console script is missing at {script}; "
                           "install the package with pip install -e .")
    return [str(script)]


def wait_until(predicate: Callable[[], T | None], *, timeout_s: float, what: str,
               interval_s: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


def process_env(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` was started with, or None when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for entry in raw.split(b"\0"):
        key, eq, value = entry.partition(b"=")
        if eq:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def tagged_pids(tag: str) -> dict[int, dict[str, str]]:
    """Live processes (not zombies) whose environment carries ``tag``, with that env."""
    found = {}
    needle = f"{TAG_ENV}={tag}".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if needle in raw.split(b"\0"):
            pid = int(entry.name)
            env = process_env(pid)
            if env is not None and not _is_zombie(pid):
                found[pid] = env
    return found


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def describe(pids: Mapping[int, Mapping[str, str]]) -> str:
    """One line per process: pid, job id (if any) and command line."""
    lines = []
    for pid, env in sorted(pids.items()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        lines.append(f"pid {pid} job={env.get(JOB_ENV, '-')} {cmd.strip()}")
    return "\n".join(lines)


def kill_tagged(tag: str) -> None:
    """SIGKILL every process carrying ``tag`` (a finalizer; never fails)."""
    for _ in range(3):
        pids = tagged_pids(tag)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


@dataclass
class HeadProcess:
    """One ``ccworkflow`` (or driver) process in its own session, output kept in files."""

    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def send(self, sig: int) -> None:
        """Send ``sig`` to the head process only (not its session)."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill9(self) -> None:
        """SIGKILL the head alone, as a crash would; its workers must follow by themselves."""
        self.send(signal.SIGKILL)
        self.popen.wait(10)

    def wait(self, timeout_s: float) -> int:
        """The exit status; fails the test (with the output) after ``timeout_s``."""
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ccworkflow did not exit within {timeout_s:g}s; output:\n"
                                 f"{self.output()}") from None

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Processes:
    """Starts processes for one test, tagged; :meth:`close` kills all that remain."""

    def __init__(self, folder: Path, *, tag: str | None = None) -> None:
        self.folder = folder
        self.tag = tag or uuid.uuid4().hex
        self.heads: list[HeadProcess] = []

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOFLOW_")}
        env.update({TAG_ENV: self.tag, "PYTHONUNBUFFERED": "1"})
        env.update(extra or {})
        return env

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> HeadProcess:
        """Start ``argv`` in a new session with the tag in its environment."""
        log = self.folder / f"head-{len(self.heads)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, cwd=cwd or self.folder,
                                     env=self.env(env), start_new_session=True)
        head = HeadProcess(popen, log)
        self.heads.append(head)
        return head

    def ccworkflow(self, graph: Path, *args: str, env: Mapping[str, str] | None = None,
                   cwd: Path | None = None, probes: bool = True) -> HeadProcess:
        """Start ``ccworkflow GRAPH ARGS``, with the probe modules on its module path
        unless ``probes`` is false."""
        modules = ["--modules", str(PROBE_MODULES)] if probes else []
        argv = [*ccworkflow_command(), str(graph), *modules, *args]
        return self.start(argv, env=env, cwd=cwd)

    def run(self, graph: Path, *args: str, timeout_s: float = 45.0,
            env: Mapping[str, str] | None = None, probes: bool = True) -> tuple[int, str]:
        """Run ``ccworkflow`` to its end: ``(exit code, output)``."""
        head = self.ccworkflow(graph, *args, env=env, probes=probes)
        code = head.wait(timeout_s)
        return code, head.output()

    def alive(self) -> dict[int, dict[str, str]]:
        """Processes of this test that are still running."""
        return tagged_pids(self.tag)

    def wait_none_alive(self, timeout_s: float = 5.0) -> None:
        """Wait until no process of this test runs; fail naming the survivors."""
        deadline = time.monotonic() + timeout_s
        while (left := self.alive()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if left:
            raise AssertionError(f"processes still running {timeout_s:g}s after the head "
                                 f"ended:\n{describe(left)}")

    def close(self) -> None:
        for head in self.heads:
            if head.alive:
                try:
                    os.killpg(head.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                head.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        kill_tagged(self.tag)


@contextmanager
def processes(folder: Path) -> Iterator[Processes]:
    """A :class:`Processes` whose leftovers are killed when the block ends."""
    procs = Processes(folder)
    try:
        yield procs
    finally:
        procs.close()
