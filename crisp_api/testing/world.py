"""The state of one fake: seeded websites, the clock, fingerprints, and the changes that
requests and test helpers make.

Seeding is reproducible: the same arguments (including ``now_ms``) give byte-identical data,
and a different ``now_ms`` only shifts every timestamp. Timestamps are epoch milliseconds, all
in the past of ``now_ms`` (the server start, by default).

The server's clock is not the client's: ``now_ms`` (or ``clock_offset_ms``, added to the real
time) sets it, and everything the fake stamps (seeded data, new messages, ``updated_at``
bumps, the ``Date`` header) and every date filter it applies lives in that clock alone.

Messages of a conversation are kept oldest first; several may share a millisecond and a
fingerprint is unique only within its conversation, as in Crisp. ``partial_status`` says
whether a page of messages with older ones left answers 206 (Crisp) or 200.

Every change goes through a `World` method, whether a route or a test helper asks for it, and
each of those methods announces its change as the Crisp RTM event a real server would push
(`World.emit`, the one hook: routes and helpers never publish events themselves). The events
go to ``World.events``, the fake's RTM server, when one runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from random import Random
from typing import Any, Protocol

from crisp_api.testing import generate
from crisp_api.testing.data import (
    MESSAGES_PAGE,
    STATES,
    Conversation,
    ConversationTruth,
    Message,
    OlderMessages,
    Operator,
    Website,
    draw_message,
    encode,
    new_profile,
    valid_content,
)
from crisp_api.testing.errors import conflict, invalid_data, not_found

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

FINGERPRINT_BASE = 100_000_000_000_000
FINGERPRINT_STRIDE = 1 << 16
"""Seeded conversation number ``n`` owns fingerprints ``BASE + n * STRIDE + i``."""
MAX_MEAN_MESSAGES = 10_000

SPECIAL_COUNTS = {3: 0, 5: MESSAGES_PAGE, 7: 2 * MESSAGES_PAGE, 11: 1}
"""Message counts forced by ``ordinal % 50``, so that every data set of at least 12
conversations holds the paging edge cases (empty, exactly one and two full pages, one)."""
SPECIAL_PERIOD = 50


class EventSink(Protocol):
    """Where the world's changes go as RTM events: the fake's RTM server."""

    def wants(self, name: str) -> bool:
        """Whether any socket listens to event ``name`` now (payloads are built only then)."""

    def publish(self, name: str, payload: object) -> None:
        """Push event ``name`` with ``payload`` (JSON-ready, owned by the sink from now on) to
        the sockets listening to it; called under the state lock, from any thread."""


class World:
    """Every website of the fake, the clock, fingerprints and the lock guarding them all.

    The clock starts at ``now_ms``, or at the real time plus ``clock_offset_ms`` (a server
    ahead of its clients, or behind them when negative), or at the real time.
    """

    def __init__(self, *, websites: int = 1, conversations: int = 200, messages: int = 30,
                 people: int | None = None, operators: int = 3, seed: int = 1,
                 now_ms: int | None = None, clock_offset_ms: int | None = None,
                 partial_status: bool = True) -> None:
        if websites < 1 or conversations < 0 or operators < 1 or (people is not None
                                                                   and people < 1):
            raise ValueError("need websites >= 1, conversations >= 0, operators >= 1, "
                             "people >= 1")
        if not 0 <= messages <= MAX_MEAN_MESSAGES:
            raise ValueError(f"messages must be within 0..{MAX_MEAN_MESSAGES}")
        if now_ms is not None and clock_offset_ms is not None:
            raise ValueError("give now_ms or clock_offset_ms, not both")
        self.lock = threading.Lock()
        self.seed = seed
        self.partial_status = partial_status
        self._anchor = (int(time.time() * 1000) + (clock_offset_ms or 0) if now_ms is None
                        else now_ms)
        self._started = time.monotonic()
        self._fingerprints = FINGERPRINT_BASE + websites * conversations * FINGERPRINT_STRIDE
        self._chosen_fingerprints: set[int] = set()
        rng = generate.seeded(f"crisp-fake/{seed}")
        self.plugin_id = generate.make_uuid(rng)
        self.websites: dict[str, Website] = {}
        for ordinal in range(websites):
            website = _seed_website(
                generate.seeded(f"crisp-fake/{seed}/website/{ordinal}"),
                website_id=generate.make_uuid(rng), ordinal=ordinal, seed=seed,
                conversations=conversations, mean_messages=messages,
                people=max(1, conversations // 3) if people is None else people,
                operators=operators, now=self._anchor,
            )
            self.websites[website.website_id] = website
        self.rng = generate.seeded(f"crisp-fake/{seed}/runtime")
        self.events: EventSink | None = None
        """The RTM server the changes are announced to, while one runs."""
        self.rtm_url: str | None = None
        """The RTM server's URL, answered by ``GET /plugin/connect/endpoints``."""
        self.rtm_discovery_status: int | None = None
        """The error status ``GET /plugin/connect/endpoints`` answers instead, during an RTM
        outage that a test asked for (`crisp_api.testing.service.Service.take_rtm_down`)."""

    def emit(self, name: str, payload: Callable[[], dict[str, Any]]) -> None:
        """Announce a change as RTM event ``name``; ``payload`` builds its data, and is only
        called when a socket listens (so a fake nobody listens to pays nothing). Callers hold
        the state lock, so the payload is the state right after the change."""
        sink = self.events
        if sink is not None and sink.wants(name):
            sink.publish(name, payload())

    @property
    def website_id(self) -> str:
        """The first website's id (stable for a seed)."""
        return next(iter(self.websites))

    def website(self, website_id: str | None = None) -> Website:
        """A website by id (the first one by default), or a 404 `ApiError`."""
        found = self.websites.get(self.website_id if website_id is None else website_id)
        if found is None:
            raise not_found()
        return found

    def now(self) -> int:
        """The fake's clock, in epoch milliseconds: its start (see the class) plus the time
        since."""
        return self._anchor + int((time.monotonic() - self._started) * 1000)

    def new_fingerprint(self) -> int:
        """A fingerprint never used before on this server (skipping those chosen by senders,
        so that a drawn one never repeats a chosen one in its conversation)."""
        self._fingerprints += 1
        while self._fingerprints in self._chosen_fingerprints:
            self._fingerprints += 1
        return self._fingerprints

    def new_id(self) -> str:
        """A new random UUID (drawn from the runtime generator, so reproducible too)."""
        return generate.make_uuid(self.rng)

    def bump(self, website: Website, conversation: Conversation) -> int:
        """Set ``updated_at`` to now, strictly later than before; the new value."""
        stamp = max(self.now(), conversation.updated_at + 1)
        website.set_updated(conversation, stamp)
        return stamp

    def create_conversation(self, website: Website) -> Conversation:
        """A new empty ``pending`` conversation of a new visitor, created now."""
        stamp = self.now()
        conversation = Conversation(website.website_id, "session_" + self.new_id(),
                                    self.new_id(), stamp, stamp, meta=_empty_meta())
        website.add_conversation(conversation)
        return conversation

    def add_message(self, website: Website, conversation: Conversation, *, kind: str,
                    sender: str, origin: str, content: Any, nickname: str | None = None,
                    timestamp: int | None = None, fingerprint: int | None = None) -> Message:
        """Append a message and bump the conversation (see `_stamp` and `_fingerprint` for
        ``timestamp`` and ``fingerprint``, whose refusals leave everything unchanged). The
        conversation's ``updated_at`` becomes the message's timestamp, or now if later (a
        message given an older ``timestamp`` still changes the conversation now).

        A visitor's message reopens a resolved conversation and waits for an answer; an
        operator's message takes a pending conversation to unresolved. Announced as
        ``message:send`` (from the visitor) or ``message:received`` (from an operator), then
        ``session:set_state`` if the state changed.
        """
        stamp = self._stamp(conversation, timestamp)
        chosen = self._fingerprint(conversation, fingerprint)
        updated_at = stamp if timestamp is None else max(stamp, self.now(),
                                                         conversation.updated_at + 1)
        if sender == "user":
            author = nickname or str(conversation.meta.get("nickname") or "visitor")
            author_id = conversation.session_id
        else:
            operator = website.operators[0]
            author = nickname or operator.nickname
            author_id = operator.user_id
        message = Message(chosen, stamp, kind, sender, origin, content, author, author_id)
        state = conversation.state
        conversation.messages.append(message)
        _follow(conversation, message)
        website.set_updated(conversation, updated_at)
        session_id = conversation.session_id
        self.emit("message:send" if sender == "user" else "message:received",
                  lambda: json.loads(message.encode(session_id, website.website_id)))
        if conversation.state != state:
            self._emit_state(conversation)
        return message

    def _stamp(self, conversation: Conversation, timestamp: int | None) -> int:
        """A new message's timestamp: now, but after the conversation's last change and its
        newest message; or ``timestamp``, which may equal the newest message's (messages
        sharing a millisecond) but not precede it (400: the list stays sorted)."""
        messages = conversation.messages
        newest = messages[-1].timestamp if messages else None
        if timestamp is not None:
            if timestamp < 0 or (newest is not None and timestamp < newest):
                raise invalid_data()
            return timestamp
        stamp = max(self.now(), conversation.updated_at + 1)
        return stamp if newest is None else max(stamp, newest + 1)

    def _fingerprint(self, conversation: Conversation, fingerprint: int | None) -> int:
        """A new message's fingerprint: a new one, or ``fingerprint``, which another
        conversation may already hold but this one must not (409)."""
        if fingerprint is None:
            return self.new_fingerprint()
        if fingerprint < 0:
            raise invalid_data()
        if any(message.fingerprint == fingerprint for message in conversation.messages):
            raise conflict()
        self._chosen_fingerprints.add(fingerprint)
        return fingerprint

    @staticmethod
    def find_message(conversation: Conversation, fingerprint: int) -> Message:
        """The conversation's message with ``fingerprint``, or a 404 `ApiError`."""
        for message in conversation.messages:
            if message.fingerprint == fingerprint:
                return message
        raise not_found()

    def edit_message(self, website: Website, conversation: Conversation, message: Message,
                     content: Any) -> None:
        """Replace a message's content (400 if it does not suit the message's type), mark it
        edited and bump the conversation; announced as ``message:updated``."""
        if not valid_content(message.type, content):
            raise invalid_data()
        message.content = content
        message.edited = True
        message.encoded = None
        self.bump(website, conversation)
        self.emit("message:updated", lambda: {
            **_session(conversation), "fingerprint": message.fingerprint,
            "content": _snapshot(content)})

    def remove_message(self, website: Website, conversation: Conversation,
                       message: Message) -> None:
        """Delete a message and bump the conversation; announced as ``message:removed``."""
        messages = conversation.messages
        messages.remove(message)
        conversation.last = messages[-1] if messages else None
        self.bump(website, conversation)
        self.emit("message:removed", lambda: {**_session(conversation),
                                              "fingerprint": message.fingerprint})

    def set_state(self, website: Website, conversation: Conversation, state: str) -> None:
        """Set a conversation's state (400 unless one of `STATES`; resolving stops the wait)
        and bump it; announced as ``session:set_state``."""
        if state not in STATES:
            raise invalid_data()
        conversation.state = state
        if state == "resolved":
            conversation.waiting_since = 0
        self.bump(website, conversation)
        self._emit_state(conversation)

    def _emit_state(self, conversation: Conversation) -> None:
        self.emit("session:set_state", lambda: {**_session(conversation),
                                                "state": conversation.state})

    def update_meta(self, website: Website, conversation: Conversation,
                    changes: dict[str, Any]) -> None:
        """Replace the given meta fields (already checked) and bump the conversation; a change
        of ``segments`` is announced as ``session:set_segments``."""
        conversation.meta.update(changes)
        self.bump(website, conversation)
        if "segments" in changes:
            self.emit("session:set_segments", lambda: {
                **_session(conversation), "segments": list(conversation.meta["segments"])})

    def remove_conversation(self, website: Website, conversation: Conversation) -> None:
        """Delete a conversation and its messages; announced as ``session:removed``."""
        website.remove_conversation(conversation)
        self.emit("session:removed", lambda: _session(conversation))

    def add_profile(self, website: Website, profile: dict[str, Any]) -> None:
        """Store a new people profile; announced as ``people:profile:created``."""
        website.add_profile(profile)
        self.emit("people:profile:created", lambda: _person(website, profile))

    def profile_changed(self, website: Website, profile: dict[str, Any]) -> None:
        """Announce a profile's change (made by the caller) as ``people:profile:updated``,
        with the whole profile as served under ``update``."""
        self.emit("people:profile:updated", lambda: {**_person(website, profile),
                                                     "update": _snapshot(profile)})

    def remove_profile(self, website: Website, profile: dict[str, Any]) -> None:
        """Forget a profile, with its data and events; announced as
        ``people:profile:removed``."""
        website.remove_profile(profile)
        self.emit("people:profile:removed", lambda: _person(website, profile))

    def add_activity_message(self, website: Website, conversation: Conversation) -> Message:
        """A random visitor or operator text message, as live traffic would add."""
        sender = "user" if self.rng.random() < 0.6 else "operator"
        return self.add_message(website, conversation, kind="text", sender=sender,
                                origin="chat", content=generate.sentence(self.rng))

    def truth(self, website_id: str | None = None) -> dict[str, ConversationTruth]:
        """Every conversation of a website with all its messages, as the API serves them,
        newest ``updated_at`` first."""
        website = self.website(website_id)
        return {conversation.session_id: truth_of(conversation)
                for conversation in website.ordered()}

    def encoded_truth(self, website_id: str | None = None) -> bytes:
        """`truth` as one JSON object ``{session_id: {"conversation", "messages"}}``, built
        from the cached encodings (far lighter than decoding everything)."""
        website = self.website(website_id)
        parts = []
        for conversation in website.ordered():
            session_id = conversation.session_id
            messages = b",".join(message.encode(session_id, website.website_id)
                                 for message in conversation.messages)
            parts.append(b'"%s":{"conversation":%s,"messages":[%s]}'
                         % (session_id.encode(), conversation.encode(), messages))
        return b"{" + b",".join(parts) + b"}"


def truth_of(conversation: Conversation) -> ConversationTruth:
    """A conversation and its messages, decoded from what the API serves."""
    session_id, website_id = conversation.session_id, conversation.website_id
    return ConversationTruth(
        json.loads(conversation.encode()),
        [json.loads(message.encode(session_id, website_id))
         for message in conversation.messages],
    )


def _session(conversation: Conversation) -> dict[str, Any]:
    """The fields every session event carries."""
    return {"website_id": conversation.website_id, "session_id": conversation.session_id}


def _person(website: Website, profile: dict[str, Any]) -> dict[str, Any]:
    """The fields every people profile event carries."""
    return {"website_id": website.website_id, "people_id": profile["people_id"],
            "email": profile["email"]}


def _snapshot(value: Any) -> Any:
    """A deep copy of JSON-ready ``value``, so that a delayed event shows the state at its
    change, not what later changes made of it."""
    return json.loads(encode(value))


def _follow(conversation: Conversation, message: Message) -> None:
    """Update the conversation's last message, unread counts, waiting time and state after
    a new message."""
    conversation.last = message
    if message.sender == "user":
        conversation.unread_operator += 1
        conversation.waiting_since = message.timestamp
        if conversation.state == "resolved":
            conversation.state = "unresolved"
    else:
        conversation.unread_visitor += 1
        conversation.waiting_since = 0
        if conversation.state == "pending":
            conversation.state = "unresolved"


def _empty_meta() -> dict[str, Any]:
    return {"nickname": "", "email": "", "phone": "", "address": "", "subject": "", "ip": "",
            "data": {}, "avatar": "", "device": {}, "segments": []}


def _seed_website(rng: Random, *, website_id: str, ordinal: int, seed: int,
                  conversations: int, mean_messages: int, people: int, operators: int,
                  now: int) -> Website:
    team = tuple(_seed_operator(rng, number) for number in range(operators))
    token = {"identifier": generate.make_uuid(rng), "key": f"{rng.getrandbits(256):064x}"}
    website = Website(website_id, f"Site {ordinal + 1}", now - 400 * DAY, token=token,
                      operators=team)
    profiles = [_seed_profile(rng, website, number, now) for number in range(people)]
    specials = sum(SPECIAL_COUNTS.values())
    other_mean = max(0.0, (SPECIAL_PERIOD * mean_messages - specials)
                     / (SPECIAL_PERIOD - len(SPECIAL_COUNTS)))
    for number in range(conversations):
        count = SPECIAL_COUNTS.get(number % SPECIAL_PERIOD) if mean_messages else 0
        if count is None:
            count = rng.randint(0, round(2 * other_mean))
        global_number = ordinal * conversations + number
        website.add_conversation(_seed_conversation(
            rng, website, seed=f"crisp-fake/{seed}/{ordinal}/{number}", count=count,
            first_fingerprint=FINGERPRINT_BASE + global_number * FINGERPRINT_STRIDE,
            person=rng.choice(profiles), now=now,
        ))
    return website


def _seed_operator(rng: Random, number: int) -> Operator:
    first, last = generate.full_name(rng)
    return Operator(
        generate.make_uuid(rng), f"{first.lower()}.{number}@team.example.com", first, last,
        "owner" if number == 0 else "member", rng.choice(("", "Support", "Sales", "CTO")),
        rng.choice(("online", "away", "offline")),
    )


def _seed_profile(rng: Random, website: Website, number: int, now: int) -> dict[str, Any]:
    first, last = generate.full_name(rng)
    created_at = now - rng.randint(2 * DAY, 390 * DAY)
    profile = new_profile(generate.make_uuid(rng), generate.email_for(first, last, number),
                          f"{first} {last}", created_at)
    profile["segments"] = sorted(rng.sample(generate.SEGMENTS, rng.randint(0, 2)))
    profile["active"]["last"] = now - rng.randint(HOUR, DAY)
    profile["score"] = rng.randint(0, 100)
    profile["updated_at"] = created_at + rng.randint(0, DAY)
    website.add_profile(profile)
    return profile


def _seed_conversation(rng: Random, website: Website, *, seed: str, count: int,
                       first_fingerprint: int, person: dict[str, Any], now: int
                       ) -> Conversation:
    age = rng.randint(2 * DAY, 365 * DAY)
    created_at = now - age
    updated_at = created_at + rng.randint(10 * MINUTE, age - HOUR)
    state = rng.choices(STATES, weights=(10, 25, 65))[0]
    topic = rng.choice(generate.TOPICS) if rng.random() < 0.3 else ""
    meta = {
        "nickname": person["person"]["nickname"],
        "email": person["email"],
        "phone": f"+1555{rng.randint(0, 9999999):07d}" if rng.random() < 0.2 else "",
        "address": "",
        "subject": topic,
        "ip": generate.ip_address(rng),
        "data": {"plan": rng.choice(("free", "pro", "business"))} if rng.random() < 0.4 else {},
        "avatar": "",
        "device": generate.device(rng),
        "segments": sorted(rng.sample(generate.SEGMENTS, rng.randint(0, 2))),
    }
    conversation = Conversation(
        website.website_id, "session_" + generate.make_uuid(rng), person["people_id"],
        created_at, updated_at, meta, state=state,
        is_verified=rng.random() < 0.2, is_blocked=rng.random() < 0.01,
        availability="online" if rng.random() < 0.05 else "offline", topic=topic,
    )
    if state != "resolved":
        conversation.unread_operator = rng.randint(0, 3)
    if rng.random() < 0.3:
        conversation.assigned = {"user_id": rng.choice(website.operators).user_id}
    if count:
        conversation.last = draw_message(
            rng, first_fingerprint + count - 1, updated_at,
            (meta["nickname"], conversation.session_id), website.operators,
        )
        if state != "resolved" and conversation.last.sender == "user":
            conversation.waiting_since = updated_at
        conversation.older = OlderMessages(seed, count - 1, first_fingerprint,
                                            website.operators)
    else:
        conversation.loaded = []
    return conversation
