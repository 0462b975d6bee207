"""What the resources call through: the `Caller` protocol, and the `Answer` it fetches.

The resources (``client.website``, ``client.plugin``...) need only two things of a client:
`Caller.call` (a route's data) and `Caller.fetch` (its data with the answer's status and the
server's clock). Typing them against this protocol rather than `crisp_api.Crisp` keeps the
import graph one-way: the client imports its resources, and no resource imports the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from crisp_api.routing import QueryValue, Route

Body = Mapping[str, Any] | list[Any] | None
"""A request's JSON body: an object, an array, or none."""
Query = Mapping[str, QueryValue]
"""A request's query options, by name."""


class Answer(NamedTuple):
    """A successful call with what the answer said besides its data (see `Caller.fetch`)."""

    data: Any
    """The envelope's ``data``."""
    status: int
    """The HTTP status: Crisp answers 206 for a page with more to come."""
    server_time_ms: int | None
    """The server's clock from the ``Date`` header (epoch ms, one-second precision), if any."""


class Caller(Protocol):
    """Calls routes of the Crisp API (`crisp_api.Crisp` is one)."""

    def call(
        self,
        route: Route,
        params: tuple[Any, ...] = (),
        query: Query | None = None,
        body: Body = None,
        *,
        use_cache: bool = True,
        deadline: float | None = None,
    ) -> Any:
        """Call ``route`` with its path ``params``; returns the envelope's ``data``."""
        ...

    def fetch(
        self,
        route: Route,
        params: tuple[Any, ...] = (),
        query: Query | None = None,
        body: Body = None,
        *,
        use_cache: bool = True,
        deadline: float | None = None,
    ) -> Answer:
        """`call`, keeping the answer's status and the server's clock next to its data."""
        ...
