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
(`Store.save_message`), so a reconciliation still walks back to what the events missed.
People profiles are read again through the REST API on ``people:profile:*`` events, since an
update event need not carry the whole profile.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

from crisp_api.events import EVENTS
from crisp_api.sync.store import Changes, Store

MESSAGE_EVENTS = frozenset({"message:send", "message:received"})
"""Events carrying a whole message."""

_SESSION_FIELDS = {"session:set_state": "state", "session:set_segments": "segments"}
"""Session events that set one field of the conversation, and which."""

Profile = Callable[[str, str], Mapping[str, Any] | None]
"""Reads a people profile (website id, people id) through the REST API; None if it is gone."""


class Target(NamedTuple):
    """What an event touches: a conversation, and one of its messages if it names one."""

    website_id: str
    session_id: str
    fingerprint: int | None


class InvalidEventError(ValueError):
    """An event whose payload lacks what applying it needs (named in the message)."""


class EventApplier:
    """Applies events of ``website_ids`` (None: any website) to ``store``; thread-safe.

    ``profile`` reads a people profile when a ``people:profile:created/updated`` event
    arrives. ``applied`` counts the events applied by name, ``ignored`` those of other
    websites or names, ``invalid`` those that could not be applied (see `apply`).
    """

    def __init__(
        self, store: Store, website_ids: Collection[str] | None, profile: Profile
    ) -> None:
        self.store = store
        self.website_ids = None if website_ids is None else frozenset(website_ids)
        self.profile = profile
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
        if self.website_ids is not None and website_id not in self.website_ids:
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
        if self.website_ids is not None and website_id not in self.website_ids:
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
            profile = self.profile(website_id, people_id)
            if profile is None:  # gone again before we read it
                return store.remove_person(website_id, people_id)
            return store.save_people(website_id, [{**profile, "people_id": people_id}])
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
