"""The durable state of a running workflow: SQLite in WAL mode in the state folder.

:class:`Store` is held by the head (one per state folder, enforced by a file lock);
:class:`StoreReader` is a read-only connection for other threads. See
:mod:`cryoflow.store.sqlite` for the contract.
"""

from cryoflow.store.reader import StoreReader
from cryoflow.store.retention import Retention
from cryoflow.store.sqlite import Batch, Store

__all__ = ["Batch", "Retention", "Store", "StoreReader"]
