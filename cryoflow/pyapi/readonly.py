"""Read-only shared folders for tasks that run on this machine, not in a container.

A ``shared_directory`` ending in ``:ro`` is mounted read-only into containers by the
container executors. Python, bash and command tasks get the same guarantee from the
kernel: each such task runs in a mount namespace of its own in which every read-only
folder is bind-mounted onto itself read-only, so any write into it fails with
``EROFS`` ("Read-only file system") while the rest of the machine, and every other
task, is untouched.

- bash and command tasks: their command runs through ``python -m
  cryoflow.pyapi.readonly --read-only PATH ... -- COMMAND...``, which sets up the
  namespace and then executes the command;
- Python tasks: :func:`call_read_only` forks, sets up the namespace in the child, calls
  the function there and hands its (JSON) result back through a pipe.

The namespace needs root (``CAP_SYS_ADMIN``) or, without it, unprivileged user
namespaces. When neither is available the task fails and says so: it never runs
with a folder writable that was asked to be read-only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from cryoflow.errors import CryoflowError

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
_ST_TO_MS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
             os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME,
             os.ST_RELATIME: MS_RELATIME}
ERROR_EXIT = 121
"""Exit code of the command wrapper when the namespace cannot be set up."""


class ReadOnlyError(CryoflowError):
    """A folder cannot be made read-only for a task."""


class TaskError(CryoflowError):
    """The function failed in its read-only child; the message is its exception."""


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise ReadOnlyError(f"{what}: {os.strerror(error)}")


def enter(paths: Sequence[str]) -> None:
    """In this (single-threaded) process: make ``paths`` read-only, for it alone."""
    if not sys.platform.startswith("linux"):
        raise ReadOnlyError("read-only shared folders for local tasks need Linux")
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWNS) != 0:
        first = os.strerror(ctypes.get_errno())
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
            raise ReadOnlyError(
                f"cannot make {', '.join(paths)} read-only for the task: a mount namespace "
                f"needs root ({first}) or unprivileged user namespaces "
                f"({os.strerror(ctypes.get_errno())}); run the task in a container instead")
        _map_user(uid, gid)
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
    for path in paths:
        try:
            _read_only_mount(libc, path)
        except (ReadOnlyError, OSError) as exc:
            raise ReadOnlyError(f"cannot make {path} read-only for the task: {exc}") from None
    os.chdir(os.getcwd())  # a working folder inside a read-only one is read-only too


def _read_only_mount(libc: Any, path: str) -> None:
    target = os.fsencode(os.path.realpath(path))
    _check(libc.mount(target, target, None, MS_BIND | MS_REC, None), "bind mount")
    flags = MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(path)
    _check(libc.mount(None, target, None, flags, None), "read-only remount")


def _map_user(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as out:
        out.write("deny")
    with open("/proc/self/uid_map", "w") as out:
        out.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as out:
        out.write(f"{gid} {gid} 1")


def _locked_flags(path: str) -> int:
    """The mount flags a remount must keep (a user namespace may not drop them)."""
    found = os.statvfs(path).f_flag
    return sum(ms for st, ms in _ST_TO_MS.items() if found & st)


# ----------------------------------------------------------------------------- commands


def wrap_command(argv: Sequence[str], paths: Sequence[str]) -> list[str]:
    """``argv`` run with ``paths`` read-only (see the module docstring)."""
    wrapped = [sys.executable, "-m", "cryoflow.pyapi.readonly"]
    for path in paths:
        wrapped += ["--read-only", path]
    return [*wrapped, "--", *argv]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    paths: list[str] = []
    while args and args[0] == "--read-only" and len(args) > 1:
        paths.append(args[1])
        del args[:2]
    if not args or args[0] != "--" or len(args) < 2:
        print("usage: python -m cryoflow.pyapi.readonly [--read-only PATH]... -- COMMAND...",
              file=sys.stderr)
        return 2
    try:
        enter(paths)
    except (ReadOnlyError, OSError) as exc:
        print(f"cryoflow: {exc}", file=sys.stderr)
        return ERROR_EXIT
    os.execvp(args[1], args[1:])
    return ERROR_EXIT  # not reached


# ----------------------------------------------------------------------------- Python


def call_read_only(target: str, read_only: list[str], target_path: str | None = None) -> Any:
    """Call the function ``target`` names in a child with ``read_only`` folders."""
    from cryoflow.pyapi.calls import resolve

    function = resolve(target, target_path)
    return run_forked(function, read_only)


def run_forked(function: Callable[[], Any], paths: Sequence[str]) -> Any:
    """``function()`` in a forked child that sees ``paths`` read-only; its JSON result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        code = _child(function, paths, write_end)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        answer = json.loads(data) if data else {}
    except ValueError:
        answer = {}
    if "result" in answer:
        return answer["result"]
    if answer.get("setup"):
        raise ReadOnlyError(answer["setup"])
    raise TaskError(answer.get("error") or f"the task's process ended ({_ended(status)})")


def _child(function: Callable[[], Any], paths: Sequence[str], fd: int) -> int:
    try:
        enter(paths)
    except (ReadOnlyError, OSError) as exc:
        data = json.dumps({"setup": str(exc)}).encode()
        code = 1
    else:
        data, code = _call(function)
    with os.fdopen(fd, "wb") as pipe:
        pipe.write(data)
    return code


def _call(function: Callable[[], Any]) -> tuple[bytes, int]:
    try:
        answer: dict[str, Any] = {"result": function()}
        data = json.dumps(answer).encode()
        code = 0
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        text += "\n" + "".join(traceback.format_tb(exc.__traceback__)[-3:])
        data = json.dumps({"error": text}).encode()
        code = 1
    return data, code


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


if __name__ == "__main__":
    raise SystemExit(main())
