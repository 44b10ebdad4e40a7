"""``/metrics``: Prometheus text format (version 0.0.4), written by hand.

Counters and the duration histograms are fed by the event feed (job queued, started,
finished, cancelled, lost) and count from the start of this head. Gauges are read
when scraped: pebbles and jobs by state and per node counts from the store, slots
from the executor, queue depth and oldest waiting job from the jobs this collector
saw queued (seeded from the store at start).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryoflow.api.feed import Message
from cryoflow.api.views import parse_job_id
from cryoflow.graph.instances import base_name
from cryoflow.graph.model import Graph, WorkerClass
from cryoflow.store.reader import Queries

if TYPE_CHECKING:
    from cryoflow.head import Head

BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Histogram:
    """Cumulative-bucket histogram of durations in seconds."""

    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))
    total: int = 0
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum_s += seconds
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                self.counts[i] += 1


@dataclass
class _OpenJob:
    node: str
    worker_class: str
    queued: float
    started: float | None = None


class MetricsCollector:
    """Counts what the feed reports; renders everything when scraped."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.open: dict[str, _OpenJob] = {}
        self.finished: dict[tuple[str, str], int] = defaultdict(int)
        self.retries: dict[str, int] = defaultdict(int)
        self.lost: dict[str, int] = defaultdict(int)
        self.durations: dict[str, Histogram] = defaultdict(Histogram)

    def seed(self, store: Queries, page: int = 1000) -> None:
        """Learn the jobs that are queued or running now."""
        for state in ("queued", "running"):
            after: str | None = None
            while rows := store.jobs(state=state, limit=page, after=after):
                for row in rows:
                    self.open[row["id"]] = _OpenJob(row["node"], row["worker_class"],
                                                    row["created"], row["started"])
                after = rows[-1]["id"]

    def __call__(self, messages: list[Message]) -> None:
        for message in messages:
            if message["type"] == "event" and message["job_id"]:
                self._job_event(message["kind"], message["job_id"], message["ts"],
                                message.get("data"))

    def _job_event(self, kind: str, job_id: str, ts: float, data: object) -> None:
        parsed = parse_job_id(job_id)
        if parsed is None:
            return
        _, node, _, attempt = parsed
        base = base_name(node)
        if kind == "job_queued":
            self._queued(job_id, base, attempt, ts)
        elif kind == "job_started" and job_id in self.open:
            self.open[job_id].started = ts
        elif kind in ("job_finished", "job_cancelled", "job_lost"):
            self._closed(kind, job_id, base, ts)
        if kind == "job_finished":
            outcome = data.get("outcome") if isinstance(data, dict) else None
            self.finished[(base, str(outcome or "unknown"))] += 1

    def _queued(self, job_id: str, node: str, attempt: int, ts: float) -> None:
        spec = self.graph.nodes.get(node)
        worker_class = spec.needs.value if spec is not None else "normal"
        self.open[job_id] = _OpenJob(node, worker_class, ts)
        if attempt > 1:
            self.retries[node] += 1

    def _closed(self, kind: str, job_id: str, node: str, ts: float) -> None:
        job = self.open.pop(job_id, None)
        if kind == "job_lost":
            self.lost[node] += 1
        elif kind == "job_finished" and job is not None and job.started is not None:
            self.durations[node].observe(max(0.0, ts - job.started))

    # ------------------------------------------------------------------ rendering

    def render(self, head: Head, now: float) -> str:
        """The whole exposition text."""
        lines: list[str] = []
        for name, kind, help_text, samples in self._families(head, now):
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{suffix}{_labels(labels)} {_number(value)}"
                         for suffix, labels, value in samples)
        return "\n".join(lines) + "\n"

    def _families(self, head: Head, now: float) -> Iterator[tuple[str, str, str, list[Sample]]]:
        store = head.store
        totals = store.totals()
        yield ("cryoflow_pebbles", "gauge", "Pebbles in the store by state.",
               [("", {"state": s}, n) for s, n in sorted(store.pebble_counts().items())])
        yield ("cryoflow_jobs", "gauge", "Open jobs by state.",
               [("", {"state": "queued"}, totals["queued_jobs"]),
                ("", {"state": "running"}, totals["running_jobs"])])
        yield ("cryoflow_node_branches", "gauge", "Pebble branches per node and state.",
               [("", {"node": node, "state": state}, n)
                for node, row in sorted(store.node_counts().items())
                for state, n in sorted(row.items())])
        yield ("cryoflow_jobs_finished_total", "counter", "Jobs finished since the head started.",
               [("", {"node": node, "outcome": outcome}, n)
                for (node, outcome), n in sorted(self.finished.items())])
        yield ("cryoflow_job_retries_total", "counter", "Job attempts after the first.",
               [("", {"node": node}, n) for node, n in sorted(self.retries.items())])
        yield ("cryoflow_jobs_lost_total", "counter", "Jobs whose worker was lost.",
               [("", {"node": node}, n) for node, n in sorted(self.lost.items())])
        yield ("cryoflow_job_duration_seconds", "histogram", "Job run time, start to end.",
               list(self._histogram_samples()))
        yield from self._queue_families(now)
        yield from self._worker_families(head, now)

    def _histogram_samples(self) -> Iterator[Sample]:
        for node, hist in sorted(self.durations.items()):
            for bound, count in zip(BUCKETS_S, hist.counts):
                yield "_bucket", {"node": node, "le": _number(bound)}, count
            yield "_bucket", {"node": node, "le": "+Inf"}, hist.total
            yield "_sum", {"node": node}, hist.sum_s
            yield "_count", {"node": node}, hist.total

    def _queue_families(self, now: float) -> Iterator[tuple[str, str, str, list[Sample]]]:
        depth: dict[str, int] = {c.value: 0 for c in _classes(self.graph)}
        oldest: dict[str, float] = {}
        for job in self.open.values():
            if job.started is None:
                depth[job.worker_class] = depth.get(job.worker_class, 0) + 1
                oldest[job.worker_class] = min(oldest.get(job.worker_class, now), job.queued)
        yield ("cryoflow_queue_depth", "gauge", "Jobs waiting for a worker, per worker class.",
               [("", {"class": c}, n) for c, n in sorted(depth.items())])
        yield ("cryoflow_oldest_queued_job_age_seconds", "gauge",
               "Age of the oldest job waiting for a worker, per worker class.",
               [("", {"class": c}, now - oldest.get(c, now)) for c in sorted(depth)])

    def _worker_families(self, head: Head,
                         now: float) -> Iterator[tuple[str, str, str, list[Sample]]]:
        capacity = {str(c): n for c, n in head.executor.capacity().items()}
        free = {str(c): n for c, n in head.executor.free_slots().items()}
        busy = {c: max(0, n - free.get(c, 0)) for c, n in capacity.items()}
        oldest = head.store.pebbles(state="active", limit=1)
        yield ("cryoflow_oldest_active_pebble_age_seconds", "gauge",
               "Age of the oldest unfinished pebble (0 when none).",
               [("", {}, now - oldest[0]["created"] if oldest else 0.0)])
        yield ("cryoflow_workers", "gauge", "Worker slots per class.",
               [("", {"class": c}, n) for c, n in sorted(capacity.items())])
        yield ("cryoflow_workers_busy", "gauge", "Busy worker slots per class.",
               [("", {"class": c}, n) for c, n in sorted(busy.items())])
        yield ("cryoflow_worker_utilisation", "gauge", "Busy slots over all slots, per class.",
               [("", {"class": c}, busy[c] / n if n else 0.0) for c, n in sorted(capacity.items())])
        yield ("cryoflow_paused", "gauge", "1 while dispatching is paused.",
               [("", {}, 1 if head.paused else 0)])


Sample = tuple[str, Mapping[str, str], float]


def _classes(graph: Graph) -> set[WorkerClass]:
    return {n.needs for n in graph if not n.is_input}


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
