"""One head per state folder: the flock, its message, and its release when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cryoflow.errors import StoreError, StoreLockedError
from cryoflow.store import Store
from cryoflow.store.lock import StateLock

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def holder(state_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A separate process that opens the store, says ``ready`` and waits for stdin."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from cryoflow.store import Store
        s = Store.open(Path({str(state_dir)!r}), workflow="wf")
        print("ready", flush=True)
        sys.stdin.read()
        s.close()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def test_a_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path, workflow="wf"):
        with pytest.raises(StoreLockedError, match=f"locked by pid {os.getpid()}"):
            Store.open(tmp_path, workflow="wf")


def test_a_second_open_in_another_process_is_refused_with_its_pid(tmp_path: Path) -> None:
    with holder(tmp_path) as proc:
        with pytest.raises(StoreLockedError) as err:
            Store.open(tmp_path, workflow="wf")
        assert str(err.value) == (
            f"state folder {tmp_path} is locked by pid {proc.pid} (another ccworkflow is "
            "running there); stop it, or pick another folder with --state"
        )
        assert Store.describe(tmp_path)["pebbles"] == 0


def test_the_lock_is_freed_when_the_holder_is_killed(tmp_path: Path) -> None:
    with holder(tmp_path) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        with Store.open(tmp_path, workflow="wf") as store:
            assert store.integrity_check() == ("ok", [])
    assert (tmp_path / "lock").read_text().strip() == str(os.getpid())


def test_close_releases_the_lock(tmp_path: Path) -> None:
    Store.open(tmp_path, workflow="wf").close()
    with Store.open(tmp_path, workflow="wf"):
        pass


def test_an_open_that_fails_releases_the_lock(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"\x00" * 4096)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store.open(tmp_path, workflow="wf")
    lock = StateLock.acquire(tmp_path)
    assert lock.held
    lock.release()
    lock.release()
    assert not lock.held


def test_a_lock_file_without_a_pid_still_refuses(tmp_path: Path) -> None:
    lock = StateLock.acquire(tmp_path)
    (tmp_path / "lock").write_text("")
    try:
        with pytest.raises(StoreLockedError, match="locked by another process"):
            StateLock.acquire(tmp_path)
    finally:
        lock.release()


def test_an_unwritable_state_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create the state folder"):
        Store.open(blocker / "state", workflow="wf")
