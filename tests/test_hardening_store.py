"""The head never runs on a damaged state database and never answers 503 for ever.

- At open, ``PRAGMA quick_check`` runs; a database that fails it is refused (exit 2)
  with a sentence that says what to do, and the file is left exactly as it was.
- A commit that fails because the database is damaged or the disk gives I/O errors
  stops the head (exit 2, the reason printed); a full disk stays a 503 that clears
  once space is free.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from harness.graphs import feed, probe, write_graph
from harness.ledger import Ledger
from harness.procs import Processes
from test_netwatcher import error_of, netwatch

from cryoflow.cli.workflow import main
from cryoflow.errors import StoreBrokenError, StoreError, StoreFullError
from cryoflow.store import Store, guard

PAGE = 4096


def _filled(state: Path, workflow: str = "damaged", pebbles: int = 3000) -> Path:
    """A closed state database of ``pebbles`` finished-looking rows, several MB."""
    with Store.open(state, workflow=workflow) as store, store.batch() as tx:
        for n in range(pebbles):
            tx.add_pebble("In", {"probe_id": f"p{n}", "pad": "x" * 300}, now=10.0)
    return state / "state.db"


def garbage_mid_file(db: Path) -> None:
    data = bytearray(db.read_bytes())
    start = (len(data) // 2) // PAGE * PAGE
    data[start:start + 8192] = bytes((i * 37 + 11) % 251 for i in range(8192))
    db.write_bytes(bytes(data))


def tail_zeroed(db: Path) -> None:
    data = bytearray(db.read_bytes())
    start = (len(data) * 3 // 4) // PAGE * PAGE
    data[start:] = bytes(len(data) - start)
    db.write_bytes(bytes(data))


DAMAGES = [garbage_mid_file, tail_zeroed]


def _malformed(db: Path) -> bool:
    with closing(sqlite3.connect(db)) as conn:
        try:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok"
        except sqlite3.DatabaseError:
            return True


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda f: f.__name__)
def test_a_database_that_fails_quick_check_is_refused_at_open_and_kept(
        tmp_path: Path, damage: Callable[[Path], None]) -> None:
    db = _filled(tmp_path / "state")
    damage(db)
    assert _malformed(db)
    before = db.read_bytes()
    with pytest.raises(StoreBrokenError) as caught:
        Store.open(tmp_path / "state", workflow="damaged")
    message = str(caught.value)
    assert "is not a usable cryoflow state database" in message
    assert "quick_check" in message and "Restore a backup" in message
    assert "--fresh" in message and "--state" in message
    assert db.read_bytes() == before


def test_a_sound_database_passes_the_check_at_open(tmp_path: Path) -> None:
    _filled(tmp_path / "state", pebbles=50)
    with Store.open(tmp_path / "state", workflow="damaged") as store:
        assert store.pebble_counts()["active"] == 50


def test_ccworkflow_on_a_damaged_database_exits_2_saying_what_to_do(
        tmp_path: Path, procs: Processes, ledger: Ledger) -> None:
    state = tmp_path / "state"
    db = _filled(state)
    garbage_mid_file(db)
    before = db.read_bytes()
    ledger.offer([{"probe_id": "x"}])
    graph = write_graph(tmp_path / "graph.json", "damaged", [
        feed(ledger), probe("Noop", "probe_noop", ledger)])
    code, output = procs.run(graph, "--state", str(state), "--workers", "1",
                             "--admin-workers", "0", "--no-http")
    assert code == 2, output
    assert "quick_check" in output and "Restore a backup" in output
    assert "Traceback" not in output and db.read_bytes() == before
    assert ledger.markers("exec") == []


# ------------------------------------------------------------------ failing commits


def _io_error() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorname = "SQLITE_IOERR_WRITE"
    return error


def _corrupt_error() -> sqlite3.DatabaseError:
    """A real error from SQLite reading a file that is not a database."""
    with tempfile.TemporaryDirectory() as folder:
        garbage = Path(folder) / "garbage.db"
        garbage.write_bytes(b"not a database " * 512)
        with closing(sqlite3.connect(garbage)) as conn:
            try:
                conn.execute("SELECT 1 FROM sqlite_master")
            except sqlite3.DatabaseError as error:
                return error
    raise AssertionError("the garbage file opened as a database")


def test_sqlite_errors_are_sorted_into_broken_full_and_passing() -> None:
    db = Path("/state/state.db")
    assert isinstance(guard.store_error(_io_error(), db), StoreBrokenError)
    assert isinstance(guard.store_error(_corrupt_error(), db), StoreBrokenError)
    full = sqlite3.OperationalError("database or disk is full")
    assert isinstance(guard.store_error(full, db), StoreFullError)
    locked = sqlite3.OperationalError("database is locked")
    assert type(guard.store_error(locked, db)) is StoreError


@contextmanager
def _commits_fail_after(count: int, error: sqlite3.Error,
                        monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    original = Store.batch
    made = [0]

    @contextmanager
    def batch(self: Store) -> Iterator[Any]:
        made[0] += 1
        if made[0] > count:
            raise guard.store_error(error, self.path)
        with original(self) as tx:
            yield tx

    monkeypatch.setattr(Store, "batch", batch)
    yield made


@pytest.mark.timeout(90)
@pytest.mark.parametrize("make_error", [_io_error, _corrupt_error], ids=["io", "corrupt"])
def test_a_commit_that_fails_for_good_stops_the_head_with_exit_2(
        tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], make_error: Callable[[], sqlite3.Error]) -> None:
    ledger.offer([{"probe_id": f"i{n}"} for n in range(20)])
    graph = write_graph(tmp_path / "graph.json", "broken", [
        feed(ledger), probe("Noop", "probe_noop", ledger)])
    modules = Path(__file__).parent / "harness" / "probe_modules"
    with _commits_fail_after(3, make_error(), monkeypatch) as made:
        code = main([str(graph), "--modules", str(modules), "--state", str(tmp_path / "state"),
                     "--workers", "1", "--admin-workers", "0", "--no-http"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "ccworkflow: the head stopped: " in err and "state.db" in err
    assert made[0] < 20, "the head kept trying to commit"


@pytest.mark.timeout(60)
def test_the_netwatcher_stops_answering_503_for_ever_once_the_store_fails_for_good(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with netwatch(tmp_path, workers=0) as (rig, post):
        assert post("POST", "/task", {"n": 1})[0] == 202
        with _commits_fail_after(0, _io_error(), monkeypatch) as made:
            status, message = error_of(post("POST", "/task", {"n": 2}))
            assert status == 503 and "the head stopped" in message, message
            tries = made[0]
            time.sleep(1.5)
            assert made[0] == tries, "the head kept retrying a broken store"
            assert rig.head is not None and rig.head.fatal is not None
            again = error_of(post("POST", "/task", {"n": 3}))
            assert again[0] == 503 and "shutting down" in again[1]
