"""``CryoCloud`` for modules written for CryoCloud (cryoflow's own implementation).

Offers ``CryoCloud.DefaultHandler``, ``CryoCloud.Common`` (``fileprep.FilePrepare``,
``DockerProcess``, ``DirectoryWatcher``, ``NetWatcher``). See docs/migrating.md.
"""

from . import Common
from .handler import DefaultHandler

__all__ = ["Common", "DefaultHandler"]
