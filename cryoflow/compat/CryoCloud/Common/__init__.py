"""``CryoCloud.Common``: ``DirectoryWatcher``, ``NetWatcher`` and the modules below.

The two classes are imported when first used, so ``import CryoCloud`` works on a worker
that lacks what they need (a container image without jsonschema, say).
"""

from typing import Any

__all__ = ["DirectoryWatcher", "NetWatcher"]


def __getattr__(name: str) -> Any:
    if name == "DirectoryWatcher":
        from .directorywatcher import DirectoryWatcher

        return DirectoryWatcher
    if name == "NetWatcher":
        from .netwatcher import NetWatcher

        return NetWatcher
    raise AttributeError(f"module 'CryoCloud.Common' has no attribute {name!r}")
