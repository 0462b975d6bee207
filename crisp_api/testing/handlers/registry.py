"""The table of route handlers, filled by the ``@handles`` decorator of each handler module."""

from __future__ import annotations

from collections.abc import Callable

from crisp_api.testing.context import Context

Handler = Callable[[Context], object]
"""Returns the envelope's ``data`` (JSON-ready, or `Raw`), or raises `ApiError`."""

HANDLERS: dict[tuple[str, str], Handler] = {}

WEBSITE = "/website/{website_id}"
CONVERSATION = WEBSITE + "/conversation/{session_id}"
PROFILE = WEBSITE + "/people/profile/{people_id}"


def handles(method: str, template: str) -> Callable[[Handler], Handler]:
    """Register the decorated function for ``method template`` (a catalogue route)."""

    def register(handler: Handler) -> Handler:
        HANDLERS[(method, template)] = handler
        return handler

    return register
