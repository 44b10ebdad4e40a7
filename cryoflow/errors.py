"""The one error tree of cryoflow.

Every error a user can cause is a subclass of :class:`CryoflowError` whose message is a
sentence that says what to change. Errors from libraries (OS, botocore, paramiko, ...)
are caught inside the backend that calls them and re-raised ``from`` the original.
"""

from __future__ import annotations


class CryoflowError(Exception):
    """Base of every error cryoflow raises on purpose."""


class GraphError(CryoflowError):
    """A workflow description is malformed or inconsistent."""


class GraphValidationError(GraphError):
    """One or more problems found while checking a graph; ``problems`` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ExprError(GraphError):
    """A ``runIf`` or restriction expression does not parse or cannot be evaluated."""


class ModuleLoadError(GraphError):
    """A module cannot be found or does not follow the module API."""


class OptionError(CryoflowError):
    """A workflow option on the command line has a wrong value."""


class ArgumentError(CryoflowError):
    """A node argument cannot be resolved for a job."""


class StoreError(CryoflowError):
    """The state store cannot be opened, is locked, or is from another version."""


class StoreLockedError(StoreError):
    """Another head holds the state folder."""


class StoreFullError(StoreError):
    """The state store cannot grow (disk or page limit reached)."""


class StoreBrokenError(StoreError):
    """The state database is damaged or its disk fails: retrying cannot help."""


class WorkerError(CryoflowError):
    """A worker process failed outside of the job it was running."""


class StagingError(CryoflowError):
    """A file could not be fetched, unpacked or uploaded."""


class TransientStagingError(StagingError):
    """A staging failure that may succeed when tried again."""


class UnsafeArchiveError(StagingError):
    """An archive holds a member that would escape or abuse the target folder."""


class ConfigError(CryoflowError):
    """The cryoflow configuration is malformed."""


class InputError(CryoflowError):
    """An input module received an item it cannot accept."""
