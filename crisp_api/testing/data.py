"""The fake's data model: messages, conversations, operators and websites, and how each is
served as JSON (cached until it changes, which keeps pages cheap to serve).

A seeded conversation starts with only its newest message (the conversation lists show it);
its older messages are drawn from a per-conversation seed the first time anything reads them,
and kept from then on (see `crisp_api.testing.world` for the seeding).

Nothing here locks: callers hold `World.lock` around every read and write, because the HTTP
server and the test helpers run on different threads.
"""

from __future__ import annotations

import json
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from random import Random
from typing import Any

from crisp_api.testing import generate
from crisp_api.testing.errors import not_found

MESSAGES_PAGE = 40
"""Messages per page of ``GET .../messages``, as in Crisp."""

TEXT_TYPES = frozenset({"text", "note"})
"""Message types whose ``content`` is a non-empty string."""
OBJECT_TYPES = frozenset({"file", "animation", "audio", "picker", "field", "carousel", "event"})
"""Message types whose ``content`` is a non-empty object."""
SENDERS = frozenset({"user", "operator"})
"""The values of a message's ``from``."""
STATES = ("pending", "unresolved", "resolved")
STATE_CODES = {"pending": 0, "unresolved": 1, "resolved": 2}
META_FIELDS = frozenset(
    {"nickname", "email", "phone", "address", "subject", "ip", "data", "avatar", "device",
     "segments", "origin"}
)
_JSON = json.JSONEncoder(separators=(",", ":")).encode


def encode(value: Any) -> bytes:
    """Compact JSON, as UTF-8 bytes."""
    return _JSON(value).encode()


@dataclass(slots=True, eq=False)
class Message:
    """One message; ``sender`` is Crisp's ``from`` (``user`` or ``operator``)."""

    fingerprint: int
    timestamp: int
    type: str
    sender: str
    origin: str
    content: Any
    nickname: str
    user_id: str
    read: str = ""
    delivered: str = ""
    edited: bool = False
    served_over: dict[str, Any] | None = None
    """Fields served over the message's own (an extra field, a fingerprint that is not an
    integer...): odd rows, as a client must expect them."""
    encoded: bytes | None = None

    def excerpt(self) -> str:
        """The text Crisp shows for this message in conversation lists."""
        if isinstance(self.content, str):
            return self.content[:200]
        if isinstance(self.content, dict):
            return str(self.content.get("name") or self.content.get("text") or self.type)
        return self.type

    def encode(self, session_id: str, website_id: str) -> bytes:
        """The message as Crisp serves it (cached until the message changes)."""
        if self.encoded is None:
            body: dict[str, Any] = {
                "session_id": session_id,
                "website_id": website_id,
                "type": self.type,
                "from": self.sender,
                "origin": self.origin,
                "content": self.content,
                "fingerprint": self.fingerprint,
                "user": {"nickname": self.nickname, "user_id": self.user_id},
                "mentions": [],
                "read": self.read,
                "delivered": self.delivered,
                "stamped": True,
                "timestamp": self.timestamp,
            }
            if self.edited:
                body["edited"] = True
            if self.served_over:
                body.update(self.served_over)
            self.encoded = encode(body)
        return self.encoded


def valid_content(kind: Any, content: Any) -> bool:
    """Whether ``content`` suits a message of type ``kind``."""
    if kind in TEXT_TYPES:
        return isinstance(content, str) and content != ""
    return kind in OBJECT_TYPES and isinstance(content, dict) and bool(content)


@dataclass(frozen=True, slots=True)
class OlderMessages:
    """How to draw a seeded conversation's messages before its newest, when first needed."""

    seed: str
    count: int
    first_fingerprint: int
    operators: tuple[Operator, ...]


@dataclass(slots=True, eq=False)
class Conversation:
    """One conversation; ``messages`` are drawn on first access for seeded conversations."""

    website_id: str
    session_id: str
    people_id: str
    created_at: int
    updated_at: int
    meta: dict[str, Any]
    state: str = "pending"
    is_verified: bool = False
    is_blocked: bool = False
    availability: str = "offline"
    topic: str = ""
    waiting_since: int = 0
    unread_operator: int = 0
    unread_visitor: int = 0
    assigned: dict[str, str] = field(default_factory=dict)
    participants: list[dict[str, str]] = field(default_factory=list)
    last: Message | None = None
    older: OlderMessages | None = None
    loaded: list[Message] | None = None
    encoded: bytes | None = None
    served_over: dict[str, Any] | None = None
    """Fields served over the conversation's own (`Controls.serve_conversation_over`)."""

    @property
    def messages(self) -> list[Message]:
        """Every message, oldest first: timestamps never decrease, and several messages may
        share one millisecond (as in Crisp); fingerprints are unique within the list."""
        if self.loaded is None:
            self.loaded = self._draw_older() if self.older is not None else []
            if self.last is not None:
                self.loaded.append(self.last)
            self.older = None
        return self.loaded

    def _draw_older(self) -> list[Message]:
        assert self.older is not None
        recipe = self.older
        rng = generate.seeded(recipe.seed)
        stamps = sorted(rng.sample(range(self.created_at, self.updated_at), recipe.count))
        nickname = str(self.meta.get("nickname", ""))
        visitor = (nickname, self.session_id)
        return [
            draw_message(rng, recipe.first_fingerprint + index, stamp, visitor, recipe.operators)
            for index, stamp in enumerate(stamps)
        ]

    def changed(self) -> None:
        """Forget the cached JSON after a change."""
        self.encoded = None

    def encode(self) -> bytes:
        """The conversation as Crisp serves it (cached until it changes)."""
        if self.encoded is None:
            last = self.last
            preview = None if last is None else {
                "type": last.type, "from": last.sender, "excerpt": last.excerpt(),
                "fingerprint": last.fingerprint,
            }
            self.encoded = encode({
                "session_id": self.session_id,
                "website_id": self.website_id,
                "people_id": self.people_id,
                "state": self.state,
                "status": STATE_CODES[self.state],
                "is_verified": self.is_verified,
                "is_blocked": self.is_blocked,
                "availability": self.availability,
                "last_message": "" if last is None else last.excerpt(),
                "preview_message": preview,
                "topic": self.topic,
                "meta": self.meta,
                "participants": self.participants,
                "mentions": [],
                "compose": {},
                "unread": {"operator": self.unread_operator, "visitor": self.unread_visitor},
                "assigned": self.assigned,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "waiting_since": self.waiting_since,
                **(self.served_over or {}),
            })
        return self.encoded


@dataclass(frozen=True, slots=True)
class Operator:
    """A member of a website's team."""

    user_id: str
    email: str
    first_name: str
    last_name: str
    role: str
    title: str
    availability: str

    @property
    def nickname(self) -> str:
        """The name shown on the operator's messages."""
        return f"{self.first_name} {self.last_name}"

    def to_json(self) -> dict[str, Any]:
        """The operator as ``GET .../operators/list`` serves it."""
        return {
            "type": "owner" if self.role == "owner" else "member",
            "details": {
                "user_id": self.user_id, "email": self.email, "avatar": "",
                "first_name": self.first_name, "last_name": self.last_name,
                "role": self.role, "title": self.title, "availability": self.availability,
                "has_token": False,
            },
        }


@dataclass(frozen=True, slots=True)
class ConversationTruth:
    """A conversation and all its messages (oldest first), exactly as the API serves them."""

    conversation: dict[str, Any]
    messages: list[dict[str, Any]]


def draw_message(rng: Random, fingerprint: int, timestamp: int, visitor: tuple[str, str],
                 operators: tuple[Operator, ...]) -> Message:
    """A plausible seeded message: mostly text, some notes and files, from either the visitor
    (``(nickname, session_id)``) or one of the ``operators``."""
    origin_roll = rng.random()
    origin = "chat" if origin_roll < 0.8 else "email" if origin_roll < 0.95 else (
        "urn:crisp.im:contact-form:0")
    kind_roll = rng.random()
    if rng.random() < 0.55:
        kind = "file" if kind_roll < 0.05 else "text"
        author, user_id = visitor
        sender = "user"
    else:
        kind = "file" if kind_roll < 0.05 else "note" if kind_roll < 0.17 else "text"
        operator = rng.choice(operators)
        author, user_id = operator.nickname, operator.user_id
        sender = "operator"
    content = generate.file_content(rng) if kind == "file" else generate.sentence(rng)
    seen = rng.random() < 0.8
    return Message(fingerprint, timestamp, kind, sender, origin, content, author, user_id,
                   read="chat" if seen else "", delivered="chat" if seen else "")


class Website:
    """A website: its conversations (kept ordered newest ``updated_at`` first), people and
    operators."""

    def __init__(self, website_id: str, name: str, created_at: int, *,
                 token: dict[str, str], operators: tuple[Operator, ...]) -> None:
        self.website_id = website_id
        self.name = name
        self.domain = f"{name.lower().replace(' ', '-')}.example.com"
        self.created_at = created_at
        self.token = token
        self.operators = operators
        self.conversations: dict[str, Conversation] = {}
        self.people: dict[str, dict[str, Any]] = {}
        self.people_data: dict[str, dict[str, Any]] = {}
        self.people_events: dict[str, list[dict[str, Any]]] = {}
        self.emails: dict[str, str] = {}
        self.sessions_of: dict[str, list[str]] = {}
        self._order: list[tuple[int, str]] = []
        self._people_order: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        """The website as ``GET /website/{website_id}`` serves it."""
        return {"website_id": self.website_id, "name": self.name, "domain": self.domain,
                "logo": ""}

    def conversation(self, session_id: str) -> Conversation:
        """The conversation, or a 404 `ApiError`."""
        found = self.conversations.get(session_id)
        if found is None:
            raise not_found()
        return found

    def profile(self, people_id: str) -> dict[str, Any]:
        """The profile by people id or by email (as Crisp accepts both), or a 404."""
        found = self.people.get(people_id) or self.people.get(self.emails.get(people_id, ""))
        if found is None:
            raise not_found()
        return found

    def add_profile(self, profile: dict[str, Any]) -> None:
        """Store a new people profile."""
        self.people[profile["people_id"]] = profile
        self.emails[profile["email"]] = profile["people_id"]
        self._people_order = None

    def remove_profile(self, profile: dict[str, Any]) -> None:
        """Forget a profile, with its data and events."""
        people_id = profile["people_id"]
        del self.people[people_id]
        self.emails.pop(profile["email"], None)
        self.people_data.pop(people_id, None)
        self.people_events.pop(people_id, None)
        self._people_order = None

    def change_email(self, profile: dict[str, Any], email: str) -> None:
        """Give a profile another email, keeping the email index right."""
        self.emails.pop(profile["email"], None)
        profile["email"] = email
        self.emails[email] = profile["people_id"]

    def ordered_people(self) -> list[dict[str, Any]]:
        """Profiles, newest ``created_at`` first."""
        if self._people_order is None:
            self._people_order = sorted(
                self.people.values(), key=lambda profile: (-profile["created_at"],
                                                           profile["people_id"]))
        return self._people_order

    def add_conversation(self, conversation: Conversation) -> None:
        """Store a new conversation and index it."""
        self.conversations[conversation.session_id] = conversation
        insort(self._order, (-conversation.updated_at, conversation.session_id))
        self.sessions_of.setdefault(conversation.people_id, []).append(conversation.session_id)

    def remove_conversation(self, conversation: Conversation) -> None:
        """Forget a conversation and its index entries."""
        del self.conversations[conversation.session_id]
        self._order.pop(self._position(conversation))
        sessions = self.sessions_of.get(conversation.people_id, [])
        if conversation.session_id in sessions:
            sessions.remove(conversation.session_id)

    def set_updated(self, conversation: Conversation, updated_at: int) -> None:
        """Move a conversation to its new place in the newest-first order."""
        self._order.pop(self._position(conversation))
        conversation.updated_at = updated_at
        insort(self._order, (-updated_at, conversation.session_id))
        conversation.changed()

    def _position(self, conversation: Conversation) -> int:
        return bisect_left(self._order, (-conversation.updated_at, conversation.session_id))

    def _bounds(self, start: int | None, end: int | None) -> tuple[int, int]:
        """The slice of the order whose ``updated_at`` is within inclusive bounds."""
        low = 0 if end is None else bisect_left(self._order, (-end,))
        high = len(self._order) if start is None else bisect_left(self._order, (1 - start,))
        return low, high

    def ordered(self, start: int | None = None, end: int | None = None) -> Iterator[Conversation]:
        """Conversations newest ``updated_at`` first, within inclusive ``[start, end]`` bounds."""
        low, high = self._bounds(start, end)
        conversations = self.conversations
        for index in range(low, high):
            yield conversations[self._order[index][1]]

    def page(self, number: int, per_page: int, start: int | None, end: int | None,
             keep: Callable[[Conversation], bool] | None) -> list[Conversation]:
        """Page ``number`` (from 1) of the ordered conversations that ``keep`` accepts."""
        skip = (number - 1) * per_page
        if keep is None:
            low, high = self._bounds(start, end)
            keys = self._order[low + skip:min(high, low + skip + per_page)]
            return [self.conversations[key[1]] for key in keys]
        found: list[Conversation] = []
        for conversation in self.ordered(start, end):
            if keep(conversation):
                if skip:
                    skip -= 1
                else:
                    found.append(conversation)
                    if len(found) == per_page:
                        break
        return found


def new_profile(people_id: str, email: str, nickname: str, created_at: int) -> dict[str, Any]:
    """A people profile as Crisp serves it, with empty optional fields."""
    return {
        "people_id": people_id,
        "email": email,
        "person": {
            "nickname": nickname, "avatar": "", "gender": "", "phone": "", "address": "",
            "description": "", "website": "", "timezone": 0, "profiles": [], "employment": {},
            "geolocation": {}, "locales": ["en"],
        },
        "company": {},
        "segments": [],
        "notepad": "",
        "active": {"now": False, "last": created_at},
        "score": 0,
        "created_at": created_at,
        "updated_at": created_at,
    }
