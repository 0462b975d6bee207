"""The sync engine: mirror a website's conversations, messages, people and operators.

**Time is Crisp's.** A run lists the conversations updated since the website's checkpoint
(less an overlap), and the checkpoint it leaves is the largest ``updated_at`` it actually
read, capped by the clock (Crisp's ``Date`` header, else this machine's): a watermark taken
from the data, as incremental ETL tools keep theirs, so a machine whose clock is hours ahead
of or behind Crisp's misses nothing and delays nothing.

**The window is walked by keyset** on ``updated_at``, newest first
(`crisp_api.pagination.walk_conversations`): conversations updated while the run reads move
above the walk instead of shifting the pages under it, so none is skipped; they are newer
than this run's watermark, so the next run's window holds them.

**Messages, as Crisp pages them** (`crisp_api.pagination.walk_messages`): each conversation
whose ``updated_at`` moved since it was stored is read from its newest page back to the newest
stored message, without losing messages that share a millisecond at a page boundary. What was
read covers every message newer than the oldest one of the last page (`MessageSpan`): the
store updates the edited ones and removes those Crisp no longer has in that range.

**What the store holds is read a listing page at a time** when the store can
(`crisp_api.sync.store.BatchStates`): a conversation not updated since it was saved is
counted on the listing's thread, and no worker touches it.

**Nothing lost, nothing hidden.** A conversation is saved with its messages atomically: in
one transaction, or, in a store that commits many at once (`crisp_api.sync.store.GroupCommit`,
SQLite), in a savepoint of a group committed by one writer thread (`crisp_api.sync.writer`),
reported only once its group is committed. Every failure of a worker is collected (an
exception nobody reads is data lost):
the conversation is reported as failed and the checkpoint stays where it was, so the next run
covers the same window again, skipping what is already stored. A store that cannot be written
at all stops the run early. Two runs of one website on one store are refused by the store's
lock. A row the store cannot key (a fingerprint outside 64 bits, ...) is no failure: the
store puts it aside in its quarantine table, the rest of the conversation is saved, and the
report counts it (``quarantined``).

**People cost what changed.** Crisp cannot list profiles updated since a date, so profiles are
listed in full only when the last full listing is older than ``people_interval``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from crisp_api.caller import Caller
from crisp_api.errors import InvalidResponseError, QuotaSpentError
from crisp_api.pagination import (
    MessagePage,
    PartialSignal,
    paginate,
    updated_at,
    walk_conversations,
    walk_messages,
)
from crisp_api.routing import ROUTES, QueryValue
from crisp_api.sync import rows
from crisp_api.sync.store import (
    BatchStates,
    Changes,
    ConversationState,
    GroupCommit,
    MessageSpan,
    StoreError,
    SyncStore,
)
from crisp_api.sync.writer import GroupWriter

if TYPE_CHECKING:
    from crisp_api.client import Crisp

DEFAULT_OVERLAP_MS = 10 * 60 * 1000
"""How far each window reaches back before the checkpoint: updates Crisp stamped with a time
before the watermark but made visible after it was read are still picked up."""
DEFAULT_PEOPLE_INTERVAL = 24 * 60 * 60.0
"""Seconds between two full listings of a website's people profiles."""
PER_PAGE = 50
"""Conversations per listing page: Crisp's maximum, for the fewest requests."""
CLOCK_MARGIN_MS = 1000
"""The ``Date`` header counts whole seconds: a stamp up to this much later is still 'now'."""

MAX_WALKED = 100_000
"""Message fingerprints a sync notes in `SyncReport.walked` at most, in all: past that,
conversations read go unnoted (follow mode then reads them again if events touched them)."""

_CONVERSATIONS = ROUTES["website", "list_conversations"]


@dataclass(frozen=True, slots=True)
class Walk:
    """What a sync read of one conversation's messages (`SyncReport.walked`)."""

    fingerprints: frozenset[int]
    """The messages its walk met (and stored as Crisp served them)."""
    whole: bool
    """Whether it read all of the conversation's messages."""


@dataclass
class SyncReport:
    """What one website's sync did, and what it cost."""

    website_id: str
    window_start_ms: int | None
    """Where the window began (Crisp's epoch ms), or None for a first run."""
    checkpoint_ms: int | None = None
    """The watermark left for the next run (Crisp's epoch ms), or None if it did not move."""
    conversations: Changes = field(default_factory=Changes)
    messages: Changes = field(default_factory=Changes)
    people: Changes = field(default_factory=Changes)
    operators: Changes = field(default_factory=Changes)
    conversations_seen: int = 0
    conversations_fetched: int = 0
    listing_calls: int = 0
    message_calls: int = 0
    people_calls: int = 0
    """Calls made for each part (a call's retries are not counted here)."""
    rechecked: int = 0
    """Conversations live events touched, read again to confirm them (follow mode:
    `crisp_api.sync.recheck`)."""
    recheck_calls: int = 0
    """Calls made to read those conversations again."""
    recheck_covered: int = 0
    """Conversations live events touched that this sync read far enough, so that they were
    not read again."""
    walked: dict[str, Walk] = field(default_factory=dict, repr=False)
    """The conversations this sync read and saved, by session id, with the messages it met
    (`MAX_WALKED` fingerprints at most in all), for `crisp_api.sync.recheck`."""
    people_listed: bool = False
    """Whether this run listed the people profiles (see ``people_interval``)."""
    errors: list[str] = field(default_factory=list)
    """One line per conversation (or part) that could not be synced."""
    store_error: StoreError | None = None
    """The first failure of the store, if any (``permanent``: rerunning cannot help)."""
    quarantine_held: int | None = None
    """Rows of the website the store's quarantine table holds after the run (None when the
    store failed before it could be asked)."""
    warnings: list[str] = field(default_factory=list)
    """Things the API itself does not let a sync see in full (nothing a rerun could fix)."""
    elapsed: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether everything in the window was stored (and the checkpoint moved)."""
        return not self.errors and self.store_error is None

    @property
    def quarantined(self) -> int:
        """Rows this run put aside in the quarantine table instead of storing them."""
        return sum(changes.quarantined for changes in
                   (self.conversations, self.messages, self.people, self.operators))

    @property
    def calls(self) -> int:
        """Every call this sync made (operators included)."""
        return (self.listing_calls + self.message_calls + self.people_calls
                + self.recheck_calls + 1)


class StopSignal(Protocol):
    """What tells a run to stop early (a `threading.Event` is one)."""

    def is_set(self) -> bool:
        """Whether the run should stop."""
        ...


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """How far a website's sync has come, for a progress bar (``on_progress``)."""

    conversations: int
    """Conversations handled so far (stored, unchanged or failed)."""
    window: float | None
    """The share of the window's time span walked so far (0 to 1), or None where its start
    is unknown (a first run: Crisp's listing gives no count and no oldest date)."""


def sync_website(
    client: Crisp,
    website_id: str,
    store: SyncStore,
    *,
    workers: int = 8,
    overlap_ms: int = DEFAULT_OVERLAP_MS,
    people: bool = True,
    people_interval: float = DEFAULT_PEOPLE_INTERVAL,
    operators: bool = True,
    on_progress: Callable[[SyncProgress], None] | None = None,
    now_ms: Callable[[], int] | None = None,
    stop: StopSignal | None = None,
) -> SyncReport:
    """Bring ``store``'s copy of ``website_id`` up to date; see the module docstring.

    ``workers`` threads fetch messages in parallel, sharing ``client`` (its pool, rate limit,
    cache and retries). ``people_interval`` is the seconds between full people listings
    (``0``: every run). ``on_progress`` is called after each conversation handled and once
    when the listing is done (for a progress bar); ``now_ms`` replaces this machine's clock
    (epoch ms). Once ``stop`` is set (a service shutting down), no further conversation is
    started: those in flight finish, and the run ends incomplete, its checkpoint where it
    was. Errors of the listing or of the store's lock raise (`RouteError`,
    `WebsiteLockedError`, `StoreError`), and so do those of the people and operators listings,
    once the conversations are over; a conversation that fails is recorded in ``errors`` and
    leaves the checkpoint where it was, and one that failed on a spent daily quota ends the
    website in its `QuotaSpentError` (nothing more can be read today).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if overlap_ms < 0:
        raise ValueError(f"overlap_ms must not be negative, got {overlap_ms}")
    if not people_interval >= 0:
        raise ValueError(f"people_interval must be >= 0 seconds, got {people_interval}")
    started = time.monotonic()
    clock = now_ms or _now_ms
    with store.lock(website_id):
        checkpoint = store.checkpoint(website_id)
        report = SyncReport(
            website_id, None if checkpoint is None else max(0, checkpoint - overlap_ms)
        )
        listing = _Listing(client, website_id, report)
        halted = threading.Event()
        beside: list[Callable[[], None]] = []
        if people:
            beside.append(lambda: _sync_people(
                client, store, report, people_interval, clock,
                halted=lambda: halted.is_set() or (stop is not None and stop.is_set())))
        if operators:
            beside.append(lambda: _sync_operators(client, store, report))
        _sync_conversations(
            client,
            store,
            listing,
            report,
            workers=workers,
            on_progress=on_progress,
            stop=stop,
            beside=beside,
            halted=halted,
        )
        if report.complete and listing.high_water is not None:
            report.checkpoint_ms = min(listing.high_water, listing.clock_cap(clock()))
            store.set_checkpoint(website_id, report.checkpoint_ms)
        if report.store_error is None:
            report.quarantine_held = store.quarantined(website_id)
    report.elapsed = time.monotonic() - started
    return report


def _sync_conversations(
    client: Crisp,
    store: SyncStore,
    listing: _Listing,
    report: SyncReport,
    *,
    workers: int,
    on_progress: Callable[[SyncProgress], None] | None,
    stop: StopSignal | None,
    beside: Sequence[Callable[[], None]],
    halted: threading.Event,
) -> None:
    """Fetch and save every changed conversation of the window in ``workers`` threads.

    The work ``beside`` them (the people and operators listings) is handed to the same
    threads as soon as the listing's first page is in, ahead of its conversations, so that it
    runs beside them instead of after the last one (two round trips of a website's seven at
    500 ms an answer), and the run never has more than ``workers`` requests in flight. Not
    before that page: a listing Crisp refuses sends nothing more, and after a spent daily
    quota the run's one probe is the listing's request. ``halted`` is set once the
    conversations stop early (a stop, a store that cannot be written) or fail, so that work
    beside them stops between pages instead of paging on for a run that ends anyway. Its
    first failure is raised once the conversations are over, as it was when it ran after them
    (unless they raised first)."""
    handler = _Handler(client, store, report, listing, on_progress=on_progress,
                       workers=workers)
    futures: list[Future[None]] = []
    side: list[Future[None]] | None = None
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="crisp-sync") as pool:
            try:
                for unchanged, changed in _pages_with_states(listing, store,
                                                              report.website_id):
                    if side is None:
                        side = [pool.submit(work) for work in beside]
                    if not _hand_out(unchanged, changed, handler=handler, pool=pool,
                                     futures=futures, report=report, stop=stop):
                        halted.set()
                        break
                else:
                    if side is None:  # an empty window
                        side = [pool.submit(work) for work in beside]
            except BaseException:
                halted.set()
                for future in futures:
                    future.cancel()
                raise
    finally:
        handler.close()  # every conversation handed to the writer is saved (or failed) now
    if handler.spent is not None:  # the run cannot go on today: said as such, not as failures
        raise handler.spent
    for failure in (future.exception() for future in side or ()):
        if failure is not None:
            raise failure
    for future in futures:  # handle() reports its own failures; anything else is read here
        failure = None if future.cancelled() else future.exception()
        if failure is not None:
            report.errors.append(f"worker: {describe(failure)}")
    if handler.writer is not None and handler.writer.failure is not None:
        report.errors.append(f"writer: {describe(handler.writer.failure)}")
    if listing.walked:
        handler.progress.done()


def _hand_out(
    unchanged: list[Mapping[str, Any]],
    changed: list[tuple[Mapping[str, Any], ConversationState | None]],
    *,
    handler: _Handler,
    pool: ThreadPoolExecutor,
    futures: list[Future[None]],
    report: SyncReport,
    stop: StopSignal | None,
) -> bool:
    """Count a page's unchanged conversations handled (no worker needed) and hand each
    changed one to the workers, in listing order; False once the run must stop handing out
    work (`_may_go_on`)."""
    if not _may_go_on(report, futures, stop):
        return False
    report.conversations_seen += len(unchanged)
    handler.progress.handled(unchanged)
    for conversation, state in changed:
        if not _may_go_on(report, futures, stop):
            return False
        report.conversations_seen += 1
        handler.room.take()
        futures.append(pool.submit(handler.handle, conversation, state))
    return True


def _may_go_on(report: SyncReport, futures: list[Future[None]], stop: StopSignal | None
               ) -> bool:
    """Whether the run may hand out more work: not once the store cannot take more (no more
    requests are spent), nor once a stop was asked (queued work is then cancelled; running
    work finishes)."""
    if report.store_error is not None and report.store_error.permanent:
        return False
    if stop is not None and stop.is_set():
        report.errors.append("stopped before the end of the window")
        for future in futures:
            future.cancel()
        return False
    return True


class _Handler:
    """What the workers do with each conversation listed: read it, have it saved, and count
    it handled (saved, unchanged or failed) in the report, under one lock.

    A store that commits many conversations at once (`GroupCommit`) gets them from one writer
    thread (`crisp_api.sync.writer`): workers hand over what they read and go on. Any other
    store is written by the worker that read the conversation.
    """

    def __init__(
        self,
        client: Crisp,
        store: SyncStore,
        report: SyncReport,
        listing: _Listing,
        *,
        on_progress: Callable[[SyncProgress], None] | None,
        workers: int,
    ) -> None:
        self._client, self._store, self._report = client, store, report
        self._signal = client.website.partial_signal()
        self._lock = threading.Lock()
        self._walks = _Walks(report.walked)
        self.progress = _Progress(listing, on_progress)
        self.room = _Handover(high=2 * workers, low=workers)
        self.writer = (GroupWriter(store.saving_together, self._finish)
                       if isinstance(store, GroupCommit) else None)
        self.spent: QuotaSpentError | None = None
        """The first conversation that failed on a spent daily quota: the run's end."""

    def handle(self, conversation: Mapping[str, Any], state: ConversationState | None
               ) -> None:
        """Read ``conversation`` (``state``: what the store holds of it, None to ask it) and
        save it (or hand it to the writer)."""
        store, website_id = self._store, self._report.website_id
        try:
            read = _read_conversation(self._client, store, website_id, conversation,
                                      self._signal, state=state)
        except Exception as exc:  # every failure is this conversation's, and is reported
            self._finish(conversation, exc)
            return
        if read is None:
            self._finish(conversation, _UNCHANGED)
        elif self.writer is not None:
            self.writer.put(conversation, lambda: read.save(store, website_id))
        else:
            try:
                outcome: _Outcome | BaseException = read.save(store, website_id)
            except Exception as exc:  # reported as this conversation's
                outcome = exc
            self._finish(conversation, outcome)

    def close(self) -> None:
        """Wait for the writer to save what it was handed, if there is one."""
        if self.writer is not None:
            self.writer.close()

    def _finish(self, conversation: Mapping[str, Any], outcome: _Outcome | BaseException
                ) -> None:
        """Count a conversation handled, and make room for the listing to hand over one more."""
        report = self._report
        try:
            with self._lock:
                if isinstance(outcome, BaseException):
                    _record_failure(report, conversation.get("session_id"), outcome)
                    if isinstance(outcome, QuotaSpentError) and self.spent is None:
                        self.spent = outcome
                else:
                    report.conversations_fetched += outcome.fetched
                    report.message_calls += outcome.calls
                    report.conversations += outcome.conversation
                    report.messages += outcome.messages
                    report.warnings += outcome.warnings
                    self._walks.note(conversation.get("session_id"), outcome.walk)
            self.progress.handled((conversation,))
        finally:
            self.room.give_back()

class _Handover:
    """How many conversations the listing has handed to the workers and they have not yet
    handled: at most ``high``. Once full, the listing waits until only ``low`` remain, so
    workers wake it once per ``high - low`` conversations done, not once each (every
    wake-up is a thread hand-off, which costs a sync more CPU than the bookkeeping)."""

    def __init__(self, *, high: int, low: int) -> None:
        self._high, self._low = high, low
        self._handed = 0
        self._waiting = False
        self._changed = threading.Condition(threading.Lock())

    def take(self) -> None:
        """Count one more handed over, first waiting for room if there is none."""
        with self._changed:
            if self._handed >= self._high:
                self._waiting = True
                self._changed.wait_for(lambda: self._handed <= self._low)
                self._waiting = False
            self._handed += 1

    def give_back(self, _: object = None) -> None:
        """Count one handled (or cancelled); wake the listing if it waits and may go on."""
        with self._changed:
            self._handed -= 1
            if self._waiting and self._handed <= self._low:
                self._changed.notify()


class _Walks:
    """Notes the conversations a sync read in ``walked``, up to `MAX_WALKED` fingerprints in
    all (not thread-safe: called under the sync's lock)."""

    def __init__(self, walked: dict[str, Walk]) -> None:
        self._walked = walked
        self._room = MAX_WALKED

    def note(self, session_id: object, walk: Walk | None) -> None:
        if walk is not None and len(walk.fingerprints) <= self._room:
            self._room -= len(walk.fingerprints)
            self._walked[str(session_id)] = walk


class _Progress:
    """Turns conversations handled into `SyncProgress` reports (thread-safe).

    The walk goes newest first from the first page's newest ``updated_at`` down to the window's
    start, so the share of that span behind the oldest conversation handled is the share of
    the work done, as far as anyone can know it before the listing ends.
    """

    def __init__(
        self, listing: _Listing, report: Callable[[SyncProgress], None] | None
    ) -> None:
        self._listing = listing
        self._report = report
        self._lock = threading.Lock()
        self._count = 0
        self._reached: int | None = None

    def handled(self, conversations: Sequence[Mapping[str, Any]]) -> None:
        """Count ``conversations`` handled (one report for them all; none if empty)."""
        if self._report is None or not conversations:
            return
        oldest = min((stamp for stamp in map(updated_at, conversations) if stamp is not None),
                     default=None)
        with self._lock:
            self._count += len(conversations)
            if oldest is not None and (self._reached is None or oldest < self._reached):
                self._reached = oldest
            self._report(SyncProgress(self._count, self._share()))

    def done(self) -> None:
        if self._report is None:
            return
        start = self._listing.start
        with self._lock:
            self._report(SyncProgress(self._count, None if start is None else 1.0))

    def _share(self) -> float | None:
        start, top, reached = self._listing.start, self._listing.top, self._reached
        if start is None or top is None or reached is None:
            return None
        if top <= start:
            return 1.0
        return min(1.0, max(0.0, (top - reached) / (top - start)))


def _record_failure(report: SyncReport, session_id: object, exc: BaseException) -> None:
    """Note a conversation that could not be synced; a store failure also stops the run if
    the store cannot take more (the worst one seen is kept)."""
    if isinstance(exc, StoreError):
        report.errors.append(f"{session_id}: store: {exc}")
        kept = report.store_error
        if kept is None or (exc.permanent and not kept.permanent):
            report.store_error = exc
    else:
        report.errors.append(f"{session_id}: {describe(exc)}")


@dataclass(frozen=True, slots=True)
class _Outcome:
    fetched: int
    calls: int
    conversation: Changes
    messages: Changes
    warnings: list[str]
    walk: Walk | None = None


_UNCHANGED = _Outcome(0, 0, Changes(), Changes(), [])


@dataclass(frozen=True, slots=True)
class _Read:
    """A conversation read from Crisp, to be saved: what to save, and what the read cost."""

    conversation: Mapping[str, Any]
    span: MessageSpan
    fetched: int
    calls: int
    warnings: list[str]
    whole: bool | None
    """Whether the read covers all its messages (None: nothing was read, no walk to note)."""

    def save(self, store: SyncStore, website_id: str) -> _Outcome:
        """Save it in ``store``: the conversation and its span of messages, atomically."""
        changes = store.save_conversation(website_id, self.conversation, self.span)
        if self.whole is None:
            return _Outcome(self.fetched, self.calls, changes[0], changes[1], self.warnings)
        return _Outcome(self.fetched, self.calls, changes[0], changes[1], self.warnings,
                        Walk(rows.fingerprints(self.span.messages), self.whole))


def _pages_with_states(
    listing: _Listing, store: SyncStore, website_id: str
) -> Iterator[tuple[list[Mapping[str, Any]], list[tuple[Mapping[str, Any],
                                                        ConversationState | None]]]]:
    """Each page of the window as its conversations the store holds unchanged since they were
    stored (nothing to do but count them), and the others in listing order, each with what
    the store holds of it. That is read a whole page at a time when the store can
    (`BatchStates`); otherwise, or if that read failed, the state is None: the worker then
    reads it alone, and a failure there is the conversation's."""
    batch = store if isinstance(store, BatchStates) else None
    for page in listing:
        read = None
        if batch is not None:
            with suppress(StoreError):  # each worker then reads its conversation's alone
                read = _page_states(batch, website_id, page)
        yield read if read is not None else ([], [(row, None) for row in page])


def _page_states(
    store: BatchStates, website_id: str, page: list[dict[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[tuple[Mapping[str, Any], ConversationState | None]]]:
    """A page's unchanged conversations, and the others with their states. The store says
    which of the page's conversations are stale, with what it holds of them
    (`BatchStates.stale_of`: nothing comes back for a page found unchanged); rows it cannot be
    asked about (an ``updated_at`` that is no 64-bit integer) have what it holds read apart.
    Each row then not found unchanged is judged as `_unchanged` judges it (a repeated id is
    asked about at its newest stamp), and the newest stored message is read for the changed."""
    listed: dict[str, int] = {}
    odd: list[str] = []
    for row in page:
        sid, stamp = row.get("session_id"), row.get("updated_at")
        if not isinstance(sid, str):
            continue
        if type(stamp) is int and rows.KEY_MIN <= stamp <= rows.KEY_MAX:
            if listed.get(sid, stamp) <= stamp:  # a repeated id: its newest stamp
                listed[sid] = stamp
        else:
            odd.append(sid)
    stored = store.stale_of(website_id, listed) if listed else {}
    if odd:
        stored.update(store.updated_at_of(website_id, odd))
    unchanged: list[Mapping[str, Any]] = []
    changed: list[tuple[Mapping[str, Any], str | None]] = []
    for row in page:
        sid = row.get("session_id")
        if not isinstance(sid, str):
            changed.append((row, None))
        elif (sid in listed and sid not in stored) or _not_newer(row.get("updated_at"),
                                                                 stored.get(sid)):
            unchanged.append(row)
        else:
            changed.append((row, sid))
    wanted = [sid for _, sid in changed if sid is not None]
    newest = store.newest_messages(website_id, wanted) if wanted else {}
    return unchanged, [
        (row, None if sid is None else ConversationState(stored.get(sid), newest.get(sid)))
        for row, sid in changed
    ]


def _unchanged(conversation: Mapping[str, Any], state: ConversationState) -> bool:
    """Whether the store holds ``conversation`` as listed (not updated since it was saved)."""
    return _not_newer(conversation.get("updated_at"), state.updated_at)


def _not_newer(stamp: object, stored: int | None) -> bool:
    """Whether a listed ``updated_at`` is no newer than the one stored (None: not stored);
    one that is no integer is never unchanged (a bool is no timestamp)."""
    return stored is not None and type(stamp) is int and stamp <= stored


def _read_conversation(
    client: Crisp,
    store: SyncStore,
    website_id: str,
    conversation: Mapping[str, Any],
    signal: PartialSignal,
    *,
    state: ConversationState | None,
) -> _Read | None:
    """Fetch one conversation's new (and edited, and removed) messages, unless it has not
    changed since it was stored (None); ``state`` is what the store holds of it (None: ask
    the store)."""
    session_id = conversation.get("session_id")
    if not isinstance(session_id, str) or not rows.is_key(session_id):
        # Nothing a store can key it by: the store puts the listed row aside, and the run
        # goes on (its messages could not be stored under that session either).
        return _Read(conversation, MessageSpan([], None), 0, 0, [], None)
    if state is None:
        state = store.conversation_state(website_id, session_id)
    if _unchanged(conversation, state):
        return None
    after = state.newest_message
    calls = 0
    fetch_page = client.website.message_page_fetcher(website_id, session_id, use_cache=False)

    def fetch(before: int | None) -> tuple[Any, int | None]:
        nonlocal calls
        calls += 1
        return fetch_page(before)

    messages: list[Any] = []
    crowded: list[int] = []
    last_page = None
    for page in walk_messages(fetch, after=after, signal=signal):
        messages += page.messages
        if page.crowded is not None:
            crowded.append(page.crowded)
        last_page = page
    # What was read covers the whole conversation, unless the walk stopped at known messages:
    # then it covers every message newer than the oldest one of its last page.
    since = _covered_since(last_page, after)
    warnings = []
    if crowded:
        # Crisp pages by timestamp: past a full page of one millisecond, the rest is unseen.
        since = max([*crowded, *([] if since is None else [since])])
        warnings = [
            f"{session_id}: more than a page of messages share timestamp {stamp}; "
            "those beyond one page cannot be listed through the API"
            for stamp in crowded
        ]
    # Messages newer than the conversation as listed were not visible to this read (they
    # may have been stored from live events meanwhile): the store does not judge them.
    listed = conversation.get("updated_at")
    until = listed if isinstance(listed, int) and not isinstance(listed, bool) else None
    return _Read(conversation, MessageSpan(messages, since, until), 1, calls, warnings,
                 since is None)


def _covered_since(last_page: MessagePage | None, after: int | None) -> int | None:
    """What a walk's pages cover: the whole conversation (None), unless the walk stopped at
    known messages; then every message newer than the oldest one of its last page."""
    if last_page is None or last_page.last or after is None or last_page.oldest > after:
        return None
    return last_page.oldest


class _Listing:
    """The conversations of the window, newest first, each once; notes the watermark.

    ``high_water`` is the largest ``updated_at`` read (Crisp's clock) and ``server_time`` the
    ``Date`` of the first answer, if the server sent one.
    """

    def __init__(self, client: Caller, website_id: str, report: SyncReport) -> None:
        self._client = client
        self._website_id = website_id
        self._report = report
        self.high_water: int | None = None
        self.server_time: int | None = None
        self.start = report.window_start_ms
        self.top: int | None = None
        """The newest ``updated_at`` of the first page: where the walk began."""
        self.walked = False
        """Whether the walk reached the window's end."""

    def clock_cap(self, local_now: int) -> int:
        """The latest watermark the clocks allow: a stamp beyond it is Crisp's error, and
        trusting it would skip every change until that time comes."""
        if self.server_time is None:
            return local_now
        return max(local_now, self.server_time + CLOCK_MARGIN_MS)

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        """The window's conversations, a listing page at a time."""
        for page in walk_conversations(self._fetch, self.start, per_page=PER_PAGE):
            newest = page.newest
            if newest is not None and (self.high_water is None or newest > self.high_water):
                self.high_water = newest
            if self.top is None:
                self.top = self.high_water
            yield page.conversations
            self.walked = page.last

    def _fetch(self, page_number: int, query: Mapping[str, QueryValue]) -> Any:
        """One page of the website's conversation list; counts the call, and notes the
        server's clock from the first answer."""
        answer = self._client.fetch(
            _CONVERSATIONS, (self._website_id, page_number), query, use_cache=False
        )
        self._report.listing_calls += 1
        if self.server_time is None:
            self.server_time = answer.server_time_ms
        return answer.data


def _sync_people(
    client: Crisp,
    store: SyncStore,
    report: SyncReport,
    interval: float,
    clock: Callable[[], int],
    *,
    halted: Callable[[], bool] = lambda: False,
) -> None:
    """List every people profile if the last full listing is older than ``interval``; a
    listing ``halted`` between two pages is not counted as full (the next run lists again)."""
    website_id = report.website_id
    listed_at = store.people_listed_at(website_id)
    began = clock()
    if interval and listed_at is not None and began - listed_at < interval * 1000:
        return
    calls = 0

    def list_profiles(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return client.website.list_people_profiles(*args, **kwargs)

    page: list[Mapping[str, Any]] = []
    try:
        for row in paginate(list_profiles, website_id, per_page=PER_PAGE, use_cache=False):
            page.append(_dict(row, "people profiles"))
            if len(page) == PER_PAGE:
                report.people += store.save_people(website_id, page)
                page = []
                if halted():
                    return
        if page:
            report.people += store.save_people(website_id, page)
    finally:
        report.people_calls += calls
    store.set_people_listed_at(website_id, began)
    report.people_listed = True


def _sync_operators(client: Crisp, store: SyncStore, report: SyncReport) -> None:
    """Save the website's operators (one request: Crisp does not page them)."""
    website_id = report.website_id
    listed = client.website.list_website_operators(website_id, use_cache=False)
    report.operators += store.save_operators(website_id, _dicts(listed, "operators"))


def describe(exc: BaseException) -> str:
    """One line naming what failed: the error's class and message, no traceback."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dict(row: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(row, dict):
        raise InvalidResponseError(f"{what}: a row that is not an object")
    return row


def _dicts(listed: Any, what: str) -> list[Mapping[str, Any]]:
    if not isinstance(listed, list):
        raise InvalidResponseError(f"{what}: the listing is not a list")
    return [_dict(row, what) for row in listed]


def _now_ms() -> int:
    return int(time.time() * 1000)
