"""``CryoCloud.Common``: ``DirectoryWatcher``, ``NetWatcher`` and the modules below."""

from .directorywatcher import DirectoryWatcher
from .netwatcher import NetWatcher

__all__ = ["DirectoryWatcher", "NetWatcher"]
