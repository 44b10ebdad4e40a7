"""What every request handler reaches through ``request.app``: one :class:`ApiContext`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from cryoflow.api.auth import Tokens
    from cryoflow.api.events import EventHub
    from cryoflow.api.feed import EventFeed, LastOutputs
    from cryoflow.api.metrics import MetricsCollector
    from cryoflow.head import Head


@dataclass
class ApiContext:
    """The head and the side parts the API keeps beside it."""

    head: Head
    tokens: Tokens
    feed: EventFeed
    hub: EventHub
    metrics: MetricsCollector
    outputs: LastOutputs


CONTEXT: web.AppKey[ApiContext] = web.AppKey("cryoflow", ApiContext)


def ctx(request: web.Request) -> ApiContext:
    """The :class:`ApiContext` of the app serving ``request``."""
    return request.app[CONTEXT]
