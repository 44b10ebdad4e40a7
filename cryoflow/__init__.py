"""cryoflow: stream pebbles of work through workflow graphs."""

from cryoflow.errors import CryoflowError

__version__ = "0.1.0"
__all__ = ["CryoflowError", "__version__"]
