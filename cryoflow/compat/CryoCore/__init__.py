"""``CryoCore`` for modules written for CryoCloud (cryoflow's own implementation).

Only ``CryoCore.API`` is offered: see :mod:`cryoflow.compat.api`.
"""

from . import API

__all__ = ["API"]
