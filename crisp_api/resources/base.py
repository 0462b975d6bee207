"""What every generated resource class stands on: the `Caller` it calls through and query
merging."""

from __future__ import annotations

from crisp_api.caller import Body, Caller, Query
from crisp_api.routing import QueryValue

__all__ = ["Body", "Query", "Resource", "merge_query"]


class Resource:
    """A group of API methods (website, plugin, ...) bound to one client."""

    def __init__(self, client: Caller) -> None:
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def merge_query(query: Query | None, options: dict[str, QueryValue]) -> Query | None:
    """The query of a call: the ``query`` mapping, overridden by named options that were given."""
    given = {key: value for key, value in options.items() if value is not None}
    if not given:
        return query
    if not query:
        return given
    return {**query, **given}
