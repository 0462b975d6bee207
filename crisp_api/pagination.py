"""Lazy iterators over Crisp's paged routes.

Each iterator asks for a page only when the previous one is used up, stops at the end of the
data, and never asks for more than one page past it. Arguments are checked when the iterator
is made; requests start with the first item asked for, so an abandoned iterator (``break``)
leaves nothing pending. Errors of a call (`RouteError` and subclasses) come out of ``next()``.

Crisp pages two ways:

- Numbered pages: every route whose path ends with ``{page_number}`` (conversations, people
  profiles and conversations, visitors, campaigns, helpdesk articles...) counts pages from 1
  and answers an empty list past the end. `paginate` walks any of them through its resource
  method; `iter_conversations` adds the conversation list's ``per_page`` rules.
- Messages of a conversation: ``GET .../messages`` answers the latest `MESSAGES_PAGE_SIZE`
  messages, oldest first, and ``timestamp_before=T`` the latest ones older than ``T``; a
  shorter page is the last. `iter_message_pages` walks back from the newest page and
  `iter_messages` yields the messages one by one, newest first.

The resources expose these as methods (``client.website.iter_conversations(...)``, see
`crisp_api.resources.iteration`); `paginate` takes any bound method, of any resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeGuard

from crisp_api.errors import InvalidResponseError
from crisp_api.routing import ROUTES, QueryValue

PER_PAGE = 20
"""Crisp's default page size where a route takes ``per_page``, and `iter_conversations`'s."""

PER_PAGE_MIN, PER_PAGE_MAX = 20, 50
"""The page sizes the conversation list accepts."""

MESSAGES_PAGE_SIZE = 40
"""Messages per page of ``GET .../messages``: a page holding fewer is the oldest one."""

_MESSAGES = ROUTES["website", "get_messages_in_conversation"]


def paginate(
    method: Callable[..., Any],
    *args: Any,
    start: int = 1,
    page_size: int | None = None,
    **kwargs: Any,
) -> Iterator[Any]:
    """Every item of a ``{page_number}`` route, page after page from page ``start``.

    ``method`` is a bound resource method of a paged route, e.g.
    ``client.website.list_people_profiles``; ``args`` are its path parameters before the page
    number (the last path parameter of every paged route) and ``kwargs`` its query options,
    ``query`` mapping and ``use_cache``, sent with every page::

        for profile in paginate(client.website.list_people_profiles, website_id, per_page=50):
            ...

    Iteration stops after an empty page, or after a page holding fewer than ``page_size``
    items. ``page_size`` defaults to the ``per_page`` option when it is given as an int;
    without either, the end is only known from the empty page that follows it (a full last
    page always costs that one request).
    """
    _check_whole("start", start, 1)
    size = page_size
    if size is None and _is_int(kwargs.get("per_page")):
        size = kwargs["per_page"]
    if size is not None:
        _check_whole("page_size", size, 1)
    return _numbered_pages(method, args, start, size, kwargs)


def _numbered_pages(
    method: Callable[..., Any],
    args: tuple[Any, ...],
    page_number: int,
    page_size: int | None,
    kwargs: dict[str, Any],
) -> Iterator[Any]:
    name = getattr(method, "__name__", repr(method))
    while True:
        items = _page(method(*args, page_number, **kwargs), name)
        yield from items
        if not items or (page_size is not None and len(items) < page_size):
            return
        page_number += 1


def iter_conversations(
    list_conversations: Callable[..., Any],
    website_id: str,
    *,
    per_page: int = PER_PAGE,
    start: int = 1,
    use_cache: bool = True,
    **filters: QueryValue,
) -> Iterator[Any]:
    """Every conversation of a website that ``filters`` select, in the API's order.

    ``list_conversations`` is the bound ``list_conversations`` of a website resource.
    ``per_page`` (20 to 50, default 20; ValueError otherwise) is sent with every page, and a
    page holding fewer is the last. ``filters`` are the route's query options
    (``search_query=``, ``filter_unread=True``, ``filter_date_start=datetime``...), passed
    through unchanged; a name the route does not take raises TypeError on the first page.
    """
    if not _is_int(per_page) or not PER_PAGE_MIN <= per_page <= PER_PAGE_MAX:
        raise ValueError(
            f"per_page must be a whole number from {PER_PAGE_MIN} to {PER_PAGE_MAX}, "
            f"got {per_page!r}"
        )
    _check_whole("start", start, 1)
    options = {**filters, "per_page": per_page, "use_cache": use_cache}
    return _numbered_pages(list_conversations, (website_id,), start, per_page, options)


def iter_message_pages(
    get_messages: Callable[..., Any],
    website_id: str,
    session_id: str,
    *,
    after: int | None = None,
    use_cache: bool = True,
) -> Iterator[list[Any]]:
    """The messages of a conversation as the API pages them: newest page first.

    ``get_messages`` is the bound ``get_messages_in_conversation`` of a website resource.
    Each page is a list in the API's order, oldest message first; the next page holds the
    messages older than the oldest of the previous one.

    ``after`` (a message ``timestamp``, epoch milliseconds) stops the walk at a known point:
    only messages newer than it are yielded, and no page is asked for once one reaching back
    to it has come. An incremental sync passes the newest timestamp it has stored.

    Crisp pages by timestamp, so messages sharing the exact millisecond of a page's oldest
    message may be left out of the next page; that is the API's own limit. A server that does
    not honour ``timestamp_before`` (a full page with nothing older than the previous one)
    raises `InvalidResponseError` rather than loop.
    """
    if after is not None and not _is_int(after):
        raise TypeError(f"after must be a message timestamp (int), got {after!r}")
    return _message_pages(get_messages, website_id, session_id, after, use_cache)


def _message_pages(
    get_messages: Callable[..., Any],
    website_id: str,
    session_id: str,
    after: int | None,
    use_cache: bool,
) -> Iterator[list[Any]]:
    before: int | None = None
    while True:
        answered = _page(
            get_messages(website_id, session_id, timestamp_before=before, use_cache=use_cache),
            _MESSAGES.template,
        )
        page = answered
        if before is not None:
            # Keep only what is older than the cursor, should the server repeat the boundary.
            page = [message for message in answered if _timestamp(message) < before]
            if not page and len(answered) >= MESSAGES_PAGE_SIZE:
                raise InvalidResponseError(
                    "timestamp_before not honoured: a full page with nothing older",
                    method=_MESSAGES.method,
                    route=_MESSAGES.template,
                )
        if not page:
            return
        oldest = min(_timestamp(message) for message in page)
        if after is not None and oldest <= after:
            newer = [message for message in page if _timestamp(message) > after]
            if newer:
                yield newer
            return
        yield page
        if len(answered) < MESSAGES_PAGE_SIZE:
            return
        before = oldest


def iter_messages(
    get_messages: Callable[..., Any],
    website_id: str,
    session_id: str,
    *,
    after: int | None = None,
    use_cache: bool = True,
) -> Iterator[Any]:
    """The messages of a conversation one by one, newest first (by ``timestamp``).

    The same walk as `iter_message_pages` (and the same ``after``), each page reversed, so
    the whole iteration runs from the newest message back to the oldest (or to ``after``).
    Reverse what it yields to store messages in the order they were sent.
    """
    pages = iter_message_pages(
        get_messages, website_id, session_id, after=after, use_cache=use_cache
    )
    return (message for page in pages for message in reversed(page))


def _page(data: Any, source: str) -> list[Any]:
    """A page's items; an answer that is not a list cannot be paged."""
    if not isinstance(data, list):
        raise InvalidResponseError(
            f"expected a page (a list) from {source}, got {type(data).__name__}",
            method="GET",
            route=source,
        )
    return data


def _timestamp(message: Any) -> int:
    stamp = message.get("timestamp") if isinstance(message, dict) else None
    if not _is_int(stamp):
        raise InvalidResponseError(
            f"message without an integer timestamp: {type(stamp).__name__}",
            method=_MESSAGES.method,
            route=_MESSAGES.template,
        )
    return stamp


def _is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (``True`` is no page size nor timestamp)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_whole(name: str, value: object, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
