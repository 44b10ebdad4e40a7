"""The event log kept compactly: one ``journal`` row per commit, read back event by event.

Contract:

- An event is ``(ts, kind, pebble_id, job_id, data)``; :meth:`Queries.events
  <cryoflow.store.reader.Queries.events>` gives them as ``{seq, ts, kind, pebble_id,
  job_id, data}`` in order, each with its own ``seq``, as if each were a row.
- :func:`pack` turns the events of one commit (they share its ``ts``) into one row:
  ``seq`` is the seq of its first event, ``n`` how many it holds, ``data`` a JSON array
  with one short array per event. The kinds the store itself writes for every job
  and node change have a one-letter code and carry only what the job and node rows do
  not (the node's status, a job's outcome), so the log costs a few bytes per change;
  any other kind is kept whole.
- :func:`unpack` is the inverse of :func:`pack`; old single events migrated from the
  former ``events`` table use the whole form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from cryoflow.store import codec

Entry = list[Any]
"""One event as the batch collects it, in the stored layout of its kind:

- ``["a", pebble_id]`` pebble_added; ``["d", pebble_id, outcome]`` pebble_done;
- ``["n", pebble_id, node, status or outcome, branch?]`` node_changed (a ``done``
  node is stored as its outcome: statuses and outcomes never share a name);
- ``["q", job_id]`` job_queued, ``["c", job_id]`` job_cancelled, ``["l", job_id]``
  job_lost (their pebble is the job id's prefix); ``["s", job_id, worker, host]``
  job_started; ``["f", job_id, outcome]`` job_finished, and ``["f", job_id, outcome,
  worker, host]`` the job's job_started followed by its job_finished;
- ``["Q", job_id]``: the node change to ``queued`` and the job_queued of that node's
  job, in that order; ``["F", job_id, outcome]``: job_finished and the node change to
  ``done`` with that outcome it caused (two events each; three when ``F`` carries
  the worker and host of the job's start, as ``f`` does);
- ``[kind, pebble_id, job_id, data]`` any other kind.
"""

_KINDS = {"a": "pebble_added", "d": "pebble_done", "n": "node_changed", "q": "job_queued",
          "c": "job_cancelled", "l": "job_lost", "s": "job_started", "f": "job_finished"}
_STATUSES = frozenset({"waiting", "queued", "deferred", "split", "done"})


def node_entry(pebble_id: int, node: str, branch: str, status: str,
               outcome: str | None) -> Entry:
    """The entry of a node change (``branch`` as its key, ``""`` for the pebble's own)."""
    shown = outcome if status == "done" and outcome is not None else status
    return ["n", pebble_id, node, shown, branch] if branch else ["n", pebble_id, node, shown]


def other_entry(kind: str, pebble_id: int | None, job_id: str | None, data: Any) -> Entry:
    """The entry of an event of any kind the store does not write itself."""
    if kind in _KINDS:
        kind = "_" + kind  # a one-letter kind of a caller's own; read back as it was
    return [kind, pebble_id, job_id, data]


LAST_SEQ = "SELECT seq + n - 1 FROM journal ORDER BY seq DESC LIMIT 1"
INSERT = "INSERT INTO journal(seq, ts, n, data) VALUES (?, ?, ?, ?)"
READ = (
    "SELECT seq, ts, data FROM journal WHERE seq >= coalesce("
    "(SELECT max(seq) FROM journal WHERE seq <= ?), 0) ORDER BY seq LIMIT ?"
)


def pack(times: Sequence[float], entries: Sequence[Entry]) -> list[tuple[float, int, str]]:
    """``(ts, n, data)`` rows: one per run of entries with the same time (n events)."""
    rows: list[tuple[float, int, str]] = []
    start = 0
    for index in range(1, len(entries) + 1):
        if index == len(entries) or times[index] != times[start]:
            run = [entry for entry in entries[start:index] if entry[0] is not None]
            if run:
                rows.append((times[start], sum(map(_events_in, run)), codec.dumps(run)))
            start = index
    return rows


def _events_in(entry: Entry) -> int:
    head = entry[0]
    if head in ("f", "F"):
        return (head == "F") + (2 if len(entry) > 3 else 1)
    return 2 if head == "Q" else 1


def unpack(seq: int, ts: float, data: str) -> Iterator[dict[str, Any]]:
    """The events of one journal row, numbered from ``seq``."""
    offset = 0
    for entry in json.loads(data):
        for event in _expand(entry):
            event.update(seq=seq + offset, ts=ts)
            offset += 1
            yield event


def _expand(entry: list[Any]) -> list[dict[str, Any]]:
    """The one or two events of an entry."""
    head = entry[0]
    started = [_decode(["s", entry[1], *entry[3:5]])] if head in "fF" and len(entry) > 3 else []
    if head not in ("Q", "F"):
        return [*started, _decode(entry[:3] if started else entry)]
    job_id = entry[1]
    where = job_id.rpartition("#")[0].split("/")
    node = ["n", int(where[0]), where[1], "queued" if head == "Q" else entry[2], *where[2:3]]
    if head == "Q":
        return [_decode(node), _decode(["q", job_id])]
    return [*started, _decode(["f", job_id, entry[2]]), _decode(node)]


def _decode(entry: list[Any]) -> dict[str, Any]:
    head = entry[0]
    kind = _KINDS.get(head)
    if kind is None:
        kind = head[1:] if head[:1] == "_" and head[1:] in _KINDS else head
        pebble_id, job_id, value = entry[1:4]
        return {"kind": kind, "pebble_id": pebble_id, "job_id": job_id, "data": value}
    if head in "ad" or head == "n":
        pebble_id, job_id = entry[1], None
    else:
        job_id = entry[1]
        pebble_id = int(job_id.split("/", 1)[0]) if head in "ql" else None
    data: dict[str, Any] | None = None
    if head == "n":
        data = {"node": entry[2], "status": entry[3]}
        if entry[3] not in _STATUSES:
            data.update(status="done", outcome=entry[3])
        if len(entry) > 4:
            data["branch"] = entry[4]
    elif head == "s":
        data = {"worker": entry[2], "host": entry[3]}
    elif head in "fd":
        data = {"outcome": entry[2]}
    return {"kind": kind, "pebble_id": pebble_id, "job_id": job_id, "data": data}


def read(rows: Sequence[tuple[int, float, str]], after_seq: int,
         limit: int) -> list[dict[str, Any]]:
    """Events after ``after_seq`` from the journal rows that may hold them, at most ``limit``."""
    found: list[dict[str, Any]] = []
    for seq, ts, data in rows:
        for event in unpack(seq, ts, data):
            if event["seq"] > after_seq:
                found.append(event)
                if len(found) >= limit:
                    return found
    return found
