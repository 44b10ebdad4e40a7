"""The ledger client and the checks C1–C10 of a run's store against it.

A :class:`Ledger` is one folder shared by a test and its probes:

- ``spool.jsonl``: every item the test offered (one JSON object per line, each with a
  unique ``probe_id``); ``probe_feed`` offers them with ``idem_key=probe_id``;
- ``acks.tsv``: ``probe_id<TAB>pebble_id`` for every item the system acknowledged
  (written by ``probe_feed`` after the commit, fsynced);
- ``exec/``, ``done/``, ``effects/``, ``duplicates/``: the probe modules' markers.

Each check takes the ledger, a :class:`StoreView` of the state folder and, for C10,
the test's process tag, and returns a :class:`Check`: its problems (none when it
passes) and the figures it measured. :func:`assert_checks` fails with all of them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psutil

from cryoflow.store.reader import StoreReader

from .procs import JOB_ENV, describe, tagged_pids, wait_until

TERMINAL = ("completed", "failed")
PARTIAL_SUFFIXES = (".part", ".tmp", ".init")


@dataclass(frozen=True)
class Marker:
    """One ``exec`` or ``done`` marker of a probe execution."""

    kind: str
    job: str
    """The job id without its ``#attempt``: ``"12/Hash"``."""
    attempt: int
    pid: int
    t: float
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    """The result of one ledger check."""

    name: str
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return not self.problems

    def fail(self, problem: str, limit: int = 20) -> None:
        if len(self.problems) < limit:
            self.problems.append(problem)
        elif len(self.problems) == limit:
            self.problems.append("... (more problems left out)")


def assert_checks(*checks: Check) -> dict[str, dict[str, Any]]:
    """Fail listing every problem of every check; return the figures by check name."""
    failed = [c for c in checks if not c]
    if failed:
        lines = [f"{c.name}: {p}" for c in failed for p in c.problems]
        raise AssertionError("ledger checks failed:\n" + "\n".join(lines))
    return {c.name: c.figures for c in checks}


# The ledger


class Ledger:
    """The files a test shares with its probes (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @property
    def spool(self) -> Path:
        return self.root / "spool.jsonl"

    @property
    def acks_file(self) -> Path:
        return self.root / "acks.tsv"

    def offer(self, items: Iterable[Mapping[str, Any]]) -> int:
        """Append ``items`` (each with a ``probe_id``) to the spool; return how many."""
        lines = [json.dumps(dict(item)) + "\n" for item in items]
        with self.spool.open("a", encoding="utf-8") as spool:
            spool.write("".join(lines))
            spool.flush()
            os.fsync(spool.fileno())
        return len(lines)

    def offered(self) -> dict[str, dict[str, Any]]:
        """Every offered item by ``probe_id``."""
        if not self.spool.exists():
            return {}
        items = (json.loads(line) for line in self.spool.read_text().splitlines() if line)
        return {item["probe_id"]: item for item in items}

    def ack_lines(self) -> list[tuple[str, int]]:
        """Every complete line of the ack ledger, in order (repeats included)."""
        if not self.acks_file.exists():
            return []
        text = self.acks_file.read_text()
        complete = text[: text.rfind("\n") + 1]
        pairs = (line.split("\t") for line in complete.splitlines() if line)
        return [(probe_id, int(pebble)) for probe_id, pebble in pairs]

    def acked(self) -> dict[str, int]:
        """``probe_id → pebble id`` of every acknowledged item (the set A)."""
        return dict(self.ack_lines())

    def markers(self, kind: str) -> list[Marker]:
        """Every ``exec`` or ``done`` marker."""
        found = []
        for job_dir in _subdirs(self.root / kind):
            for entry in os.scandir(job_dir):
                found.append(_marker(kind, unquote(Path(job_dir).name), Path(entry.path)))
        return found

    def effects(self) -> dict[tuple[int, str], Path]:
        """``(pebble id, node) → effect file`` for every effect created."""
        return {(int(Path(p).name), unquote(Path(e).name)): Path(e)
                for p in _subdirs(self.root / "effects") for e in _entries(Path(p))}

    def duplicates(self) -> list[dict[str, Any]]:
        """The record of every duplicate effect (a second creation of an effect)."""
        return [_read_record(Path(e)) for e in _entries(self.root / "duplicates")]

    def feed_starts(self) -> list[dict[str, Any]]:
        """One record per start of ``probe_feed`` (``{"pid", "t"}``), oldest first."""
        starts = [_read_record(Path(e)) for e in _entries(self.root / "feed-started")]
        return sorted(starts, key=lambda r: r.get("t", 0.0))

    def wait_feed_started(self, pid: int, timeout_s: float) -> dict[str, Any]:
        """Wait until the head with ``pid`` has started its feed (it is ready)."""
        def started() -> dict[str, Any] | None:
            return next((s for s in self.feed_starts() if s.get("pid") == pid), None)

        return wait_until(started, timeout_s=timeout_s, what=f"the feed of head pid {pid}")


def _subdirs(folder: Path) -> Iterator[str]:
    return (e.path for e in _scan(folder) if e.is_dir())


def _entries(folder: Path) -> Iterator[str]:
    return (e.path for e in _scan(folder) if e.is_file())


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except FileNotFoundError:
        return []


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        data = {}
    data.setdefault("t", _mtime(path))
    data["file"] = str(path)
    return data


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _marker(kind: str, job: str, path: Path) -> Marker:
    attempt, pid, _nonce = path.name.split("-", 2)
    record = _read_record(path)
    return Marker(kind, job, int(attempt), int(pid), float(record["t"]), record)


# The store, read-only


class StoreView:
    """Read-only views of a state folder: the reader API and plain SQL side by side."""

    def __init__(self, state_dir: Path) -> None:
        self.db = state_dir / "state.db"

    def reader(self) -> StoreReader:
        return StoreReader(self.db.absolute())

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query by a plain sqlite3 connection."""
        conn = sqlite3.connect(self.db.absolute().as_uri() + "?mode=ro", uri=True, timeout=5.0)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def pebbles(self) -> list[dict[str, Any]]:
        """Every pebble (without node states), by id."""
        with self.reader() as reader:
            return list(_paged(lambda after: reader.pebbles(limit=1000, after_id=after),
                               "id", 0))

    def jobs(self) -> list[dict[str, Any]]:
        """Every job row (one per attempt), by id."""
        with self.reader() as reader:
            return list(_paged(lambda after: reader.jobs(limit=1000, after=after), "id", ""))

    def succeeded_jobs(self) -> dict[str, dict[str, Any]]:
        """``job key → row`` of every job attempt that finished with success."""
        found = {}
        for job in self.jobs():
            if job["state"] == "done" and job["outcome"] == "success":
                found[job["id"].rpartition("#")[0]] = job
        return found

    def is_quiet(self) -> bool:
        """No pebble is active and no job is queued or running."""
        rows = self.sql("SELECT (SELECT count(*) FROM pebbles WHERE state = 'active'),"
                        " (SELECT count(*) FROM jobs WHERE state IN ('queued', 'running'))")
        return rows[0] == (0, 0)

    def wait_quiet(self, timeout_s: float, *, pebbles: int | None = None,
                   grace_s: float = 2.0) -> None:
        """Wait until every pebble (at least ``pebbles`` of them) is finished, then up to
        ``grace_s`` more for job rows to settle; C6 reports any row left running."""
        def finished() -> bool:
            if not self.db.exists():
                return False
            total, active = self.sql("SELECT count(*), count(*) FILTER"
                                     " (WHERE state = 'active') FROM pebbles")[0]
            return total >= (pebbles or 0) and active == 0

        wait_until(finished, timeout_s=timeout_s, what=f"every pebble in {self.db} to finish",
                   interval_s=0.1)
        deadline = time.monotonic() + grace_s
        while not self.is_quiet() and time.monotonic() < deadline:
            time.sleep(0.05)


def _paged(fetch: Any, key: str, start: Any) -> Iterator[dict[str, Any]]:
    after = start
    while rows := fetch(after):
        yield from rows
        after = rows[-1][key]


# C1–C10


def c1_no_loss(ledger: Ledger, store: StoreView) -> Check:
    """Every acknowledged pebble is terminal (completed or failed with a reason)."""
    check = Check("C1 no loss")
    pebbles = {p["id"]: p for p in store.pebbles()}
    acked = ledger.acked()
    for probe_id, pebble_id in sorted(acked.items()):
        pebble = pebbles.get(pebble_id)
        if pebble is None:
            check.fail(f"acknowledged {probe_id} (pebble {pebble_id}) is not in the store")
        elif pebble["outcome"] not in TERMINAL:
            check.fail(f"acknowledged pebble {pebble_id} is {pebble['state']}, not terminal")
        elif pebble["outcome"] == "failed" and not pebble["failed_nodes"]:
            check.fail(f"pebble {pebble_id} failed without naming a failed node")
        elif pebble["item"].get("probe_id") != probe_id:
            check.fail(f"{probe_id} was acknowledged as pebble {pebble_id}, which holds "
                       f"{pebble['item'].get('probe_id')}")
    for probe_id, ids in _conflicting_acks(ledger).items():
        check.fail(f"{probe_id} was acknowledged with different pebble ids {sorted(ids)}")
    check.figures = {"acknowledged": len(acked), "pebbles": len(pebbles)}
    return check


def _conflicting_acks(ledger: Ledger) -> dict[str, set[int]]:
    ids: dict[str, set[int]] = defaultdict(set)
    for probe_id, pebble_id in ledger.ack_lines():
        ids[probe_id].add(pebble_id)
    return {k: v for k, v in ids.items() if len(v) > 1}


def c2_no_phantom(ledger: Ledger, store: StoreView, *, internal: Iterable[int] = ()) -> Check:
    """Every stored pebble was acknowledged (or is system-internal); one per item."""
    check = Check("C2 no phantom")
    acked_ids = set(ledger.acked().values()) | set(internal)
    offered = ledger.offered()
    per_item: Counter[str] = Counter()
    for pebble in store.pebbles():
        probe_id = pebble["item"].get("probe_id")
        per_item[probe_id] += 1
        if pebble["id"] not in acked_ids:
            check.fail(f"pebble {pebble['id']} ({probe_id}) was never acknowledged")
        if probe_id not in offered:
            check.fail(f"pebble {pebble['id']} holds {probe_id!r}, which nobody offered")
    for probe_id, count in sorted(per_item.items()):
        if count > 1:
            check.fail(f"{probe_id} became {count} pebbles")
    return check


def c3_at_most_once_effect(ledger: Ledger, store: StoreView, node: str, *,
                           allow_uncommitted_retries: bool = False) -> Check:
    """Each succeeded pebble has its ``node`` effect once; duplicates are counted.

    Strict (the default), any duplicate effect fails. With
    ``allow_uncommitted_retries`` a duplicate passes only when the result of the run that
    made the first effect was never committed (the head died before its commit, so the
    job was retried, at-least-once); a duplicate after the effect's job was committed
    as succeeded always fails.
    """
    check = Check(f"C3 at-most-once effect ({node})")
    effects = ledger.effects()
    succeeded = store.succeeded_jobs()
    for pebble in store.pebbles():
        if pebble["outcome"] == "completed" and (pebble["id"], node) not in effects:
            check.fail(f"completed pebble {pebble['id']} has no {node} effect")
    duplicates = [d for d in ledger.duplicates() if d.get("node") == node]
    after_commit = 0
    for dup in duplicates:
        key = str(dup.get("job_id", "")).rpartition("#")[0]
        job = succeeded.get(key)
        late = job is not None and float(dup["t"]) > float(job["finished"])
        if late or not allow_uncommitted_retries:
            after_commit += late
            check.fail(f"duplicate effect of {key} by pid {dup.get('pid')} "
                       f"({'after its job was committed' if late else 'strict'})")
    check.figures = {"effects": len([k for k in effects if k[1] == node]),
                     "duplicates": len(duplicates), "after_commit": after_commit}
    return check


def c4_at_least_once_work(ledger: Ledger, store: StoreView, node: str,
                          golden: Mapping[str, str], key: str = "sha256") -> Check:
    """Each succeeded job of ``node`` has a ``done`` marker and the golden output."""
    check = Check(f"C4 at-least-once work ({node})")
    done = {m.job for m in ledger.markers("done")}
    with store.reader() as reader:
        for pebble in store.pebbles():
            if pebble["outcome"] != "completed":
                continue
            full = reader.pebble(pebble["id"]) or {}
            state = full.get("nodes", {}).get(node, {}).get("", {})
            if f"{pebble['id']}/{node}" not in done:
                check.fail(f"pebble {pebble['id']}: {node} succeeded without a done marker")
            expected = golden.get(pebble["item"].get("probe_id"))
            got = (state.get("output") or {}).get(key)
            if got != expected:
                check.fail(f"pebble {pebble['id']}: {node} {key} {got!r} != golden {expected!r}")
    return check


def c5_no_rerun_of_finished_work(ledger: Ledger, store: StoreView) -> Check:
    """No job starts again after one of its attempts was committed as succeeded.

    A job's work is finished once the store holds a succeeded attempt of it; an
    ``exec`` marker of that job (any attempt) that starts after the commit is a re-run.
    Runs whose result was lost in a crash before the commit are retried by design
    (at-least-once) and are counted, not failed.
    """
    check = Check("C5 no re-run of finished work")
    succeeded = store.succeeded_jobs()
    runs: Counter[str] = Counter()
    for marker in ledger.markers("exec"):
        runs[marker.job] += 1
        job = succeeded.get(marker.job)
        if job is not None and marker.t > float(job["finished"]):
            check.fail(f"{marker.job} attempt {marker.attempt} (pid {marker.pid}) started "
                       f"{marker.t - float(job['finished']):.3f}s after {job['id']} was committed")
    check.figures = {"jobs_committed": len(succeeded),
                     "jobs_run_more_than_once": sum(1 for n in runs.values() if n > 1)}
    return check


def executions_recorded(ledger: Ledger, store: StoreView) -> Check:
    """Every execution is a recorded attempt of its own: executions == attempts that ran.

    Each ``exec`` marker names its job id with the attempt (``12/Hash#2``); that id
    must be a job row, and no two executions may share one (a re-execution after a
    head kill is a new attempt). Recorded attempts that no execution matches are
    dispatches cut short before the job started: they must be closed ``lost`` or
    ``cancel``, never ``success``.
    """
    check = Check("every execution is a recorded attempt")
    rows = {job["id"]: job for job in store.jobs()}
    runs = Counter(f"{m.job}#{m.attempt}" for m in ledger.markers("exec"))
    for job_id, count in runs.items():
        if count > 1:
            check.fail(f"{job_id} ran {count} times as one recorded attempt")
        if job_id not in rows:
            check.fail(f"{job_id} ran but the store has no such attempt")
    unrun = [job for job_id, job in rows.items() if job_id not in runs]
    for job in unrun:
        if job["outcome"] not in ("lost", "cancel"):
            check.fail(f"{job['id']} is recorded {job['outcome']} but never ran")
    executions = sum(runs.values())
    ran = len(runs.keys() & rows.keys())
    if executions != ran:
        check.fail(f"{executions} executions but {ran} recorded attempts that ran")
    check.figures = {"executions": executions, "recorded_attempts": len(rows),
                     "attempts_ran": ran, "dispatched_not_started": len(unrun)}
    return check


def c6_no_stuck_jobs(store: StoreView) -> Check:
    """Once quiet, no job is running, and none is queued for a finished pebble."""
    check = Check("C6 no stuck jobs")
    running = store.sql("SELECT id FROM jobs WHERE state = 'running' ORDER BY id")
    stranded = store.sql("SELECT j.id FROM jobs j JOIN pebbles p ON p.id = j.pebble_id"
                         " WHERE j.state = 'queued' AND p.state = 'done' ORDER BY j.id")
    for (job_id,) in running[:20]:
        check.fail(f"job {job_id} is still 'running'")
    for (job_id,) in stranded[:20]:
        check.fail(f"job {job_id} is queued for a finished pebble")
    check.figures = {"running": len(running), "stranded": len(stranded)}
    return check


def c7_no_partial_files(*roots: Path, tmp_dirs: Iterable[Path] = ()) -> Check:
    """No ``*.part``, ``*.tmp`` or ``tmp*`` file outside the designated tmp folders."""
    check = Check("C7 no partial files")
    allowed = [p.resolve() for p in tmp_dirs]
    for root in roots:
        for folder, _dirs, files in os.walk(root):
            here = Path(folder).resolve()
            if any(here == a or a in here.parents for a in allowed):
                continue
            for name in files:
                if name.startswith("tmp") or name.endswith(PARTIAL_SUFFIXES):
                    check.fail(f"partial file {here / name}")
    return check


def c8_store_integrity(store: StoreView) -> Check:
    """``PRAGMA integrity_check`` is ok and ``foreign_key_check`` is empty."""
    check = Check("C8 store integrity")
    with store.reader() as reader:
        result, foreign = reader.integrity_check()
    if result != "ok":
        check.fail(f"integrity_check: {result}")
    if foreign:
        check.fail(f"foreign_key_check: {foreign[:5]}")
    return check


def c9_views_agree(ledger: Ledger, store: StoreView) -> Check:
    """Reader counts == plain SQL counts == ledger counts."""
    check = Check("C9 views agree")
    with store.reader() as reader:
        api = reader.pebble_counts()
        totals = reader.totals()
        nodes = reader.node_counts()
    sql: Counter[str] = Counter()
    for state, outcome, n in store.sql("SELECT state, outcome, count(*) FROM pebbles"
                                       " GROUP BY 1, 2"):
        sql["active" if state == "active" else outcome] += n
    acked = len(set(ledger.acked().values()))
    if {k: v for k, v in api.items() if v} != {k: v for k, v in sql.items() if v}:
        check.fail(f"reader pebble counts {api} != SQL {dict(sql)}")
    if not totals["pebbles"] == sum(sql.values()) == acked:
        check.fail(f"pebbles: reader {totals['pebbles']}, SQL {sum(sql.values())}, "
                   f"ledger {acked}")
    node_rows = dict(store.sql("SELECT node, count(*) FROM nodes GROUP BY node"))
    by_reader = {node: sum(labels.values()) for node, labels in nodes.items()}
    if by_reader != node_rows:
        check.fail(f"node counts: reader {by_reader} != SQL {node_rows}")
    check.figures = {"pebbles": acked, **{k: v for k, v in api.items() if v}}
    return check


def c10_resources(tag: str, *, head_pid: int | None = None, max_rss_mb: float = 300.0,
                  max_fds: int = 256) -> Check:
    """No orphan process of this test; the head's fds and RSS within bounds.

    Without ``head_pid`` (the head has exited) no process of the test may run at all.
    With it, only the head and its direct children (the workers) may, and no process
    may carry a job id unless a worker started it.
    """
    check = Check("C10 resources")
    alive = tagged_pids(tag)
    allowed: set[int] = set()
    if head_pid is not None and psutil.pid_exists(head_pid):
        head = psutil.Process(head_pid)
        allowed = {head_pid, *(c.pid for c in head.children())}
        rss_mb = head.memory_info().rss / 2**20
        fds = head.num_fds()
        check.figures = {"head_rss_mb": round(rss_mb, 1), "head_fds": fds}
        if rss_mb > max_rss_mb:
            check.fail(f"head RSS {rss_mb:.0f} MB > {max_rss_mb:g} MB")
        if fds > max_fds:
            check.fail(f"head holds {fds} file descriptors > {max_fds}")
    orphans = {pid: env for pid, env in alive.items() if pid not in allowed}
    if orphans:
        check.fail("orphan processes:\n" + describe(orphans))
    jobs = {pid: env for pid, env in alive.items() if JOB_ENV in env and pid in allowed}
    if jobs:
        check.fail("a worker itself carries a job id:\n" + describe(jobs))
    return check


def invariant_nodes_recorded(store: StoreView, nodes: int) -> Check:
    """A finished pebble has an outcome for each of its ``nodes``.

    A crash between a job's completion and its children (impossible by design: one
    transaction) would leave a finished pebble with nodes that never got an outcome.
    """
    check = Check("invariant: every node recorded")
    for pebble_id, recorded in store.sql(
            "SELECT p.id, count(n.node) FROM pebbles p LEFT JOIN nodes n"
            " ON n.pebble_id = p.id AND n.status = 'done'"
            " WHERE p.state = 'done' GROUP BY p.id"):
        if recorded < nodes:
            check.fail(f"pebble {pebble_id} finished with {recorded} of {nodes} nodes done")
    return check


def quiet_checks(ledger: Ledger, store: StoreView, tag: str, *, roots: Iterable[Path] = (),
                 head_pid: int | None = None) -> list[Check]:
    """C1, C2, C5, C6, C7, C8, C9 and C10: the checks every fault test ends with."""
    return [
        c1_no_loss(ledger, store),
        c2_no_phantom(ledger, store),
        c5_no_rerun_of_finished_work(ledger, store),
        c6_no_stuck_jobs(store),
        c7_no_partial_files(*roots),
        c8_store_integrity(store),
        c9_views_agree(ledger, store),
        c10_resources(tag, head_pid=head_pid),
    ]
