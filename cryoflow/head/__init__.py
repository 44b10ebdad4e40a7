"""The head: one asyncio loop that owns the store, the engine and the dispatcher.

``core`` is the loop (:class:`Head`), ``inbox`` what it gathers between two commits,
``jobs`` what it derives from the graph for each job.
"""

from cryoflow.head.core import Head, Listener
from cryoflow.head.jobs import missing_classes

__all__ = ["Head", "Listener", "missing_classes"]
