"""The sync engine: mirror a website's conversations, messages, people and operators.

A run reads the window of conversations updated between the last checkpoint (less an
overlap, for clock skew between us and Crisp) and the moment the run started, which stays
frozen for the whole run. Inside the window it walks by keyset rather than page number:
each request asks for the newest conversations updated at or before the oldest one seen so
far. Conversations updated while the run reads leave the window (their new ``updated_at`` is
after its end) instead of shifting the pages under it, so none is skipped; the next run's
window, which starts before this one's end, picks them up.

Each conversation whose ``updated_at`` moved since it was stored gets its new messages (the
API is walked back from the newest page until the newest stored message is reached) and is
saved with them in one transaction. The checkpoint moves to the run's start only when every
conversation of the window is committed, so an interrupted run loses nothing: the next one
covers the same window again, skipping what is already stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from crisp_api.errors import RouteError
from crisp_api.pagination import paginate
from crisp_api.sync.store import Changes, Store

if TYPE_CHECKING:
    from crisp_api.client import Crisp

DEFAULT_OVERLAP_MS = 10 * 60 * 1000
"""How far each window reaches back before the previous run's start (clock skew margin)."""
PER_PAGE = 50
"""Conversations per listing page: Crisp's maximum, for the fewest requests."""


@dataclass
class SyncReport:
    """What one website's sync did."""

    website_id: str
    window_start_ms: int | None
    window_end_ms: int
    conversations: Changes = field(default_factory=Changes)
    messages: Changes = field(default_factory=Changes)
    people: Changes = field(default_factory=Changes)
    operators: Changes = field(default_factory=Changes)
    conversations_seen: int = 0
    conversations_fetched: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether everything in the window was stored (and the checkpoint moved)."""
        return not self.errors


def sync_website(
    client: Crisp,
    website_id: str,
    store: Store,
    *,
    workers: int = 8,
    overlap_ms: int = DEFAULT_OVERLAP_MS,
    people: bool = True,
    operators: bool = True,
    on_conversation: Callable[[], None] | None = None,
    now_ms: Callable[[], int] | None = None,
) -> SyncReport:
    """Bring ``store``'s copy of ``website_id`` up to date; see the module docstring.

    ``workers`` threads fetch messages in parallel, sharing ``client`` (its pool, rate limit,
    cache and retries). ``on_conversation`` is called once per conversation handled (for a
    progress bar). Listing errors raise `RouteError`; a conversation that fails after the
    client's retries is recorded in ``errors`` and leaves the checkpoint where it was.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if overlap_ms < 0:
        raise ValueError(f"overlap_ms must not be negative, got {overlap_ms}")
    started = time.monotonic()
    clock = now_ms or _now_ms
    checkpoint = store.checkpoint(website_id)
    report = SyncReport(
        website_id=website_id,
        window_start_ms=None if checkpoint is None else max(0, checkpoint - overlap_ms),
        window_end_ms=clock(),
    )
    lock = threading.Lock()

    def handle(conversation: Mapping[str, Any]) -> None:
        try:
            fetched, changes = _sync_conversation(client, website_id, store, conversation)
        except (RouteError, ValueError) as exc:
            with lock:
                report.errors.append(f"{conversation.get('session_id')}: {exc!r}")
        else:
            with lock:
                report.conversations_fetched += fetched
                report.conversations += changes[0]
                report.messages += changes[1]
        if on_conversation is not None:
            on_conversation()

    with ThreadPoolExecutor(workers, thread_name_prefix="crisp-sync") as pool:
        pending: set[Future[None]] = set()
        try:
            for conversation in _window(client, website_id, report):
                report.conversations_seen += 1
                if len(pending) >= 2 * workers:
                    _, pending = wait(pending, return_when=FIRST_COMPLETED)
                pending.add(pool.submit(handle, conversation))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            wait(pending)

    if people:
        for page in _pages(client.website.list_people_profiles, website_id):
            report.people += store.save_people(website_id, page)
    if operators:
        listed = client.website.list_website_operators(website_id, use_cache=False)
        report.operators += store.save_operators(website_id, _dicts(listed))
    if report.complete:
        store.set_checkpoint(website_id, report.window_end_ms)
    report.elapsed = time.monotonic() - started
    return report


def _window(client: Crisp, website_id: str, report: SyncReport) -> Iterator[Mapping[str, Any]]:
    """Every conversation updated inside the report's window, newest first, each once."""
    end = report.window_end_ms
    start = None if report.window_start_ms is None else _iso(report.window_start_ms)
    page = 1
    at_boundary: set[str] = set()
    while True:
        listed = _dicts(
            client.website.list_conversations(
                website_id,
                page,
                per_page=PER_PAGE,
                filter_date_start=start,
                filter_date_end=_iso(end),
                use_cache=False,
            )
        )
        for conversation in listed:
            session_id = conversation.get("session_id")
            if session_id not in at_boundary:
                yield conversation
        if len(listed) < PER_PAGE:
            return
        oldest = min(_updated_at(c) for c in listed)
        if oldest < end:
            end, page = oldest, 1
            at_boundary = {str(c.get("session_id")) for c in listed if _updated_at(c) == oldest}
        else:
            page += 1
            at_boundary |= {str(c.get("session_id")) for c in listed}


def _sync_conversation(
    client: Crisp, website_id: str, store: Store, conversation: Mapping[str, Any]
) -> tuple[int, tuple[Changes, Changes]]:
    """Fetch and save one conversation's new messages, unless it has not changed."""
    session_id = conversation.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise RouteError("conversation without session_id in listing", route="conversations")
    state = store.conversation_state(website_id, session_id)
    if state.updated_at is not None and _updated_at(conversation) <= state.updated_at:
        return 0, (Changes(), Changes())
    messages = list(
        client.website.iter_messages(
            website_id, session_id, after=state.newest_message, use_cache=False
        )
    )
    return 1, store.save_conversation(website_id, conversation, messages)


def _pages(method: Callable[..., Any], website_id: str) -> Iterator[list[Mapping[str, Any]]]:
    """The pages of a ``{page_number}`` listing, as lists of rows."""
    page: list[Mapping[str, Any]] = []
    for row in paginate(method, website_id, per_page=PER_PAGE, use_cache=False):
        page.append(row)
        if len(page) == PER_PAGE:
            yield page
            page = []
    if page:
        yield page


def _dicts(listed: Any) -> list[Mapping[str, Any]]:
    if not isinstance(listed, list) or not all(isinstance(row, dict) for row in listed):
        raise RouteError("listing is not a list of objects", route="listing")
    return listed


def _updated_at(conversation: Mapping[str, Any]) -> int:
    value = conversation.get("updated_at")
    if isinstance(value, bool) or not isinstance(value, int):
        raise RouteError("conversation without integer updated_at", route="conversations")
    return value


def _iso(epoch_ms: int) -> datetime:
    """The exact millisecond as a datetime (float division could round it down by one)."""
    seconds, millis = divmod(epoch_ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


def _now_ms() -> int:
    return int(time.time() * 1000)
