"""``CryoCore.API`` for modules written for CryoCloud: see :mod:`cryoflow.compat.api`."""

from cryoflow.compat.api import (
    LOG_LEVELS,
    StopEvent,
    api_stop_event,
    get_config,
    get_log,
    get_status,
    reset,
    set_config,
    set_log_level,
    shutdown,
)

log_level_str = LOG_LEVELS

__all__ = ["LOG_LEVELS", "StopEvent", "api_stop_event", "get_config", "get_log", "get_status",
           "log_level_str", "reset", "set_config", "set_log_level", "shutdown"]
