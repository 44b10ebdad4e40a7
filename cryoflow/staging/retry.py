"""Retrying transient staging failures: exponential backoff with full jitter.

Backends decide what is transient (they raise :class:`TransientStagingError`); this
module only decides how often and how long to wait. The helpers at the bottom are the
shared part of that decision: which OS errors and HTTP statuses are worth a retry.
"""

from __future__ import annotations

import errno
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryoflow.errors import StagingError, TransientStagingError

T = TypeVar("T")
Sleep = Callable[[float], None]

_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EAGAIN,
    }
)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How a transient failure is retried: ``attempts`` tries in all (1: no retry).

    The wait before try ``n`` (n ≥ 2) is uniform in ``[0, min(max_s, base_s * 2**(n-2))]``
    ("full jitter"), so workers that failed together do not come back together.
    """

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def delay_s(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        return rand() * min(self.max_s, self.base_s * 2 ** (retry - 1))


def call_with_retry(
    action: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Sleep = time.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Run ``action``; retry it on :class:`TransientStagingError` as ``policy`` allows.

    A permanent :class:`StagingError` propagates at once. When the attempts run out the
    last transient error propagates with "after N attempts" added to its message.
    """
    for attempt in range(1, max(1, policy.attempts) + 1):
        try:
            return action()
        except TransientStagingError as exc:
            if attempt >= policy.attempts:
                tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
                raise TransientStagingError(f"{exc} (after {tries})") from exc
            sleep(policy.delay_s(attempt, rand))
    raise AssertionError("unreachable")  # pragma: no cover


def is_transient_os_error(exc: BaseException) -> bool:
    """Refused/reset/aborted connections, timeouts and unreachable networks."""
    if isinstance(exc, socket.gaierror):
        return exc.errno in (socket.EAI_AGAIN,)
    if isinstance(exc, TimeoutError | ConnectionError | EOFError):
        return True
    return isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS


def is_transient_status(status: int) -> bool:
    """HTTP statuses worth a retry: 408, 429 and every 5xx except 501 and 505."""
    return status in (408, 429) or (500 <= status < 600 and status not in (501, 505))


def local_write_error(exc: OSError, what: str) -> StagingError:
    """A clear error for a failure writing the local staging file (disk full, ...)."""
    if exc.errno == errno.ENOSPC:
        return StagingError(f"no space left on the device while staging {what}: free space")
    if exc.errno == errno.EDQUOT:
        return StagingError(f"disk quota exceeded while staging {what}")
    return StagingError(f"cannot write the local copy of {what}: {exc}")
