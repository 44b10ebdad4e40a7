"""Import names for modules written for CryoCloud: ``CryoCloud`` and ``CryoCore``.

Modules that CryoCloud users wrote import ``CryoCloud.Common.fileprep``,
``from CryoCore import API`` and the like. This package holds cryoflow's own small
implementations of those names (see docs/migrating.md for what each offers); the
module loaders call :func:`install`, which puts this folder at the *end* of
``sys.path`` so that an installed CryoCloud or CryoCore still wins. Nothing else in
cryoflow imports them.
"""

from __future__ import annotations

import sys
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent
"""The folder that holds the ``CryoCloud`` and ``CryoCore`` packages."""


def install() -> None:
    """Make ``import CryoCloud`` and ``import CryoCore`` work (idempotent)."""
    folder = str(COMPAT_DIR)
    if folder not in sys.path:
        sys.path.append(folder)
