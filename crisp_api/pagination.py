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
- Conversations changed in a window of time: `walk_conversations` walks the conversation list
  by keyset on ``updated_at``, newest first, so that conversations updated while it reads
  move above the walk instead of shifting the pages under it.
- Messages of a conversation: ``GET .../messages`` answers the latest `MESSAGES_PAGE_SIZE`
  messages, oldest first, and ``timestamp_before=T`` the latest ones strictly older than
  ``T``; Crisp answers 206 while older messages remain and 200 for the last page.
  `walk_messages` walks back from the newest page without losing messages that share a
  millisecond at a page boundary; `iter_message_pages` and `iter_messages` (newest first)
  are built on it.

The resources expose these as methods (``client.website.iter_conversations(...)``, see
`crisp_api.resources.iteration`); `paginate` takes any bound method, of any resource.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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


@dataclass(frozen=True, slots=True)
class ConversationPage:
    """One answer of a conversation walk: the conversations it brought that no earlier
    answer of the walk held."""

    conversations: list[dict[str, Any]]
    """New conversations, in the API's order (newest first)."""
    newest: int | None
    """The newest ``updated_at`` of the answer (new conversations or not); None when no
    conversation of it has one."""
    last: bool
    """Whether this page ended the walk (it reached the window's start)."""


ConversationFetch = Callable[[int, Mapping[str, QueryValue]], Any]
"""``fetch(page_number, query)``: the data of one page of ``list_conversations`` for a
website, asked with the query options ``query``."""


def walk_conversations(
    fetch: ConversationFetch, start: int | None, *, per_page: int = PER_PAGE_MAX
) -> Iterator[ConversationPage]:
    """Walk the conversations updated since ``start`` (epoch ms; None: all), newest first,
    each once: a keyset walk on ``updated_at``, in Crisp's clock.

    ``fetch(page_number, query)`` asks for one page of ``list_conversations`` (``per_page``,
    20 to 50, sent with every page; ``filter_date_start`` and ``filter_date_end`` in the
    query) and returns its data. The first page has no upper bound; each next walk asks for
    the conversations updated at or before the oldest one seen so far, from page 1 again, and
    leaves out those of the boundary millisecond it has already yielded. Conversations
    updated while the walk reads move above it instead of shifting the pages under it, so
    none is skipped. A whole page updated in one millisecond (or with no ``updated_at``)
    cannot be passed by keyset: the walk pages through it by page number. The walk ends
    after a page shorter than ``per_page``. An answer that is not a list of objects raises
    `InvalidResponseError`.
    """
    if not _is_int(per_page) or not PER_PAGE_MIN <= per_page <= PER_PAGE_MAX:
        raise ValueError(
            f"per_page must be a whole number from {PER_PAGE_MIN} to {PER_PAGE_MAX}, "
            f"got {per_page!r}"
        )
    if start is not None and not _is_int(start):
        raise TypeError(f"start must be an updated_at (epoch ms, int) or None, got {start!r}")
    return _keyset_pages(fetch, start, per_page)


def _keyset_pages(
    fetch: ConversationFetch, start: int | None, per_page: int
) -> Iterator[ConversationPage]:
    end: int | None = None
    page_number = 1
    at_boundary: set[str] = set()
    while True:
        query: dict[str, QueryValue] = {"per_page": per_page}
        if start is not None:
            query["filter_date_start"] = _instant(start)
        if end is not None:
            query["filter_date_end"] = _instant(end)
        listed = _conversation_rows(fetch(page_number, query))
        listed_stamps = list(map(updated_at, listed))
        stamps = [stamp for stamp in listed_stamps if stamp is not None]
        last = len(listed) < per_page
        fresh = ([row for row in listed if row.get("session_id") not in at_boundary]
                 if at_boundary else listed)
        yield ConversationPage(fresh, max(stamps, default=None), last)
        if last:
            return
        oldest = min(stamps) if stamps else end
        if oldest is not None and (end is None or oldest < end):
            end, page_number = oldest, 1
            at_boundary = {str(row.get("session_id"))
                           for row, stamp in zip(listed, listed_stamps, strict=True)
                           if stamp == oldest}
        else:  # a whole page updated in one millisecond (or with no stamp): page through it
            page_number += 1
            at_boundary |= {str(row.get("session_id")) for row in listed}


def updated_at(conversation: Mapping[str, Any]) -> int | None:
    """A listed conversation's ``updated_at``, or None when it has no integer one: such a
    conversation is still handed on (for its store to put its row aside), and a keyset walk
    pages past it by page number."""
    value = conversation.get("updated_at")
    return value if type(value) is int else None  # JSON's integers: a bool is none


def _conversation_rows(data: Any) -> list[dict[str, Any]]:
    """A conversation page's rows; an answer that is not a list of objects cannot be walked."""
    if not isinstance(data, list):
        raise InvalidResponseError("conversations: the listing is not a list")
    if not all(isinstance(row, dict) for row in data):
        raise InvalidResponseError("conversations: a row that is not an object")
    return data


def _instant(epoch_ms: int) -> datetime:
    """The exact millisecond as a datetime (float division could round it down by one)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


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
    Each page is a list in the API's order, oldest message first, holding only messages not
    yielded before; the next page holds older ones (see `walk_messages` for how messages
    sharing a millisecond at a page boundary are all reached).

    ``after`` (a message ``timestamp``, epoch milliseconds) stops the walk at a known point:
    only messages newer than it are yielded, and no page is asked for once one reaching back
    to it has come. An incremental sync passes the newest timestamp it has stored.
    """

    def fetch(before: int | None) -> tuple[Any, int | None]:
        data = get_messages(website_id, session_id, timestamp_before=before, use_cache=use_cache)
        return data, None

    return message_pages(fetch, after=after, signal=PartialSignal())


def message_pages(
    fetch: Callable[[int | None], tuple[Any, int | None]],
    *,
    after: int | None = None,
    signal: PartialSignal,
) -> Iterator[list[Any]]:
    """`iter_message_pages` over a page fetcher that also reports each answer's status (see
    `walk_messages`); what the website resource's iterators use."""
    _check_after(after)
    return _newer_pages(walk_messages(fetch, after=after, signal=signal), after)


def _newer_pages(pages: Iterator[MessagePage], after: int | None) -> Iterator[list[Any]]:
    for page in pages:
        kept = page.messages if after is None else [
            message for message in page.messages if _newer(message, after)
        ]
        if kept:
            yield kept


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
    return newest_first(pages)


def newest_first(pages: Iterator[list[Any]]) -> Iterator[Any]:
    """The messages of newest-first pages (each oldest first), newest message first."""
    return (message for page in pages for message in reversed(page))


class PartialSignal:
    """Whether this server marks message pages with more to come by answering 206.

    Crisp answers 206 for a page with older messages beyond it and 200 for the last one. A
    server (or proxy) that always answers 200 must not make a walk stop after its first full
    page, so a 200 is only read as "last page" once a 206 has been seen from the same server;
    until then the walk ends on a short page, as it would without the signal. Share one
    instance per server and credentials (a client); flipping it is safe from any thread.
    """

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One answer of a message walk: the messages it brought that no newer page held."""

    messages: list[Any]
    """New messages, in the API's order (oldest first)."""
    oldest: int
    """The oldest timestamp of the answer (new messages or not)."""
    last: bool
    """Whether this page reached the conversation's oldest message."""
    crowded: int | None = None
    """A timestamp shared by a full page of messages: more of them may exist than the API can
    list (it pages by timestamp), so the walk stepped past it."""


def walk_messages(
    fetch: Callable[[int | None], tuple[Any, int | None]],
    *,
    after: int | None = None,
    signal: PartialSignal,
) -> Iterator[MessagePage]:
    """Walk a conversation's messages from the newest page back, each message once.

    ``fetch(timestamp_before)`` asks for one page and returns ``(data, status)`` (status None
    when unknown). Crisp's ``timestamp_before=T`` lists messages strictly older than T, so a
    walk that went on from a page's oldest timestamp ``O`` would skip the messages sharing
    ``O`` that did not fit on the page. This one asks for ``O + 1`` and drops the messages it
    has already seen, by fingerprint (unique within a conversation). If a whole page brings
    nothing new, more than a page of messages share ``O``: it steps past ``O`` (reported in
    `MessagePage.crowded`) rather than loop. A server that ignores ``timestamp_before`` (a full
    page with nothing older than the cursor) raises `InvalidResponseError`.

    The walk ends after the page that reaches the conversation's oldest message (a 200 from
    a server known to answer 206, or a page shorter than `MESSAGES_PAGE_SIZE`), or after the
    first page whose oldest message is at or before ``after``.
    """
    before: int | None = None
    seen: set[Any] = set()
    while True:
        data, status = fetch(before)
        answered = _page(data, _MESSAGES.template)
        page = answered
        if before is not None:
            # Keep only what the cursor asked for, should the server repeat newer messages.
            page = [message for message in answered if _older(message, before)]
            if not _stamps(page) and len(answered) >= MESSAGES_PAGE_SIZE:
                raise InvalidResponseError(
                    "timestamp_before not honoured: a full page with nothing older",
                    method=_MESSAGES.method,
                    route=_MESSAGES.template,
                )
        if not page:
            return
        if status == 206:
            signal.seen = True
        # The first page (most conversations' only one) has nothing seen to drop.
        fresh = [message for message in page if _fingerprint_key(message) not in seen] if (
            seen) else page
        stamps = _stamps(page)
        short = len(answered) < MESSAGES_PAGE_SIZE
        last = (status == 200 and signal.seen) or (status != 206 and short)
        if not stamps:
            # Nothing here says how far back the page reaches: the walk cannot go on past it.
            if not last:
                raise InvalidResponseError(
                    "a page of messages none of which has a timestamp: cannot page further",
                    method=_MESSAGES.method,
                    route=_MESSAGES.template,
                )
            yield MessagePage(fresh, before - 1 if before is not None else 0, last)
            return
        oldest = min(stamps)
        crowded = None
        before = oldest + 1
        if not fresh and not last:
            if len(page) < MESSAGES_PAGE_SIZE:
                raise InvalidResponseError(
                    "timestamp_before not honoured: a full page of messages already listed",
                    method=_MESSAGES.method,
                    route=_MESSAGES.template,
                )
            # A full page of messages all sharing the oldest millisecond: step past it.
            crowded = before = oldest
        done = last or (after is not None and oldest <= after)
        if not done:
            seen.update(map(_fingerprint_key, fresh))
        yield MessagePage(fresh, oldest, last, crowded)
        if done:
            return


def _page(data: Any, source: str) -> list[Any]:
    """A page's items; an answer that is not a list cannot be paged."""
    if not isinstance(data, list):
        raise InvalidResponseError(
            f"expected a page (a list) from {source}, got {type(data).__name__}",
            method="GET",
            route=source,
        )
    return data


def _check_after(after: object) -> None:
    if after is not None and not _is_int(after):
        raise TypeError(f"after must be a message timestamp (int), got {after!r}")


def _fingerprint_key(message: Any) -> Any:
    """What names a message within its conversation (a message without one is its own)."""
    fingerprint = message.get("fingerprint") if isinstance(message, dict) else None
    return fingerprint if _is_int(fingerprint) or isinstance(fingerprint, str) else id(message)


def _stamp(message: Any) -> int | None:
    """A message's timestamp, or None when it has no integer one (Crisp's reference says it
    always has; a message without one is still handed on, for its store to put aside)."""
    stamp = message.get("timestamp") if isinstance(message, dict) else None
    return stamp if _is_int(stamp) else None


def _stamps(messages: list[Any]) -> list[int]:
    """The timestamps of the messages that have one: what a walk pages by (`_stamp`'s, with
    JSON's integers told at once)."""
    return [stamp for message in messages if isinstance(message, dict)
            and (type(stamp := message.get("timestamp")) is int or _is_int(stamp))]


def _older(message: Any, before: int) -> bool:
    """Whether ``message`` is older than the cursor ``before``; a message without a
    timestamp cannot be placed, so it is kept (a repeated one is dropped by fingerprint)."""
    stamp = _stamp(message)
    return stamp is None or stamp < before


def _newer(message: Any, after: int) -> bool:
    """Whether ``message`` is newer than ``after``; kept when it has no timestamp."""
    stamp = _stamp(message)
    return stamp is None or stamp > after


def _is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (``True`` is no page size nor timestamp)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_whole(name: str, value: object, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
