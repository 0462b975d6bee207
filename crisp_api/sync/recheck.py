"""Live events are hints; Crisp's REST answers are the truth: confirming what events touched.

An event may be replayed, reordered, lost, or simply wrong (naming a session Crisp does not
have, a bogus state, the removal of a message Crisp still has), and an incremental sync does
not see what it did: the conversation's ``updated_at`` did not move, or the message it
touched is older than the newest page. So every conversation an event touched is remembered
(`Touched`) until a reconciliation has read it again through the REST API
(`recheck_website`):

- the conversation itself, stored as Crisp serves it (or removed, with its messages, if
  Crisp answers 404);
- its messages, from the newest back to the newest one a sync had read, and further back
  until every message the events named was met: an edit of a message from last year walks
  back to it. The span read replaces what is stored in it (`MessageSpan`), so a message an
  event removed comes back if Crisp still has it, and one an event invented goes;
- all of its messages when an event of it was dropped (`Touched.note` with ``full``).

A conversation touched again while it was being read stays remembered for the next
reconciliation.

The reconciliation's own incremental sync often read the conversation already: an event's
change moves its ``updated_at``. Reading it again would double the cost for nothing, so it is
skipped when that read covers every event of it (`covered`): the events were all noted before
the sync began (their `Touch.generation` is at most ``noted_before``), and the sync's walk
(`crisp_api.sync.engine.Walk`) met every message they named, and read the whole conversation
if an event was dropped. An event noted after the sync began, an edit of a message older than
the walk reached, the removal of a message (Crisp no longer has it, so no walk meets it) are
still read again. The requests this costs are counted in the website's `SyncReport`
(``rechecked``, ``recheck_calls``), and the conversations skipped (``recheck_covered``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crisp_api.errors import InvalidResponseError, NotFoundError
from crisp_api.pagination import PartialSignal, walk_messages
from crisp_api.sync.engine import StopSignal, SyncReport, Walk, describe
from crisp_api.sync.store import Changes, MessageSpan, Store, StoreError

if TYPE_CHECKING:
    from crisp_api.client import Crisp


MAX_NAMED_MESSAGES = 100
"""Messages of one conversation remembered by fingerprint at most; past that, the whole
conversation is read again (and only those remembered are removed if Crisp lacks them)."""


@dataclass
class Touch:
    """What events did to one conversation since it was last confirmed."""

    fingerprints: set[int] = field(default_factory=set)
    """The messages they named."""
    full: bool = False
    """Whether every message must be read again (an event of it was dropped)."""
    generation: int = 0
    """Bumped by each event, so a confirmation does not forget a later one."""


class Touched:
    """The conversations live events touched, by website and session id; thread-safe."""

    def __init__(self) -> None:
        self._touches: dict[str, dict[str, Touch]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def note(self, website_id: str, session_id: str, fingerprint: int | None = None, *,
             full: bool = False) -> None:
        """Remember that an event touched a conversation (and message ``fingerprint``)."""
        with self._lock:
            self._generation += 1
            touch = self._touches.setdefault(website_id, {}).setdefault(session_id, Touch())
            if fingerprint is not None:
                if len(touch.fingerprints) < MAX_NAMED_MESSAGES:
                    touch.fingerprints.add(fingerprint)
                elif fingerprint not in touch.fingerprints:
                    full = True
            touch.full = touch.full or full
            touch.generation = self._generation

    @property
    def generation(self) -> int:
        """The generation of the latest touch noted (0 before any): taken before a sync
        begins, it tells the touches noted before it (`recheck_website`'s ``noted_before``)."""
        with self._lock:
            return self._generation

    def of_website(self, website_id: str) -> dict[str, Touch]:
        """A copy of the touches of ``website_id``, by session id."""
        with self._lock:
            return {session_id: Touch(set(touch.fingerprints), touch.full, touch.generation)
                    for session_id, touch in self._touches.get(website_id, {}).items()}

    def confirm(self, website_id: str, confirmed: Mapping[str, Touch]) -> None:
        """Forget the conversations ``confirmed`` (as copied by `of_website`), unless an
        event touched them again since."""
        with self._lock:
            touches = self._touches.get(website_id, {})
            for session_id, seen in confirmed.items():
                touch = touches.get(session_id)
                if touch is not None and touch.generation == seen.generation:
                    del touches[session_id]
            if not touches:
                self._touches.pop(website_id, None)

    def keep_only(self, website_ids: Iterable[str]) -> None:
        """Forget the websites not in ``website_ids`` (no longer synced by this worker)."""
        kept = set(website_ids)
        with self._lock:
            for website_id in [w for w in self._touches if w not in kept]:
                del self._touches[website_id]

    def __len__(self) -> int:
        """Conversations remembered."""
        with self._lock:
            return sum(len(touches) for touches in self._touches.values())


def recheck_website(
    client: Crisp,
    store: Store,
    report: SyncReport,
    touches: Mapping[str, Touch],
    stop: StopSignal | None = None,
    *,
    noted_before: int | None = None,
    workers: int = 8,
) -> dict[str, Touch]:
    """Read again every conversation of ``touches`` (of ``report``'s website) from the REST
    API, in ``workers`` threads, and store it as read (see the module docstring), unless
    ``report``'s sync, begun after the touches up to generation ``noted_before`` were noted,
    read it far enough (`covered`); the touches confirmed. Counts go to ``report``; a
    conversation that fails is recorded in its ``errors`` (a store failure also in
    ``store_error``) and stays to be confirmed."""
    signal = client.website.partial_signal()
    confirmed = {session_id: touch for session_id, touch in touches.items()
                 if noted_before is not None
                 and covered(touch, report.walked.get(session_id), noted_before)}
    report.recheck_covered += len(confirmed)
    lock = threading.Lock()

    def handle(session_id: str, touch: Touch) -> None:
        if stop is not None and stop.is_set():
            return
        read = _Read(client, store, report.website_id, session_id, signal)
        try:
            conversation, messages = read.again(touch)
        except Exception as exc:  # this conversation's failure: reported, retried next time
            with lock:
                report.errors.append(f"{session_id}: recheck: {describe(exc)}")
                if isinstance(exc, StoreError) and report.store_error is None:
                    report.store_error = exc
        else:
            with lock:
                report.conversations += conversation
                report.messages += messages
                confirmed[session_id] = touch
        finally:
            with lock:
                report.rechecked += 1
                report.recheck_calls += read.calls

    with ThreadPoolExecutor(workers, thread_name_prefix="crisp-sync-recheck") as pool:
        for done in [pool.submit(handle, session_id, touch)
                     for session_id, touch in touches.items() if session_id not in confirmed]:
            done.result()
    return confirmed


def covered(touch: Touch, walk: Walk | None, noted_before: int) -> bool:
    """Whether a sync's read of a conversation (``walk``; None if it did not read it), begun
    after the touches up to generation ``noted_before`` were noted, stored as Crisp serves
    it all that ``touch`` asks to read again."""
    return (walk is not None and touch.generation <= noted_before
            and touch.fingerprints <= walk.fingerprints and (walk.whole or not touch.full))


class _Read:
    """One conversation read again; ``calls`` counts the requests it made."""

    def __init__(self, client: Crisp, store: Store, website_id: str, session_id: str,
                 signal: PartialSignal) -> None:
        self.client = client
        self.store = store
        self.website_id = website_id
        self.session_id = session_id
        self.signal = signal
        self.calls = 0
        self._fetch_page = client.website.message_page_fetcher(website_id, session_id,
                                                               use_cache=False)

    def again(self, touch: Touch) -> tuple[Changes, Changes]:
        """Store the conversation and the span of messages ``touch`` asks for, as Crisp
        serves them; (conversation, message) changes."""
        website_id, session_id, store = self.website_id, self.session_id, self.store
        self.calls += 1
        try:
            conversation = self.client.website.get_conversation(website_id, session_id,
                                                                use_cache=False)
        except NotFoundError:  # an event named a conversation Crisp does not have
            return store.remove_conversation(website_id, session_id), Changes()
        if not isinstance(conversation, Mapping):
            raise InvalidResponseError("conversation: the answer is not an object")
        after = None if touch.full else store.conversation_state(
            website_id, session_id).newest_message
        messages, since, missing = self._messages(touch.fingerprints, after)
        listed = conversation.get("updated_at")
        until = listed if isinstance(listed, int) and not isinstance(listed, bool) else None
        changes, message_changes = store.save_conversation(
            website_id, conversation, MessageSpan(messages, since, until))
        for fingerprint in missing:  # named by events, absent from the whole conversation
            message_changes += store.remove_message(website_id, session_id, fingerprint)
        return changes, message_changes

    def _messages(self, named: set[int], after: int | None
                  ) -> tuple[list[Any], int | None, set[int]]:
        """The messages newer than ``after`` and back to every message ``named``; where
        they cover from (`MessageSpan.since`); and the named ones the whole conversation
        lacks (empty unless it was read whole)."""
        wanted = set(named)
        messages: list[Any] = []
        crowded: list[int] = []
        since = None
        for page in walk_messages(self._fetch, signal=self.signal):
            messages += page.messages
            wanted.difference_update(_fingerprints(page.messages))
            if page.crowded is not None:
                crowded.append(page.crowded)
            if not page.last and not wanted and after is not None and page.oldest <= after:
                since = page.oldest
                break
        if crowded:  # past a full page of one millisecond, the rest cannot be listed
            since = max([*crowded, *([] if since is None else [since])])
            wanted = set()
        return messages, since, wanted if since is None else set()

    def _fetch(self, before: int | None) -> tuple[Any, int | None]:
        self.calls += 1
        return self._fetch_page(before)


def _fingerprints(messages: Iterable[Any]) -> set[Any]:
    return {message.get("fingerprint") for message in messages if isinstance(message, dict)}
