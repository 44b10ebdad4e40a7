"""References to Python callables that a worker process can import.

A node that calls a Python function names it ``"package.module:qualname"`` and, when the
module has a file, the ``sys.path`` folder to import it from. How the call is made is
in :mod:`cryoflow.pyapi.calls`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def import_ref(function: Callable[..., Any]) -> str | None:
    """``"module:qualname"`` when a worker process can import ``function``, else None.

    Lambdas, nested functions and anything defined in ``__main__`` cannot be imported.
    """
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def import_path(function: Callable[..., Any]) -> str | None:
    """The ``sys.path`` folder ``function``'s module is imported from, when it has a file."""
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if module is None or not file:
        return None
    root = Path(file).resolve().parent
    depth = module.__name__.count(".") + (1 if Path(file).stem == "__init__" else 0)
    for _ in range(depth):
        root = root.parent
    return str(root)
