"""The SQLite state store: round trips, group commit, resume reads, damaged files, full disk."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from cryoflow.engine.records import (
    CancelJob,
    JobSpec,
    NodeChanged,
    NodeState,
    NodeStatus,
    PebbleDone,
    PebbleOutcome,
    QueueJob,
    job_id,
)
from cryoflow.errors import ConfigError, StoreError, StoreFullError
from cryoflow.graph.model import Outcome, WorkerClass
from cryoflow.store import Retention, Store, codec, guard, schema
from cryoflow.store import sqlite as store_sqlite

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store.open(tmp_path / "state", workflow="wf")
    yield s
    s.close()


def spec(pebble_id: int, node: str = "A", *, attempt: int = 1, **kw: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "args": {"src": f"/in/{pebble_id}"},
        "priority": 0,
        "worker_class": WorkerClass.NORMAL,
    }
    fields.update(kw)
    jid = job_id(pebble_id, node, fields.get("branch", ()), attempt)
    fields.setdefault("branch", ())
    return JobSpec(id=jid, pebble_id=pebble_id, node=node, attempt=attempt, **fields)


def add(store: Store, n: int = 1, **item: Any) -> list[int]:
    with store.batch() as b:
        return [b.add_pebble("In", {"n": i, **item}, now=10.0)[0] for i in range(n)]


def queue(store: Store, *jobs: JobSpec, now: float = 11.0) -> None:
    with store.batch() as b:
        b.apply([QueueJob(j) for j in jobs], now=now)


def must(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None
    return row


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def scalar(path: Path, sql: str) -> Any:
    conn = raw(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


# ------------------------------------------------------------------------ opening


def test_open_creates_a_wal_database_that_records_workflow_and_version(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", workflow="wf", now=5.0) as s:
        db = s.path
        assert db == tmp_path / "s" / "state.db"
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn = raw(db)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    conn.close()
    assert meta["schema_version"] == str(len(schema.MIGRATIONS))
    assert meta["workflow"] == "wf"
    assert float(meta["created"]) == 5.0
    assert meta["cryoflow_version"]
    assert not list(db.parent.glob("*.init*"))


def test_synchronous_full_is_selectable_and_a_wrong_value_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path, workflow="wf", synchronous="FULL") as s:
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(StoreError, match="synchronous must be"):
        Store.open(tmp_path, workflow="wf", synchronous="OFF")


def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    with Store.open(tmp_path, workflow="wf") as s:
        (pid,) = add(s)
        queue(s, spec(pid))
    with Store.open(tmp_path, workflow="wf") as s:
        assert must(s.pebble(pid))["item"] == {"n": 0}
        assert [j.id for j, _ in s.open_jobs()] == [job_id(pid, "A", (), 1)]


def test_a_store_of_another_workflow_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path, workflow="wf").close()
    with pytest.raises(StoreError, match="holds the state of workflow 'wf', not 'other'"):
        Store.open(tmp_path, workflow="other")


def test_a_state_folder_on_a_network_file_system_is_refused() -> None:
    info = (
        "1 0 0:1 / / rw - ext4 /dev/vda rw\n"
        "2 1 0:2 / /mnt/nas rw shared:1 - nfs4 srv:/x rw\n"
        "3 2 0:3 / /mnt/nas/local\\040disk rw - ext4 /dev/vdb rw\n"
    )
    with pytest.raises(StoreError, match=r"network file system \(nfs4\).*local disk"):
        guard.check_local(Path("/mnt/nas/state"), mountinfo=info)
    guard.check_local(Path("/mnt/nas/local disk/state"), mountinfo=info)
    guard.check_local(Path("/home/x/state"), mountinfo=info)


# ---------------------------------------------------------------------- pebbles


def test_pebble_round_trip_keeps_item_node_states_and_outcome(store: Store) -> None:
    (pid,) = add(store, tag="x")
    done = NodeState(
        status=NodeStatus.DONE,
        outcome=Outcome.SUCCESS,
        output={"files": ["a", "b"], "n": 1.5},
        resolved_by="In",
        combined=Outcome.SUCCESS,
        attempts=2,
        lost=1,
        stats={"runtime": 0.25},
    )
    with store.batch() as b:
        b.apply(
            [
                NodeChanged(pid, "A", (), done),
                NodeChanged(pid, "S", (), NodeState(status=NodeStatus.SPLIT, branches=2)),
                NodeChanged(pid, "S", (1,), NodeState(status=NodeStatus.QUEUED)),
                PebbleDone(pid, PebbleOutcome.FAILED, ("B", "C")),
            ],
            now=20.0,
        )
    pebble = store.pebble(pid)
    assert pebble is not None
    assert pebble["item"] == {"n": 0, "tag": "x"}
    assert (pebble["state"], pebble["outcome"]) == ("done", "failed")
    assert pebble["failed_nodes"] == ["B", "C"]
    assert (pebble["created"], pebble["finished"]) == (10.0, 20.0)
    a = pebble["nodes"]["A"][""]
    assert a["output"] == {"files": ["a", "b"], "n": 1.5}
    assert (a["status"], a["outcome"], a["attempts"], a["lost"]) == ("done", "success", 2, 1)
    assert a["stats"] == {"runtime": 0.25}
    assert pebble["nodes"]["S"][""]["branches"] == 2
    assert pebble["nodes"]["S"]["1"]["status"] == "queued"
    assert store.pebble(999) is None


def test_the_last_node_change_in_a_batch_wins(store: Store) -> None:
    (pid,) = add(store)
    with store.batch() as b:
        b.apply(
            [
                NodeChanged(pid, "A", (), NodeState(status=NodeStatus.QUEUED)),
                NodeChanged(pid, "A", (), NodeState(NodeStatus.DONE, Outcome.ERROR, error="x")),
            ],
            now=1.0,
        )
    node = must(store.pebble(pid))["nodes"]["A"][""]
    assert (node["status"], node["outcome"], node["error"]) == ("done", "error", "x")


def test_pebble_ids_are_assigned_in_order_or_taken_from_the_caller(store: Store) -> None:
    assert store.next_pebble_id() == 1
    assert add(store, 2) == [1, 2]
    with store.batch() as b:
        assert b.add_pebble("In", {}, now=1.0, pebble_id=10) == (10, True)
    assert store.next_pebble_id() == 11
    with pytest.raises(StoreError), store.batch() as b:
        b.add_pebble("In", {}, now=1.0, pebble_id=10)


def test_an_idempotency_key_returns_the_existing_pebble(store: Store) -> None:
    with store.batch() as b:
        first = b.add_pebble("In", {"a": 1}, now=1.0, idem_key="k1")
        again = b.add_pebble("In", {"a": 2}, now=2.0, idem_key="k1")
    with store.batch() as b:
        later = b.add_pebble("In", {"a": 3}, now=3.0, idem_key="k1")
    assert first == (1, True)
    assert again == later == (1, False)
    assert store.pebble_counts()["active"] == 1
    assert must(store.pebble(1))["item"] == {"a": 1}


def test_a_seen_key_returns_the_existing_pebble_and_is_marked_seen(store: Store) -> None:
    with store.batch() as b:
        assert not b.has_seen("dev:ino:size:mtime:a.zip")
        pid, created = b.add_pebble(
            "Watch", {"p": "a.zip"}, now=1.0, seen_key="dev:ino:size:mtime:a.zip"
        )
        assert created and b.has_seen("dev:ino:size:mtime:a.zip")
    with store.batch() as b:
        assert b.add_pebble(
            "Watch", {"p": "a.zip"}, now=2.0, seen_key="dev:ino:size:mtime:a.zip"
        ) == (
            pid,
            False,
        )
    assert scalar(store.path, "SELECT count(*) FROM seen") == 1


def test_a_seen_key_is_not_kept_when_its_batch_rolls_back(store: Store) -> None:
    with pytest.raises(RuntimeError), store.batch() as b:
        b.add_pebble("Watch", {}, now=1.0, seen_key="k")
        raise RuntimeError("crash before commit")
    with store.batch() as b:
        assert not b.has_seen("k")


# ------------------------------------------------------------------------- jobs


def test_a_job_spec_round_trips_with_every_field(store: Store) -> None:
    (pid,) = add(store)
    full = spec(
        pid,
        "Wind",
        branch=(3, 0),
        attempt=2,
        args={"src": "s3://b/k", "n": [1, 2], "opt": None},
        priority=7,
        worker_class=WorkerClass.GPU,
        files={"src": {"type": "file", "unzip": True}},
        ccnode="gpu1",
        workdir="/tmp/w",
        not_before=12.5,
        timeout_s=30.0,
        post=({"output": "dst", "target": "s3://b/out/", "basename": True},),
        deferred=True,
        config={"root": {"k": 1}},
    )
    plain = spec(pid, "Plain")
    queue(store, full, plain)
    jobs = {j.id: (j, state) for j, state in store.open_jobs()}
    assert jobs[full.id] == (full, "queued")
    assert jobs[plain.id] == (plain, "queued")
    assert isinstance(jobs[full.id][0].worker_class, WorkerClass)
    listed = store.job(full.id)
    assert listed is not None
    assert listed["spec"]["branch"] == [3, 0] and listed["spec"]["deferred"] is True
    assert listed["spec"]["files"] == {"src": {"type": "file", "unzip": True}}
    assert must(store.job(plain.id))["spec"]["post"] == []


def test_a_plain_job_row_keeps_only_args_in_its_spec_json(store: Store) -> None:
    (pid,) = add(store)
    queue(store, spec(pid))
    assert scalar(store.path, "SELECT spec FROM jobs") == '{"args":{"src":"/in/1"}}'


def test_queueing_a_job_id_that_exists_does_not_duplicate_it(store: Store) -> None:
    (pid,) = add(store)
    queue(store, spec(pid))
    with store.batch() as b:
        b.jobs_dispatched([spec(pid).id], now=12.0)
    queue(store, spec(pid, args={"src": "changed"}))
    assert store.open_jobs() == [(spec(pid), "running")]


def test_job_started_and_finished_are_recorded_and_a_repeated_report_is_ignored(
    store: Store,
) -> None:
    (pid,) = add(store)
    job = spec(pid)
    queue(store, job)
    with store.batch() as b:
        b.jobs_dispatched([job.id], now=11.0)
        b.job_started(job.id, worker="w1", host="h1", now=12.0)
        b.job_finished(
            job.id, outcome="success", retval={"x": 1}, error=None, stats={"t": 1}, now=13.0
        )
    with store.batch() as b:
        b.job_finished(job.id, outcome="error", retval=None, error="late", stats={}, now=14.0)
    row = store.job(job.id)
    assert row is not None
    assert (row["state"], row["outcome"], row["retval"], row["error"]) == (
        "done",
        "success",
        {"x": 1},
        None,
    )
    assert (row["worker"], row["host"], row["started"], row["finished"]) == ("w1", "h1", 12.0, 13.0)
    assert row["stats"] == {"t": 1}
    assert store.open_jobs() == []


def test_cancel_stops_queued_and_running_jobs_but_not_finished_ones(store: Store) -> None:
    (pid,) = add(store)
    queued, running, done = spec(pid, "Q"), spec(pid, "R"), spec(pid, "D")
    queue(store, queued, running, done)
    with store.batch() as b:
        b.jobs_dispatched([running.id], now=1.0)
        b.job_finished(done.id, outcome="success", retval=None, error=None, stats={}, now=2.0)
        b.apply([CancelJob(queued.id), CancelJob(running.id), CancelJob(done.id)], now=3.0)
    states = {j["id"]: j["state"] for j in store.jobs(pebble_id=pid)}
    assert states == {queued.id: "cancelled", running.id: "cancelled", done.id: "done"}
    with store.batch() as b:
        b.jobs_dispatched([queued.id], now=4.0)
    assert must(store.job(queued.id))["state"] == "cancelled"


def test_writes_in_one_batch_take_effect_in_call_order(store: Store) -> None:
    (pid,) = add(store)
    first, second = spec(pid, "A"), spec(pid, "B")
    with store.batch() as b:
        b.apply([QueueJob(first), QueueJob(second)], now=1.0)
        b.jobs_dispatched([first.id], now=2.0)
        b.job_finished(first.id, outcome="success", retval=1, error=None, stats={}, now=3.0)
        b.apply([CancelJob(first.id)], now=4.0)
        b.jobs_dispatched([second.id], now=5.0)
        assert b.requeue_running(now=6.0) == [second.id]
        b.job_finished(second.id, outcome="success", retval=2, error=None, stats={}, now=7.0)
    assert must(store.job(first.id))["state"] == "done"
    assert must(store.job(first.id))["retval"] == 1
    assert must(store.job(second.id))["outcome"] == "lost"


def test_requeue_running_closes_running_jobs_as_lost_and_returns_their_ids(store: Store) -> None:
    (pid,) = add(store)
    a, b_, c = spec(pid, "A"), spec(pid, "B"), spec(pid, "C")
    queue(store, a, b_, c)
    with store.batch() as b:
        b.jobs_dispatched([a.id], now=1.0)
        b.jobs_dispatched([b_.id], now=1.0)
    with store.batch() as b:
        assert b.requeue_running(now=5.0) == sorted([a.id, b_.id])
    with store.batch() as b:
        assert b.requeue_running(now=6.0) == []
    assert store.open_jobs() == [(c, "queued")]
    lost = store.job(a.id)
    assert lost is not None and (lost["state"], lost["outcome"]) == ("done", "lost")


# ----------------------------------------------------------------- group commit


def test_a_batch_that_raises_leaves_nothing(store: Store) -> None:
    (pid,) = add(store)
    before = store.events()
    with pytest.raises(ValueError, match="engine bug"), store.batch() as b:
        b.add_pebble("In", {"n": 99}, now=1.0)
        b.apply([QueueJob(spec(pid)), NodeChanged(pid, "A", (), NodeState())], now=1.0)
        b.set_status("A", "progress", 50, now=1.0)
        b.add_logs([(1.0, "info", pid, None, "A", "hello")])
        b.add_event("custom", now=1.0)
        raise ValueError("engine bug")
    assert store.pebble_counts()["active"] == 1
    assert store.open_jobs() == []
    assert must(store.pebble(pid))["nodes"] == {}
    assert store.status_values() == {}
    assert store.logs() == []
    assert store.events() == before


def test_a_batch_with_a_foreign_key_violation_leaves_nothing(store: Store) -> None:
    (pid,) = add(store)
    with pytest.raises(StoreError, match="FOREIGN KEY"), store.batch() as b:
        b.apply([NodeChanged(pid, "A", (), NodeState())], now=1.0)
        b.apply([NodeChanged(404, "A", (), NodeState())], now=1.0)
    assert must(store.pebble(pid))["nodes"] == {}


def test_apply_refuses_what_is_not_an_action(store: Store) -> None:
    with pytest.raises(TypeError, match="not a store action"), store.batch() as b:
        b.apply(["nonsense"], now=1.0)  # type: ignore[list-item]


def test_events_record_every_write_in_order(store: Store) -> None:
    with store.batch() as b:
        pid, _ = b.add_pebble("In", {}, now=1.0)
        b.apply(
            [QueueJob(spec(pid)), NodeChanged(pid, "A", (2,), NodeState(status=NodeStatus.QUEUED))],
            now=1.0,
        )
        b.job_started(spec(pid).id, worker="w", host="h", now=2.0)
        b.job_finished(spec(pid).id, outcome="success", retval=None, error=None, stats={}, now=3.0)
        b.apply([PebbleDone(pid, PebbleOutcome.COMPLETED)], now=3.0)
        b.add_event("status", now=3.0, data={"x": 1})
    events = store.events()
    assert [e["kind"] for e in events] == [
        "pebble_added",
        "job_queued",
        "node_changed",
        "job_started",
        "job_finished",
        "pebble_done",
        "status",
    ]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[2]["data"] == {"node": "A", "branch": "2", "status": "queued"}
    assert events[4]["data"] == {"outcome": "success"}
    assert events[5]["data"] == {"outcome": "completed"}
    assert store.events(after_seq=events[4]["seq"]) == events[5:]
    assert store.events(limit=2) == events[:2]


# ---------------------------------------------------------------------- resume


def test_active_pebbles_streams_unfinished_pebbles_with_their_node_states(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sqlite, "ACTIVE_PAGE", 3)
    ids = add(store, 8)
    state = NodeState(
        status=NodeStatus.DONE, outcome=Outcome.SUCCESS, output={"k": 1}, stats={"t": 2}
    )
    with store.batch() as b:
        b.apply([NodeChanged(pid, "A", (), state) for pid in ids], now=2.0)
        b.apply([NodeChanged(ids[1], "S", (0, 1), NodeState(status=NodeStatus.QUEUED))], now=2.0)
        b.apply(
            [PebbleDone(ids[2], PebbleOutcome.COMPLETED), PebbleDone(ids[6], PebbleOutcome.FAILED)],
            now=3.0,
        )
    stream = store.active_pebbles()
    assert not isinstance(stream, list)
    resumed = list(stream)
    assert [r[0] for r in resumed] == [i for i in ids if i not in (ids[2], ids[6])]
    pid, input_node, item, states = resumed[1]
    assert (pid, input_node, item) == (ids[1], "In", {"n": 1})
    assert states == {
        ("A", ()): state,
        ("S", (0, 1)): NodeState(status=NodeStatus.QUEUED),
    }
    assert isinstance(states[("A", ())].outcome, Outcome)


def test_active_pebbles_tolerates_writes_between_pages(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sqlite, "ACTIVE_PAGE", 2)
    ids = add(store, 6)
    seen = []
    for pid, *_ in store.active_pebbles():
        seen.append(pid)
        with store.batch() as b:
            b.apply([PebbleDone(pid, PebbleOutcome.COMPLETED)], now=1.0)
    assert seen == ids
    assert list(store.active_pebbles()) == []


def test_open_jobs_lists_queued_and_running_jobs_best_first(store: Store) -> None:
    ids = add(store, 3)
    low_old = spec(ids[0], "A", priority=0)
    high_new = spec(ids[2], "A", priority=5)
    high_old = spec(ids[1], "A", priority=5)
    finished = spec(ids[0], "B", priority=9)
    queue(store, low_old, high_new, high_old, finished)
    with store.batch() as b:
        b.jobs_dispatched([low_old.id], now=1.0)
        b.job_finished(finished.id, outcome="success", retval=None, error=None, stats={}, now=1.0)
    assert store.open_jobs() == [(high_old, "queued"), (high_new, "queued"), (low_old, "running")]


# ---------------------------------------------------------------- other tables


def test_status_values_keep_the_latest_value_per_channel_and_key(store: Store) -> None:
    with store.batch() as b:
        b.set_status("A", "progress", 10, now=1.0)
        b.set_status("A", "progress", 50, now=2.0)
        b.set_status("A", "state", {"phase": "upload"}, now=2.0)
        b.set_status("B", "progress", 1, now=2.0)
    assert store.status_values() == {
        "A": {"progress": 50, "state": {"phase": "upload"}},
        "B": {"progress": 1},
    }
    assert store.status_values("B") == {"B": {"progress": 1}}


def test_logs_filter_by_pebble_job_node_level_text_and_time(store: Store) -> None:
    ids = add(store, 2)
    with store.batch() as b:
        b.add_logs(
            [
                (1.0, "info", ids[0], "1/A#1", "A", "starting A"),
                (2.0, "error", ids[0], "1/A#1", "A", "disk full in A"),
                (3.0, "info", ids[1], "2/B#1", "B", "starting B"),
                (4.0, "warning", None, None, None, "head: 100% of 'x'"),
            ]
        )
    logs = store.logs()
    assert [r["message"] for r in logs][-1] == "head: 100% of 'x'"
    assert [r["ts"] for r in store.logs(pebble_id=ids[0])] == [1.0, 2.0]
    assert [r["ts"] for r in store.logs(job_id="2/B#1")] == [3.0]
    assert [r["ts"] for r in store.logs(node="A", level="error")] == [2.0]
    assert [r["ts"] for r in store.logs(grep="100% of 'x'")] == [4.0]
    assert [r["ts"] for r in store.logs(since=3.0)] == [3.0, 4.0]
    assert [r["ts"] for r in store.logs(after_id=logs[1]["id"], limit=1)] == [3.0]
    assert set(logs[0]) == {"id", "ts", "level", "pebble_id", "job_id", "node", "message"}


def test_counts_per_node_and_per_pebble_outcome(store: Store) -> None:
    ids = add(store, 4)
    done = NodeState(status=NodeStatus.DONE, outcome=Outcome.SUCCESS)
    with store.batch() as b:
        b.apply(
            [
                NodeChanged(ids[0], "A", (), done),
                NodeChanged(ids[1], "A", (), NodeState(NodeStatus.DONE, Outcome.ERROR)),
                NodeChanged(ids[2], "A", (), NodeState(status=NodeStatus.QUEUED)),
                NodeChanged(ids[3], "A", (), NodeState(status=NodeStatus.QUEUED)),
                NodeChanged(ids[0], "B", (), NodeState()),
                QueueJob(spec(ids[2])),
                QueueJob(spec(ids[3])),
                PebbleDone(ids[0], PebbleOutcome.COMPLETED),
                PebbleDone(ids[1], PebbleOutcome.FAILED),
            ],
            now=1.0,
        )
        b.jobs_dispatched([spec(ids[3]).id], now=2.0)
    assert store.node_counts() == {
        "A": {"success": 1, "error": 1, "queued": 1, "running": 1},
        "B": {"waiting": 1},
    }
    assert store.pebble_counts() == {"active": 2, "completed": 1, "failed": 1}


def test_pebbles_and_jobs_list_with_filters_and_pages(store: Store) -> None:
    ids = add(store, 5)
    queue(store, *(spec(pid) for pid in ids), spec(ids[0], "B"))
    with store.batch() as b:
        b.apply([PebbleDone(ids[1], PebbleOutcome.FAILED)], now=2.0)
        b.jobs_dispatched([spec(ids[3]).id], now=2.0)
    assert [p["id"] for p in store.pebbles(state="active")] == [ids[0], ids[2], ids[3], ids[4]]
    assert [p["id"] for p in store.pebbles(outcome="failed")] == [ids[1]]
    assert [p["id"] for p in store.pebbles(after_id=ids[2], limit=1)] == [ids[3]]
    assert "nodes" not in store.pebbles()[0]
    assert [j["id"] for j in store.jobs(pebble_id=ids[0])] == [
        spec(ids[0]).id,
        spec(ids[0], "B").id,
    ]
    assert [j["id"] for j in store.jobs(state="running")] == [spec(ids[3]).id]
    assert [j["id"] for j in store.jobs(node="B")] == [spec(ids[0], "B").id]
    first = store.jobs(limit=2)
    rest = store.jobs(after=first[-1]["id"])
    assert len(first) + len(rest) == 6
    assert store.job("nope") is None


def test_odd_values_are_stored_as_json_or_as_text(store: Store) -> None:
    (pid,) = add(store)
    output = {"path": Path("/x/y"), "tags": {"b", "a"}, "t": (1, 2), "obj": object.__name__}
    with store.batch() as b:
        b.apply([NodeChanged(pid, "A", (), NodeState(output=output))], now=1.0)
    got = must(store.pebble(pid))["nodes"]["A"][""]["output"]
    assert got == {"path": "/x/y", "tags": ["a", "b"], "t": [1, 2], "obj": "object"}
    assert codec.dumps({(1, 2): 3}) == codec.dumps(str({(1, 2): 3}))


# -------------------------------------------------------- reader and integrity


def test_a_reader_reads_committed_state_from_another_thread(store: Store) -> None:
    reader = store.reader()
    results: list[Any] = []
    with store.batch() as b:
        pid, _ = b.add_pebble("In", {"n": 1}, now=1.0)
        thread = threading.Thread(target=lambda: results.append(reader.pebble(pid)))
        thread.start()
        thread.join(10)
    assert results == [None]
    thread = threading.Thread(target=lambda: results.append(reader.pebble(pid)))
    thread.start()
    thread.join(10)
    assert results[1]["item"] == {"n": 1}
    assert reader.pebble_counts() == store.pebble_counts()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._conn.execute("DELETE FROM pebbles")


def test_integrity_check_is_ok(store: Store) -> None:
    (pid,) = add(store)
    queue(store, spec(pid))
    assert store.integrity_check() == ("ok", [])
    assert store.reader().integrity_check() == ("ok", [])


# ------------------------------------------------------------ schema versions


def test_migrations_run_from_version_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(tmp_path, workflow="wf") as s:
        (pid,) = add(s)
    step = "ALTER TABLE pebbles ADD COLUMN note TEXT; CREATE TABLE extra(a TEXT)"
    newest = str(len(schema.MIGRATIONS) + 1)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, step])
    with Store.open(tmp_path, workflow="wf") as s:
        assert must(s.pebble(pid))["item"] == {"n": 0}
        db = s.path
    assert scalar(db, "SELECT value FROM meta WHERE key = 'schema_version'") == newest
    assert scalar(db, "SELECT count(note) FROM pebbles") == 0
    assert scalar(db, "SELECT count(*) FROM extra") == 0


def test_a_new_database_gets_every_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    newest = str(len(schema.MIGRATIONS) + 1)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, "CREATE TABLE extra(a TEXT)"])
    with Store.open(tmp_path, workflow="wf") as s:
        db = s.path
    assert scalar(db, "SELECT value FROM meta WHERE key = 'schema_version'") == newest


def test_a_failing_migration_leaves_the_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store.open(tmp_path, workflow="wf").close()
    current = str(len(schema.MIGRATIONS))
    broken = "CREATE TABLE extra(a TEXT); INSERT INTO nowhere VALUES (1)"
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    with pytest.raises(StoreError, match="no such table: nowhere"):
        Store.open(tmp_path, workflow="wf")
    db = tmp_path / "state.db"
    assert scalar(db, "SELECT value FROM meta WHERE key = 'schema_version'") == current
    assert scalar(db, "SELECT count(*) FROM sqlite_master WHERE name = 'extra'") == 0


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path, workflow="wf").close()
    db = tmp_path / "state.db"
    conn = raw(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match=r"newer cryoflow \(schema version 99.*upgrade cryoflow"):
        Store.open(tmp_path, workflow="wf")
    assert scalar(db, "SELECT value FROM meta WHERE key = 'schema_version'") == "99"


def test_an_sqlite_database_of_something_else_is_refused(tmp_path: Path) -> None:
    conn = raw(tmp_path / "state.db")
    conn.execute("CREATE TABLE photos(id)")
    conn.close()
    with pytest.raises(StoreError, match="not a cryoflow state store"):
        Store.open(tmp_path, workflow="wf")
    assert scalar(tmp_path / "state.db", "SELECT count(*) FROM photos") == 0


# -------------------------------------------------------- damaged state files


def test_a_random_bytes_file_is_refused_and_kept(tmp_path: Path) -> None:
    junk = os.urandom(8192)
    (tmp_path / "state.db").write_bytes(junk)
    with pytest.raises(StoreError, match="not an SQLite database.*left as it is"):
        Store.open(tmp_path, workflow="wf")
    assert (tmp_path / "state.db").read_bytes() == junk
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store.describe(tmp_path)


def test_a_truncated_file_is_refused_kept_and_backups_are_named(tmp_path: Path) -> None:
    with Store.open(tmp_path, workflow="wf") as s:
        add(s, 200, blob="x" * 500)
    db = tmp_path / "state.db"
    whole = db.read_bytes()
    db.write_bytes(whole[: len(whole) // 2 + 100])
    (tmp_path / "state.db.20260101-000000.bak").write_bytes(whole)
    with pytest.raises(StoreError, match=r"truncated.*state\.db\.20260101-000000\.bak"):
        Store.open(tmp_path, workflow="wf")
    assert db.read_bytes() == whole[: len(whole) // 2 + 100]
    db.write_bytes(whole[:50])
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store.open(tmp_path, workflow="wf")
    assert db.stat().st_size == 50


def test_a_leftover_wal_is_recovered(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from cryoflow.store import Store
        s = Store.open(Path({str(tmp_path)!r}), workflow="wf")
        with s.batch() as b:
            b.add_pebble("In", {{"kept": True}}, now=1.0)
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    wal = tmp_path / "state.db-wal"
    assert wal.exists() and wal.stat().st_size > 0
    with Store.open(tmp_path, workflow="wf") as s:
        assert must(s.pebble(1))["item"] == {"kept": True}
        assert s.integrity_check() == ("ok", [])


def test_a_wal_left_by_a_deleted_database_is_set_aside_not_replayed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from cryoflow.store import Store
        s = Store.open(Path({str(tmp_path)!r}), workflow="wf")
        with s.batch() as b:
            b.add_pebble("In", {{"old": True}}, now=1.0)
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    wal = (tmp_path / "state.db-wal").read_bytes()
    (tmp_path / "state.db").unlink()
    with Store.open(tmp_path, workflow="wf") as s:
        assert s.pebble_counts()["active"] == 0
        add(s, 3)
        assert s.integrity_check() == ("ok", [])
    (orphan,) = tmp_path.glob("state.db.*.orphan-wal")
    assert orphan.read_bytes() == wal


# ---------------------------------------------------------------------- fresh


def test_describe_counts_what_fresh_would_discard(tmp_path: Path) -> None:
    assert Store.describe(tmp_path / "none") == {
        "pebbles": 0,
        "unfinished_pebbles": 0,
        "queued_jobs": 0,
        "running_jobs": 0,
    }
    with Store.open(tmp_path, workflow="wf") as s:
        ids = add(s, 3)
        queue(s, spec(ids[0]), spec(ids[1]))
        with s.batch() as b:
            b.jobs_dispatched([spec(ids[1]).id], now=1.0)
            b.apply([PebbleDone(ids[2], PebbleOutcome.COMPLETED)], now=1.0)
        assert Store.describe(tmp_path) == {
            "pebbles": 3,
            "unfinished_pebbles": 2,
            "queued_jobs": 1,
            "running_jobs": 1,
        }


def test_fresh_moves_the_old_database_aside(tmp_path: Path) -> None:
    with Store.open(tmp_path, workflow="wf") as s:
        add(s, 2)
    with Store.open(tmp_path, workflow="wf", fresh=True, now=1_700_000_000.0) as s:
        assert s.pebble_counts()["active"] == 0
        assert s.next_pebble_id() == 1
    backups = sorted(tmp_path.glob("state.db.*.bak"))
    assert len(backups) == 1
    assert scalar(backups[0], "SELECT count(*) FROM pebbles") == 2
    with Store.open(tmp_path, workflow="wf", fresh=True, now=1_700_000_000.0):
        pass
    assert len(list(tmp_path.glob("state.db.*.bak"))) == 2


def test_fresh_moves_a_damaged_file_aside_instead_of_deleting_it(tmp_path: Path) -> None:
    (tmp_path / "state.db").write_bytes(b"not a database at all" * 10)
    with Store.open(tmp_path, workflow="wf", fresh=True):
        pass
    (backup,) = tmp_path.glob("state.db.*.bak")
    assert backup.read_bytes() == b"not a database at all" * 10


# ------------------------------------------------------------------ full disk


def test_a_full_store_raises_store_full_and_works_again_once_space_is_freed(
    tmp_path: Path,
) -> None:
    with Store.open(tmp_path, workflow="wf", max_pages=60) as s:
        stored = 0
        with pytest.raises(
            StoreFullError, match=f"state store full: free disk space under {tmp_path}"
        ):
            for i in range(1000):
                with s.batch() as b:
                    b.add_pebble("In", {"blob": "x" * 3000, "i": i}, now=1.0)
                    b.add_event("custom", now=1.0)
                stored += 1
        assert 0 < stored < 1000
        assert s.pebble_counts()["active"] == stored
        assert len(s.events()) == 2 * stored
        s._conn.execute("PRAGMA max_page_count = 1000000")
        add(s, 5, blob="y" * 3000)
        assert s.pebble_counts()["active"] == stored + 5
        assert s.integrity_check() == ("ok", [])


def test_events_of_a_version_two_store_read_the_same_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old:
        old.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        with Store.open(tmp_path, workflow="wf") as s:
            conn = raw(s.path)
            conn.executemany(
                "INSERT INTO events(ts, kind, pebble_id, job_id, data) VALUES (?, ?, ?, ?, ?)",
                [(1.0, "pebble_added", 1, None, None),
                 (2.0, "job_finished", None, "1/A#1", '{"outcome":"success"}')])
            conn.close()
    with Store.open(tmp_path, workflow="wf") as s:
        assert s.events() == [
            {"seq": 1, "ts": 1.0, "kind": "pebble_added", "pebble_id": 1, "job_id": None,
             "data": None},
            {"seq": 2, "ts": 2.0, "kind": "job_finished", "pebble_id": None, "job_id": "1/A#1",
             "data": {"outcome": "success"}},
        ]
        with s.batch() as b:
            b.add_event("note", now=3.0, data={"x": 1})
        assert [e["seq"] for e in s.events(after_seq=1)] == [2, 3]


# ------------------------------------------------------------ stored once


def test_a_result_the_node_row_holds_is_stored_once_and_read_back_whole(store: Store) -> None:
    (pid,) = add(store)
    job = spec(pid)
    queue(store, job)
    retval, stats = {"x": 1}, {"worker": "w", "node": "h", "runtime": 0.123456789}
    done = NodeState(NodeStatus.DONE, Outcome.SUCCESS, output=retval, attempts=1,
                     stats={**stats, "priority": 7})
    with store.batch() as b:
        b.jobs_dispatched([job.id], now=12.0)
        b.job_finished(job.id, outcome="success", retval=retval, error=None, stats=stats,
                       now=13.0)
        b.apply([NodeChanged(pid, "A", (), done)], now=13.0)
    assert scalar(store.path, "SELECT retval FROM jobs") is None
    assert scalar(store.path, "SELECT stats FROM nodes WHERE node = 'A'") == '{"@job":7}'
    assert must(store.job(job.id))["retval"] == {"x": 1}
    assert must(store.job(job.id))["stats"]["runtime"] == 0.123457
    node = must(store.pebble(pid))["nodes"]["A"][""]
    assert node["output"] == {"x": 1}
    assert node["stats"] == {"worker": "w", "node": "h", "runtime": 0.123457, "priority": 7}
    (_, _, _, states), = [r for r in [store.saved_pebble(pid)] if r is not None]
    assert dict(states[("A", ())].stats) == node["stats"]
    kinds = [(e["kind"], e["data"]) for e in store.events()][-2:]
    assert kinds == [("job_finished", {"outcome": "success"}),
                     ("node_changed", {"node": "A", "status": "done", "outcome": "success"})]


def test_an_input_nodes_output_is_its_pebbles_item_stored_once(store: Store) -> None:
    item = {"probe_id": "p1", "pad": "x" * 500}
    done = NodeState(NodeStatus.DONE, Outcome.SUCCESS, output=dict(item))
    with store.batch() as b:
        pid, _ = b.add_pebble("In", item, now=10.0)
        b.apply([NodeChanged(pid, "In", (), done)], now=10.0)
    assert scalar(store.path, "SELECT output FROM nodes WHERE node = 'In'") is None
    assert must(store.pebble(pid))["nodes"]["In"][""]["output"] == item
    (_, _, _, states), = [r for r in [store.saved_pebble(pid)] if r is not None]
    assert states[("In", ())].output == item  # what a restarted head resumes from


def test_an_input_node_output_other_than_the_item_is_stored_as_given(store: Store) -> None:
    with store.batch() as b:
        pid, _ = b.add_pebble("In", {"a": 1}, now=10.0)
        b.apply([NodeChanged(pid, "In", (), NodeState(NodeStatus.DONE, Outcome.SUCCESS,
                                                      output={"a": 2}))], now=10.0)
    assert must(store.pebble(pid))["nodes"]["In"][""]["output"] == {"a": 2}


def test_a_result_no_node_took_keeps_its_own_retval(store: Store) -> None:
    (pid,) = add(store)
    job = spec(pid)
    queue(store, job)
    with store.batch() as b:
        b.job_finished(job.id, outcome="success", retval={"late": True}, error=None,
                       stats={"worker": "w"}, now=13.0)
    assert must(store.job(job.id))["retval"] == {"late": True}
    assert must(store.job(job.id))["stats"] == {"worker": "w"}


# ------------------------------------------------------------ retention


def finish_pebbles(store: Store, ids: list[int], *, now: float, failed: bool = False) -> None:
    """Give each pebble a node, a finished job and a log line, then finish it."""
    outcome = PebbleOutcome.FAILED if failed else PebbleOutcome.COMPLETED
    with store.batch() as b:
        for pid in ids:
            job = spec(pid)
            b.apply([QueueJob(job)], now=now)
            b.job_finished(job.id, outcome="success", retval={"big": "x" * 200}, error=None,
                           stats={"worker": "w"}, now=now)
            b.add_logs([(now, "INFO", pid, job.id, "A", "line")])
            b.apply([NodeChanged(pid, "A", (), NodeState(NodeStatus.DONE, Outcome.SUCCESS)),
                     PebbleDone(pid, outcome)], now=now)


def test_retention_keeps_the_newest_finished_pebbles_and_counts_the_rest(store: Store) -> None:
    ids = add(store, 10)
    finish_pebbles(store, ids[:6], now=20.0)
    finish_pebbles(store, ids[6:8], now=21.0, failed=True)
    before = store.pebble_counts()
    assert store.prune(Retention(keep_pebbles=3), now=30.0) == 5
    assert [p["id"] for p in store.pebbles()] == ids[5:]
    assert store.pebble_counts() == before == {"active": 2, "completed": 6, "failed": 2}
    assert store.jobs(pebble_id=ids[0]) == [] and store.logs(pebble_id=ids[0]) == []
    assert store.pebble(ids[0]) is None
    assert [j["id"] for j in store.jobs()] == [spec(pid).id for pid in ids[5:8]]
    assert store.prune(Retention(keep_pebbles=3), now=31.0) == 0
    assert store.integrity_check() == ("ok", [])


def test_retention_by_age_removes_only_pebbles_finished_before_it(store: Store) -> None:
    ids = add(store, 4)
    finish_pebbles(store, ids[:2], now=100.0)
    finish_pebbles(store, ids[2:3], now=5000.0)
    day = Retention(max_age_s=1000.0)
    assert store.prune(day, now=5500.0) == 2
    assert [p["id"] for p in store.pebbles()] == ids[2:]
    assert [e["ts"] for e in store.events()][0] >= 100.0


def test_a_pruned_store_reuses_its_pages_instead_of_growing(tmp_path: Path) -> None:
    keep = Retention(keep_pebbles=50)
    with Store.open(tmp_path, workflow="wf") as s:
        sizes = []
        for round_ in range(6):
            ids = add(s, 200)
            finish_pebbles(s, ids, now=10.0 + round_)
            while s.prune(keep, now=20.0 + round_):
                pass
            s.checkpoint()
            sizes.append(s.path.stat().st_size)
        assert len(s.pebbles(limit=1000)) == 50
    assert max(sizes[2:]) <= sizes[1] * 1.1, sizes


@pytest.mark.parametrize("config, message", [
    ({"keep": 3}, "unknown key(s) keep"),
    ({"keep_pebbles": -1}, "keep_pebbles must be a whole number"),
    ({"max_age_days": "soon"}, "max_age_days must be a number > 0"),
    ([1], "retention must be a mapping"),
])
def test_a_bad_retention_setting_is_refused_with_what_to_change(config: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Retention.from_config(config)


def test_a_job_queued_and_handed_out_in_one_batch_is_written_once_as_running(
        store: Store) -> None:
    (pid,) = add(store)
    first, second = spec(pid, "A"), spec(pid, "B")
    with store.batch() as b:
        b.apply([QueueJob(first), QueueJob(second)], now=5.0, dispatched={first.id})
        b.jobs_dispatched([first.id], now=5.0)
    assert sorted(store.open_jobs(), key=lambda row: row[0].id) == [
        (first, "running"), (second, "queued")]
    assert must(store.job(first.id))["started"] == 5.0
    assert must(store.job(second.id))["started"] is None


@pytest.mark.parametrize("stats", [
    {"worker": "normal-0", "node": "vm", "runtime": 7.7e-05, "started": 1796282256.009161,
     "finished": 1796282256.009323, "max_memory": 31686656},
    {"worker": "", "node": "vm", "cached": True},
    {"worker": "other", "node": "vm", "traceback": "x"},
    {"started": "not a time", "note": [1, 2]},
    {"r": "a module's own key", "runtime": 1.5, "finished": 3.0},
])
def test_job_stats_read_back_as_they_were_written(stats: dict[str, Any]) -> None:
    worker, host = stats.get("worker") or None, stats.get("node") or None
    columns = ("normal-0", "vm") if worker == "normal-0" else (worker, host)
    text = codec.job_stats_text(stats, worker=columns[0], host=columns[1],
                                finished=1796282256.012)
    back = codec.job_stats(text, columns[0], columns[1], 1796282256.012,
                           codec.started_column(stats))
    assert back == pytest.approx(stats, abs=1e-6) if "runtime" in stats else back == stats
