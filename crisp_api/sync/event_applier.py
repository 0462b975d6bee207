"""Applying Crisp's real-time events to a store: the live half of follow mode.

Crisp delivers the same events over its RTM socket and as web hooks; both go through
`EventApplier.apply`, one event at a time; it applies every event `crisp_api.events`
supports (`EVENTS`). Applying an event twice changes nothing (every
store operation it uses is an idempotent upsert, merge or delete), so an event delivered by
both channels, or again after a reconnect, is harmless. Events of websites this worker does
not sync are ignored.

What the events cannot do is make the copy exact on their own: a dropped socket loses what
was sent meanwhile. The periodic incremental run (the reconciliation) covers that; and the
store keeps a message stored from an event from counting as read by a sync
(`EventSink.save_message`), so a reconciliation still walks back to what the events missed.
People profiles are read again through the REST API on ``people:profile:*`` events, since an
update event need not carry the whole profile. While Crisp's daily quota is spent those reads
cannot be made: the profiles wait in a bounded queue (`DeferredProfiles`) until it resets.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

from crisp_api.errors import QuotaSpentError
from crisp_api.events import EVENTS
from crisp_api.sync.store import Changes, EventSink

MESSAGE_EVENTS = frozenset({"message:send", "message:received"})
"""Events carrying a whole message."""

_SESSION_FIELDS = {"session:set_state": "state", "session:set_segments": "segments"}
"""Session events that set one field of the conversation, and which."""

Profile = Callable[[str, str], Mapping[str, Any] | None]
"""Reads a people profile (website id, people id) through the REST API; None if it is gone."""
Wants = Callable[[str], bool]
"""Whether this worker syncs a website (by id): its events are applied."""
MAX_DEFERRED_PROFILES = 10_000
"""Profile reads waiting for Crisp's daily quota to reset at most; more are not queued
(counted and logged: the next full people listing reads them, see ``--people-interval``)."""

logger = logging.getLogger(__name__)


def _any(website_id: str) -> bool:
    """Every website is wanted."""
    return True


class DeferredProfiles:
    """People profiles that events asked to read while Crisp's daily quota was spent, each
    once (by website and people id), oldest first, at most ``bound``; thread-safe.
    ``overflowed`` counts those not queued because it was full."""

    def __init__(self, bound: int = MAX_DEFERRED_PROFILES) -> None:
        self.bound = bound
        self._lock = threading.Lock()
        self._queue: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, website_id: str, people_id: str) -> None:
        key = (website_id, people_id)
        with self._lock:
            if key in self._queue:
                return
            if len(self._queue) >= self.bound:
                self.overflowed += 1
                first = self.overflowed == 1
            else:
                self._queue[key] = None
                return
        if first or self.overflowed % 1000 == 0:
            logger.warning("%d profile read(s) not queued while the quota is spent (the "
                           "queue holds %d): the next full people listing reads them",
                           self.overflowed, self.bound)

    def read_all(self, applier: EventApplier) -> int:
        """Read and save every queued profile, oldest first; the number read. Raises
        `QuotaSpentError` if the quota is spent again (what is left stays queued)."""
        done = 0
        while True:
            with self._lock:
                if not self._queue:
                    return done
                website_id, people_id = next(iter(self._queue))
            applier.refresh_profile(website_id, people_id)
            with self._lock:
                self._queue.pop((website_id, people_id), None)
            done += 1


class Target(NamedTuple):
    """What an event touches: a conversation, and one of its messages if it names one."""

    website_id: str
    session_id: str
    fingerprint: int | None


class InvalidEventError(ValueError):
    """An event whose payload lacks what applying it needs (named in the message)."""


class EventApplier:
    """Applies the events of the websites it ``wants`` to ``store``; thread-safe.

    ``wants(website_id)`` is asked at each event, so the websites this worker syncs may
    change while it runs (a fleet's share, websites connected since it started); a
    collection of website ids stands for a fixed choice, None for any website. ``profile``
    reads a people profile when a ``people:profile:created/updated`` event arrives.
    ``applied`` counts the events applied by name, ``ignored`` those of other websites or
    names, ``invalid`` those that could not be applied (see `apply`).
    """

    def __init__(
        self, store: EventSink, wants: Wants | Collection[str] | None, profile: Profile
    ) -> None:
        self.store = store
        self.wants: Wants = (
            _any if wants is None else wants if callable(wants) else frozenset(wants).__contains__
        )
        self.profile = profile
        self.deferred = DeferredProfiles()
        self.applied: Counter[str] = Counter()
        self.ignored = 0
        self.invalid = 0
        self._lock = threading.Lock()

    def apply(self, name: str, data: object) -> Changes | None:
        """Apply one event; the changes it made, or None if it was not for this worker.

        Raises `InvalidEventError` (counted in ``invalid``) for a payload that is not a JSON
        object or lacks an id it needs; the store's own errors (`StoreError`) propagate.
        """
        if name not in EVENTS:
            self._ignore()
            return None
        if not isinstance(data, Mapping):
            raise self._invalid(f"{name}: the payload is not a JSON object")
        website_id = data.get("website_id")
        if not isinstance(website_id, str) or not website_id:
            raise self._invalid(f"{name}: no website_id")
        if not self.wants(website_id):
            self._ignore()
            return None
        changes = self._apply(name, website_id, data)
        with self._lock:
            self.applied[name] += 1
        return changes

    def target(self, name: str, data: object) -> Target | None:
        """The conversation (and message) an event of this worker's websites touches, to
        be confirmed through the REST API (`crisp_api.sync.recheck`); None for other
        events (people profiles are read through the REST API already)."""
        if name not in EVENTS or name.startswith("people:") or not isinstance(data, Mapping):
            return None
        website_id, session_id = data.get("website_id"), data.get("session_id")
        if not (isinstance(website_id, str) and website_id and isinstance(session_id, str)
                and session_id):
            return None
        if not self.wants(website_id):
            return None
        fingerprint = data.get("fingerprint") if name.startswith("message:") else None
        if isinstance(fingerprint, bool) or not isinstance(fingerprint, int):
            fingerprint = None
        return Target(website_id, session_id, fingerprint)

    def _apply(self, name: str, website_id: str, data: Mapping[str, Any]) -> Changes:
        store = self.store
        if name.startswith("people:"):
            people_id = self._text(name, data, "people_id")
            if name == "people:profile:removed":
                return store.remove_person(website_id, people_id)
            try:
                return self.refresh_profile(website_id, people_id)
            except QuotaSpentError:
                self.deferred.add(website_id, people_id)
                return Changes()
        session_id = self._text(name, data, "session_id")
        if name in MESSAGE_EVENTS:
            self._integer(name, data, "fingerprint")
            self._integer(name, data, "timestamp")
            return store.save_message(website_id, session_id, data)
        if name == "message:updated":
            fingerprint = self._integer(name, data, "fingerprint")
            if "content" not in data:
                raise self._invalid(f"{name}: no content")
            return store.edit_message(website_id, session_id, fingerprint, data["content"])
        if name == "message:removed":
            fingerprint = self._integer(name, data, "fingerprint")
            return store.remove_message(website_id, session_id, fingerprint)
        if name == "session:removed":
            return store.remove_conversation(website_id, session_id)
        field = _SESSION_FIELDS[name]
        if field not in data:
            raise self._invalid(f"{name}: no {field}")
        return store.update_conversation(website_id, session_id, {field: data[field]})

    def refresh_profile(self, website_id: str, people_id: str) -> Changes:
        """Read a people profile through the REST API and store it (remove it if gone)."""
        profile = self.profile(website_id, people_id)
        if profile is None:  # gone again before we read it
            return self.store.remove_person(website_id, people_id)
        return self.store.save_people(website_id, [{**profile, "people_id": people_id}])

    def _ignore(self) -> None:
        with self._lock:
            self.ignored += 1

    def _invalid(self, reason: str) -> InvalidEventError:
        with self._lock:
            self.invalid += 1
        return InvalidEventError(reason)

    def _text(self, name: str, data: Mapping[str, Any], field: str) -> str:
        value = data.get(field)
        if not isinstance(value, str) or not value:
            raise self._invalid(f"{name}: no {field}")
        return value

    def _integer(self, name: str, data: Mapping[str, Any], field: str) -> int:
        value = data.get(field)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._invalid(f"{name}: {field} is not an integer")
        return value
