"""Retention: finished pebbles beyond a count or older than an age leave the store.

Contract:

- :class:`Retention` says how many finished pebbles to keep (``keep_pebbles``) and
  for how long (``max_age_s``); None means no limit of that kind, and with both None
  nothing is ever pruned (the default).
- :func:`prune` runs inside a store transaction. It removes up to ``limit`` finished
  pebbles, oldest first, that are beyond the newest ``keep_pebbles`` finished ones or
  finished more than ``max_age_s`` ago: their pebble, node, job and log rows, and the
  event log up to the newest of them. Active pebbles are never touched.
- What the API shows of them is kept as counts: ``meta`` holds ``pruned_completed`` and
  ``pruned_failed`` (:func:`pruned_counts`), which the pebble counts include. A
  watcher's record of a file it turned into a pebble stays (so the file is not taken
  again); it no longer names the pebble. An idempotency key leaves with its pebble.
- SQLite puts the freed pages on its free list and reuses them for new rows, so a
  store under retention stops growing once it holds what it keeps.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from cryoflow.errors import ConfigError

BOUNDARY = "SELECT id FROM pebbles WHERE state = 'done' ORDER BY id DESC LIMIT 1 OFFSET ?"
VICTIMS = (
    "SELECT id, outcome, finished, seen_key FROM pebbles WHERE state = 'done'"
    " AND (id <= ? OR finished < ?) ORDER BY id LIMIT ?"
)
DELETE_NODES = "DELETE FROM nodes WHERE pebble_id = ?"
DELETE_JOBS = "DELETE FROM jobs WHERE id >= ? AND id < ?"
DELETE_LOGS = "DELETE FROM logs WHERE pebble_id = ?"
FORGET_SEEN = "UPDATE seen SET pebble_id = NULL WHERE key = ?"
DELETE_PEBBLE = "DELETE FROM pebbles WHERE id = ?"
FIRST_KEPT_EVENT = "SELECT seq FROM journal WHERE ts >= ? ORDER BY seq LIMIT 1"
DELETE_EVENTS = "DELETE FROM journal WHERE seq < ?"
ADD_COUNT = (
    "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key)"
    " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + excluded.value AS TEXT)"
)
PRUNED = "SELECT key, value FROM meta WHERE key IN ('pruned_completed', 'pruned_failed')"


@dataclass(frozen=True)
class Retention:
    """How many finished pebbles the store keeps, and for how long."""

    keep_pebbles: int | None = None
    max_age_s: float | None = None
    interval_s: float = 10.0
    """How often the head prunes (it also prunes after every ``batch`` finished pebbles)."""
    batch: int = 2000
    """At most this many pebbles go per transaction."""

    @property
    def active(self) -> bool:
        return self.keep_pebbles is not None or self.max_age_s is not None

    @classmethod
    def from_config(cls, config: Any) -> Retention:
        """From a workflow config's ``retention`` mapping: ``keep_pebbles``, ``max_age_days``.

        Raises :class:`ConfigError` with a sentence naming the bad key.
        """
        if not config:
            return cls()
        if not isinstance(config, dict):
            raise ConfigError("retention must be a mapping with keep_pebbles and/or max_age_days")
        unknown = set(config) - {"keep_pebbles", "max_age_days"}
        if unknown:
            raise ConfigError(f"retention: unknown key(s) {', '.join(sorted(unknown))}; "
                             "use keep_pebbles and/or max_age_days")
        keep, days = config.get("keep_pebbles"), config.get("max_age_days")
        if keep is not None and (type(keep) is not int or keep < 0):
            raise ConfigError(f"retention.keep_pebbles must be a whole number >= 0, not {keep!r}")
        if days is not None and (type(days) not in (int, float) or not days > 0):
            raise ConfigError(f"retention.max_age_days must be a number > 0, not {days!r}")
        return cls(keep_pebbles=keep, max_age_s=None if days is None else days * 86400.0)


def prune(conn: sqlite3.Connection, retention: Retention, *, now: float,
          limit: int | None = None) -> int:
    """Remove what ``retention`` lets go (at most ``limit`` pebbles); return how many."""
    if not retention.active:
        return 0
    boundary = 0
    if retention.keep_pebbles is not None:
        row = conn.execute(BOUNDARY, (retention.keep_pebbles,)).fetchone()
        boundary = 0 if row is None else int(row[0])
    cutoff = -1.0 if retention.max_age_s is None else now - retention.max_age_s
    victims = conn.execute(VICTIMS, (boundary, cutoff, limit or retention.batch)).fetchall()
    if not victims:
        return 0
    ids = [(pid,) for pid, _, _, _ in victims]
    conn.executemany(DELETE_NODES, ids)
    conn.executemany(DELETE_JOBS, [(f"{pid}/", f"{pid}0") for pid, _, _, _ in victims])
    conn.executemany(DELETE_LOGS, ids)
    conn.executemany(FORGET_SEEN, [(key,) for _, _, _, key in victims if key is not None])
    conn.executemany(DELETE_PEBBLE, ids)
    for outcome in ("completed", "failed"):
        count = sum(1 for _, o, _, _ in victims if o == outcome)
        if count:
            conn.execute(ADD_COUNT, (f"pruned_{outcome}", str(count)))
    newest = max(finished or 0.0 for _, _, finished, _ in victims)
    first_kept = conn.execute(FIRST_KEPT_EVENT, (newest,)).fetchone()
    if first_kept is not None:
        conn.execute(DELETE_EVENTS, (first_kept[0],))
    return len(victims)


def pruned_counts(rows: list[Any]) -> dict[str, int]:
    """``{"completed", "failed"}`` counts of pruned pebbles from :data:`PRUNED` rows."""
    counts = {"completed": 0, "failed": 0}
    for key, value in rows:
        counts[key.removeprefix("pruned_")] = int(value)
    return counts
