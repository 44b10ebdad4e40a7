"""CryoCloud's line protocol, spoken by a job in a container on its stdout.

One line per message, UTF-8, ``\\n``-terminated:

- ``[key] value``: a status value; ``value`` is JSON when it parses as JSON, else text
  (``[progress] 42``, ``[stage] "download"``, ``[note] plain words``).
- ``<LEVEL> message``: a log line (``<INFO> fetched 3 files``). A message with
  newlines is sent as one line per line of text, each with the level.
- ``{retval} json``: the job's return value (CryoCloud's result line).

cryoflow's container runner (:mod:`cryoflow.workers.container`) adds three records of the same
``{name} json`` form before ``{retval}``: ``{outcome} "error"``, ``{error} "message"``
and ``{stats} {...}``. An image with its own CryoCloud runner only sends ``{retval}``;
the executor then takes the outcome from the container's exit code. Any other line
(a module's ``print``) is a log line at ``INFO``.

:class:`ProtocolReader` is the head's side, shared by the Docker and Kubernetes
executors: it hands status and log lines on as they arrive and turns the records, the
exit code and the tail of stderr into one :class:`JobResult`
(:meth:`ProtocolReader.result`).

Imports only the standard library and cryoflow's model: the container runner uses it.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cryoflow.graph.model import Outcome
from cryoflow.workers.base import JobResult, Task

RECORDS = ("retval", "outcome", "error", "stats")
"""The ``{name} json`` records: ``retval`` from CryoCloud, the others from cryoflow."""

_STATUS = re.compile(r"^\[([^\[\]\s]+)\] ?(.*)$")
_LOG = re.compile(r"^<([A-Za-z]+)> ?(.*)$")
_UNSAFE_KEY = re.compile(r"[\s\[\]]+")
_RECORD = re.compile(r"^\{(" + "|".join(RECORDS) + r")\} ?(.*)$")


@dataclass(frozen=True)
class Status:
    """``[key] value``."""

    key: str
    value: Any


@dataclass(frozen=True)
class Log:
    """``<level> message``, or a line that follows no rule (level ``INFO``)."""

    level: str
    message: str


@dataclass(frozen=True)
class Record:
    """``{name} json``: ``retval``, ``outcome``, ``error`` or ``stats``."""

    name: str
    value: Any


Message = Status | Log | Record


def task_to_json(task: Task) -> str:
    """A task as JSON text for a container or a remote worker (never pickle).

    Fields equal to their defaults are left out, so the text stays small.
    """
    return dumps(task.to_dict())


def task_from_json(text: str) -> Task:
    """The inverse of :func:`task_to_json`."""
    return Task.from_json(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    for method in ("tolist", "item"):  # numpy arrays and scalars
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON on one line; values JSON cannot hold become text."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def format_status(key: str, value: Any) -> str:
    """``[key] value`` (whitespace and brackets in ``key`` become ``_``)."""
    name = _UNSAFE_KEY.sub("_", str(key)) or "_"
    return f"[{name}] {dumps(value)}\n"


def format_log(level: str, message: str) -> str:
    """``<LEVEL> message``, one line per line of ``message``."""
    tag = re.sub(r"[^A-Za-z]+", "", level).upper() or "INFO"
    lines = str(message).splitlines() or [""]
    return "".join(f"<{tag}> {line}\n" for line in lines)


def format_record(name: str, value: Any) -> str:
    """``{name} json`` for one of :data:`RECORDS`."""
    if name not in RECORDS:
        raise ValueError(f"unknown line protocol record {name!r}; use one of {RECORDS}")
    return f"{{{name}}} {dumps(value)}\n"


def parse_line(line: str) -> Message:
    """The message a line carries; never raises."""
    text = line.rstrip("\r\n")
    if match := _RECORD.match(text):
        return Record(match.group(1), _loads(match.group(2)))
    if match := _STATUS.match(text):
        return Status(match.group(1), _loads(match.group(2)))
    if match := _LOG.match(text):
        return Log(match.group(1).upper(), match.group(2))
    return Log("INFO", text)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class LineSplitter:
    """Turns chunks of bytes (as a stream delivers them) into whole text lines.

    A line longer than ``max_line_bytes`` is cut there, so a job that never writes a
    newline cannot grow the buffer without bound.
    """

    def __init__(self, max_line_bytes: int = 1 << 20) -> None:
        self._buffer = bytearray()
        self._max = max_line_bytes

    def feed(self, chunk: bytes) -> Iterator[str]:
        """The lines completed by ``chunk``."""
        self._buffer += chunk
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0 and len(self._buffer) >= self._max:
                cut = self._max - 1
            if cut < 0:
                return
            line = bytes(self._buffer[: cut + 1])
            del self._buffer[: cut + 1]
            yield line.decode("utf-8", errors="replace")

    def close(self) -> Iterator[str]:
        """The last line, if the stream did not end with a newline."""
        if self._buffer:
            line = bytes(self._buffer)
            self._buffer.clear()
            yield line.decode("utf-8", errors="replace")


class ProtocolReader:
    """Reads one job's protocol lines; reports status and log lines as they come.

    ``on_status(key, value)`` and ``on_log(level, message)`` are called from the
    thread that feeds the reader.
    """

    def __init__(
        self,
        on_status: Callable[[str, Any], None],
        on_log: Callable[[str, str], None],
        *,
        tail_lines: int = 20,
        tail_label: str = "stderr",
    ) -> None:
        self._on_status, self._on_log = on_status, on_log
        self.records: dict[str, Any] = {}
        self.tail: deque[str] = deque(maxlen=tail_lines)
        """The last stderr lines, and stdout lines that follow no rule of the protocol."""
        self._label = tail_label
        self._out, self._err = LineSplitter(), LineSplitter()

    def feed_stdout(self, chunk: bytes) -> None:
        for line in self._out.feed(chunk):
            self.read_line(line)

    def feed_stderr(self, chunk: bytes) -> None:
        """stderr lines are logged at ``WARNING``; the last ones are kept for errors."""
        for line in self._err.feed(chunk):
            self._stderr_line(line)

    def close(self) -> None:
        """The streams ended: read what is left without a final newline."""
        for line in self._out.close():
            self.read_line(line)
        for line in self._err.close():
            self._stderr_line(line)

    def read_line(self, line: str) -> None:
        message = parse_line(line)
        if isinstance(message, Record):
            self.records[message.name] = message.value
        elif isinstance(message, Status):
            self._on_status(message.key, message.value)
        elif message.message or line.strip():
            if not _LOG.match(line):
                self.tail.append(message.message)
            self._on_log(message.level, message.message)

    def _stderr_line(self, line: str) -> None:
        text = line.rstrip("\r\n")
        self.tail.append(text)
        self._on_log("WARNING", text)

    def result(self, exit_code: int | None, *, oom_killed: bool = False) -> JobResult:
        """The job's result from its records and exit code (see the module docstring)."""
        outcome, error = self._reported_outcome()
        if exit_code != 0 and outcome not in (Outcome.ERROR, Outcome.CANCEL, Outcome.TIMEOUT):
            outcome, error = Outcome.ERROR, describe_exit(exit_code, oom_killed=oom_killed)
        tail = [line for line in self.tail if line.strip()]
        if outcome is Outcome.ERROR and tail:
            error = f"{error}; {self._label}: " + " | ".join(tail)
        stats = self.records.get("stats")
        return JobResult(
            outcome=outcome,
            retval=self.records.get("retval"),
            error=error,
            stats=dict(stats) if isinstance(stats, dict) else {},
        )

    def _reported_outcome(self) -> tuple[Outcome, str | None]:
        error = self.records.get("error")
        error = None if error is None else str(error)
        try:
            return Outcome(self.records.get("outcome", Outcome.SUCCESS.value)), error
        except ValueError:
            return Outcome.ERROR, f"the job reported an unknown outcome {self.records['outcome']!r}"


def describe_exit(code: int | None, *, oom_killed: bool = False) -> str:
    """``container exited with code 137 (killed: out of memory)`` and the like."""
    if code is None:
        return "the container ended without an exit code"
    text = f"container exited with code {code}"
    if oom_killed:
        return f"{text} (killed: out of memory)"
    if code > 128:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            return text
        return f"{text} (killed by {name})"
    return text


def with_times(stats: Mapping[str, Any], started: float) -> dict[str, Any]:
    """``stats`` with ``started``, ``finished`` and ``runtime`` filled in where missing
    (a job killed before its runner could measure itself)."""
    now = time.time()
    filled = dict(stats)
    filled.setdefault("started", started)
    filled.setdefault("finished", now)
    filled.setdefault("runtime", now - started)
    return filled
