"""What input modules written for CryoCloud expect of their ``handler``.

:func:`adapt` gives an input node's handler a ``log`` and wraps its ``head`` so that
``handler.head.makeDirectoryWatcher(src, onAdd, recursive=...)`` returns a started-on-
demand :class:`~CryoCloud.Common.directorywatcher.DirectoryWatcher` that ends with the
run. Everything else on ``handler.head`` is the head's :class:`~cryoflow.daemon.inputs.HeadLink`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any


class HeadView:
    """The head as CryoCloud input modules call it (delegates everything else)."""

    def __init__(self, head: Any, stop_event: threading.Event) -> None:
        self._head = head
        self._stop_event = stop_event

    def __getattr__(self, name: str) -> Any:
        return getattr(self._head, name)

    def makeDirectoryWatcher(  # noqa: N802 - CryoCloud's name
        self, target: str, onAdd: Callable[[dict[str, Any]], Any],  # noqa: N803
        recursive: bool = False, stabilize: float = 1.0, **_ignored: Any,
    ) -> Any:
        from cryoflow.compat.CryoCloud.Common.directorywatcher import DirectoryWatcher

        return DirectoryWatcher("input", target, onAdd, recursive=recursive,
                                stabilize=stabilize, stop_event=self._stop_event)


def adapt(handler: Any, stop_event: threading.Event) -> None:
    """Give ``handler`` what CryoCloud input modules use (``log``, ``head`` helpers)."""
    handler.log = logging.getLogger(f"cryoflow.input.{handler.node.name}")
    handler.head = HeadView(handler.head, stop_event)
