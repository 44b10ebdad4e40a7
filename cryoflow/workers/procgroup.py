"""Process probes for local workers: pidfds, group kills, waiting for a group, memory.

Linux-first: pidfds and ``/proc`` make waiting exact; elsewhere the functions degrade
to doing nothing rather than failing.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any


def pidfd_of(pid: int) -> int | None:
    """A file descriptor readable once ``pid`` exits, where the system has pidfds."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def kill_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid``; a group that is gone is not an error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def wait_groups_gone(groups: set[int], timeout_s: float) -> None:
    """Wait until every process of these (SIGKILLed) process groups has exited."""
    loop = asyncio.get_running_loop()
    pidfds: list[int] = []
    waiters: list[asyncio.Future[None]] = []
    for pid in group_members(groups):
        fd = pidfd_of(pid)
        if fd is None:
            continue
        pidfds.append(fd)
        waiters.append(loop.create_future())
        loop.add_reader(fd, _resolve, waiters[-1])
    try:
        if waiters:
            await asyncio.wait(waiters, timeout=timeout_s)
    finally:
        for fd in pidfds:
            loop.remove_reader(fd)
            os.close(fd)


def group_members(groups: set[int]) -> list[int]:
    """Pids (zombies included) whose process group is one of ``groups`` (Linux /proc)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) in groups:
                    members.append(int(entry))
            except OSError:
                continue
    return members


def resident_bytes(pid: int, cache: dict[int, Any]) -> int:
    """The resident memory of ``pid`` (0 if it is gone); psutil handles kept in ``cache``."""
    import psutil

    try:
        process = cache.get(pid) or cache.setdefault(pid, psutil.Process(pid))
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
