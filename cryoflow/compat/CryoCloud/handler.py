"""``CryoCloud.DefaultHandler``: the callbacks a CryoCloud handler could override."""

from __future__ import annotations

from typing import Any


class DefaultHandler:
    """Every callback does nothing; ``addMeta``/``getMeta`` keep values by key."""

    def __init__(self) -> None:
        self._meta: dict[str, Any] = {}

    def addMeta(self, metadata: dict[str, Any]) -> None:  # noqa: N802 - CryoCloud's names
        self._meta.update(metadata)

    def getMeta(self, key: str) -> Any:  # noqa: N802
        return self._meta.get(key)

    def cleanMeta(self, key: str) -> None:  # noqa: N802
        self._meta.pop(key, None)

    def onReady(self, *args: Any) -> None:  # noqa: N802
        """Called when the head is ready."""

    def onAllocated(self, task: Any) -> None:  # noqa: N802
        """Called when a job was given to a worker."""

    def onCompleted(self, task: Any) -> None:  # noqa: N802
        """Called when a job completed."""

    def onTimeout(self, task: Any) -> None:  # noqa: N802
        """Called when a job timed out."""

    def onError(self, task: Any) -> None:  # noqa: N802
        """Called when a job failed."""

    def onCancelled(self, task: Any) -> None:  # noqa: N802
        """Called when a job was cancelled."""

    def onStepCompleted(self, step: Any) -> None:  # noqa: N802
        """Called when a step completed."""

    def onCleanup(self) -> None:  # noqa: N802
        """Called before the head stops."""

    def onStopped(self) -> None:  # noqa: N802
        """Called after the head stopped."""
