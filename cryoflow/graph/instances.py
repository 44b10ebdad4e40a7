"""Names of global-handler instances: ``HANDLER@FAILED``.

A global error handler (``"global": true``) runs once for each node of a pebble that
ended ``error`` or ``timeout``; that run is the node instance ``HANDLER@FAILED`` in the
pebble's states, the store, the API and the web view. :func:`handler_instance` is the
one parser of such names and :attr:`HandlerInstance.name` the one formatter; a plain
node name is no instance.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "@"


@dataclass(frozen=True, slots=True)
class HandlerInstance:
    """The run of global handler ``handler`` for the failed node ``failed``."""

    handler: str
    failed: str

    @property
    def name(self) -> str:
        """``HANDLER@FAILED``, the instance's node name."""
        return f"{self.handler}{SEPARATOR}{self.failed}"


def handler_instance(name: str) -> HandlerInstance | None:
    """The handler instance ``name`` names, or None for a plain node name."""
    handler, separator, failed = name.partition(SEPARATOR)
    return HandlerInstance(handler, failed) if separator else None


def is_instance(name: str) -> bool:
    """Does ``name`` name a global-handler instance (not a plain node)?"""
    return SEPARATOR in name


def base_name(name: str) -> str:
    """The graph node that ``name`` runs: ``Handler@Wind`` → ``Handler``, ``A`` → ``A``."""
    return name.partition(SEPARATOR)[0]
