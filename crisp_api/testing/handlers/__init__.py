"""Route handlers: the routes with behaviour of their own, and a plausible empty answer for
every other catalogue route.

Every route first checks that the website, conversation and profile its path names exist.
"""

from __future__ import annotations

from crisp_api.testing.context import Context
from crisp_api.testing.handlers import conversations, messages, people, website
from crisp_api.testing.handlers.registry import HANDLERS, WEBSITE

LIST_TEMPLATES = frozenset({
    WEBSITE + "/operators/active",
    WEBSITE + "/availability/operators",
    WEBSITE + "/visitors/blocked",
    WEBSITE + "/campaigns/tags",
    "/plugins/subscription",
    "/plugins/subscription/{website_id}",
    WEBSITE + "/helpdesk/locale/{locale}/article/{article_id}/alternates",
})
"""Routes answering a list although their path has no ``{page_number}`` nor ``/list``."""

MODULES = (conversations, messages, people, website)
"""The handler modules, imported for the routes they register in `HANDLERS`."""


def dispatch(context: Context) -> object:
    """The ``data`` for one call, or raises `ApiError`."""
    context.check()
    route = context.route
    handler = HANDLERS.get((route.method, route.template))
    if handler is not None:
        return handler(context)
    return [] if route.lists or route.template in LIST_TEMPLATES else {}
