"""Test helpers on the fake's state: simulate live activity while a client syncs, and read
the ground truth to compare a synced copy with. Safe to call from any thread while the server
runs; unknown websites, conversations or messages raise KeyError, refused values ValueError
(and change nothing). Every change a helper makes reaches the fake's RTM sockets as the event
Crisp would push, as if made through the API (`crisp_api.testing.world.World.emit`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crisp_api.testing import generate
from crisp_api.testing.data import SENDERS, ConversationTruth, Website
from crisp_api.testing.errors import ApiError
from crisp_api.testing.world import World, truth_of


class Controls:
    """Activity and ground truth for one `World`; ``website_id=None`` means the first
    website."""

    def __init__(self, world: World) -> None:
        self._world = world

    @property
    def website_id(self) -> str:
        """The first website's id (stable for a seed)."""
        return self._world.website_id

    @property
    def website_ids(self) -> list[str]:
        """Every website's id, first one first."""
        return list(self._world.websites)

    def now_ms(self) -> int:
        """The fake server's clock, in epoch milliseconds: what it stamps changes with and
        sends as ``Date`` (not the test's clock when built with ``now_ms`` or
        ``clock_offset_ms``)."""
        return self._world.now()

    @contextmanager
    def _website(self, website_id: str | None) -> Iterator[Website]:
        """The website, under the state lock; turns the API errors of the block into
        KeyError (404) or ValueError (refused values)."""
        with self._world.lock:
            try:
                yield self._world.website(website_id)
            except ApiError as error:
                if error.status == 404:
                    raise KeyError(website_id, "no such website, conversation or message"
                                   ) from None
                raise ValueError(f"the fake refused it: {error.status} {error.reason}"
                                 ) from None

    def add_message(self, session_id: str, *, website_id: str | None = None,
                    content: str | None = None, sender: str = "user", kind: str = "text",
                    origin: str = "chat") -> dict[str, Any]:
        """Append a message now (random text unless ``content`` is given) as if sent by
        ``sender`` (``user`` or ``operator``); bumps ``updated_at``. The message as served."""
        _check_sender(sender)
        with self._website(website_id) as website:
            conversation = website.conversation(session_id)
            message = self._world.add_message(
                website, conversation, kind=kind, sender=sender, origin=origin,
                content=generate.sentence(self._world.rng) if content is None else content,
            )
            return _decode(message.encode(session_id, website.website_id))

    def add_messages(self, session_id: str, count: int = 1, *, website_id: str | None = None,
                     timestamp: int | None = None, fingerprint: int | None = None,
                     content: str | None = None, sender: str = "user") -> list[dict[str, Any]]:
        """Append ``count`` text messages (random text unless ``content`` is given) from
        ``sender``; bumps ``updated_at``. The messages as served, oldest first.

        ``timestamp=T`` stamps them all with exactly T (messages sharing a millisecond, as
        Crisp allows); T must not precede the conversation's newest message. ``fingerprint``
        (only with ``count=1``) gives the message that fingerprint even if another
        conversation holds it (it is unique only within a conversation), but not if this one
        does. Refusals raise ValueError.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if fingerprint is not None and count != 1:
            raise ValueError("a fingerprint names one message: use count=1")
        _check_sender(sender)
        with self._website(website_id) as website:
            conversation = website.conversation(session_id)
            added = [
                self._world.add_message(
                    website, conversation, kind="text", sender=sender, origin="chat",
                    content=generate.sentence(self._world.rng) if content is None else content,
                    timestamp=timestamp, fingerprint=fingerprint,
                )
                for _ in range(count)
            ]
            return [_decode(message.encode(session_id, website.website_id))
                    for message in added]

    def add_odd_message(self, session_id: str, served_over: dict[str, Any], *,
                        website_id: str | None = None, content: str | None = None
                        ) -> dict[str, Any]:
        """Append a text message (as `add_message`) that is served with ``served_over``'s
        fields over its own: an extra field, a fingerprint out of range or not an integer,
        any value a client must survive. The fake itself still finds the message by its own
        fingerprint. The message as served."""
        with self._website(website_id) as website:
            conversation = website.conversation(session_id)
            message = self._world.add_message(
                website, conversation, kind="text", sender="user", origin="chat",
                content=generate.sentence(self._world.rng) if content is None else content,
            )
            message.served_over = dict(served_over)
            message.encoded = None
            return _decode(message.encode(session_id, website.website_id))

    def serve_conversation_over(self, session_id: str, served_over: dict[str, Any], *,
                                website_id: str | None = None) -> dict[str, Any]:
        """Serve a conversation with ``served_over``'s fields over its own, in its listing and
        its own route (e.g. an ``updated_at`` that is not an integer): a value a client must
        survive. The fake still orders and filters it by its own fields. The conversation as
        served."""
        with self._website(website_id) as website:
            conversation = website.conversation(session_id)
            conversation.served_over = dict(served_over)
            conversation.changed()
            return _decode(conversation.encode())

    def edit_message(self, session_id: str, fingerprint: int, content: Any, *,
                     website_id: str | None = None) -> dict[str, Any]:
        """Replace a message's content, as ``PATCH .../message/{fingerprint}`` does (marked
        ``edited``, bumps ``updated_at``; ValueError if ``content`` does not suit its type).
        The message as served."""
        with self._website(website_id) as website:
            conversation = website.conversation(session_id)
            message = self._world.find_message(conversation, fingerprint)
            self._world.edit_message(website, conversation, message, content)
            return _decode(message.encode(session_id, website.website_id))

    def remove_message(self, session_id: str, fingerprint: int, *,
                       website_id: str | None = None) -> None:
        """Delete a message, as ``DELETE .../message/{fingerprint}`` does (bumps
        ``updated_at``)."""
        with self._website(website_id) as website:
            conversation = website.conversation(session_id)
            message = self._world.find_message(conversation, fingerprint)
            self._world.remove_message(website, conversation, message)

    def create_conversations(self, count: int = 1, *, website_id: str | None = None,
                             messages: int = 1) -> list[str]:
        """Start ``count`` new conversations with ``messages`` visitor messages each; their
        session ids."""
        with self._website(website_id) as website:
            created = []
            for _ in range(count):
                conversation = self._world.create_conversation(website)
                for _ in range(messages):
                    self._world.add_activity_message(website, conversation)
                created.append(conversation.session_id)
            return created

    def touch_conversations(self, count: int = 1, *, website_id: str | None = None
                            ) -> list[str]:
        """Add one message to each of ``count`` random conversations (bumping their
        ``updated_at``); their session ids."""
        with self._website(website_id) as website:
            chosen = self._world.rng.sample(list(website.conversations),
                                            min(count, len(website.conversations)))
            for session_id in chosen:
                self._world.add_activity_message(website, website.conversations[session_id])
            return chosen

    def conversation(self, session_id: str, *, website_id: str | None = None
                     ) -> dict[str, Any]:
        """One conversation, as served."""
        with self._website(website_id) as website:
            return _decode(website.conversation(session_id).encode())

    def conversations(self, *, website_id: str | None = None) -> list[dict[str, Any]]:
        """Every conversation of a website, newest ``updated_at`` first, as served."""
        with self._website(website_id) as website:
            return [_decode(conversation.encode()) for conversation in website.ordered()]

    def messages(self, session_id: str, *, website_id: str | None = None
                 ) -> list[dict[str, Any]]:
        """Every message of a conversation, oldest first, as served."""
        with self._website(website_id) as website:
            conversation = website.conversation(session_id)
            return [_decode(message.encode(session_id, website.website_id))
                    for message in conversation.messages]

    def ground_truth(self, *, website_id: str | None = None) -> dict[str, ConversationTruth]:
        """Every conversation of a website with all its messages, by session id, newest
        ``updated_at`` first; one consistent snapshot."""
        with self._website(website_id):
            return self._world.truth(website_id)

    def iter_ground_truth(self, *, website_id: str | None = None
                          ) -> Iterator[tuple[str, ConversationTruth]]:
        """`ground_truth` one conversation at a time, so that comparing a big fake keeps
        memory bounded. Not a snapshot: conversations created while iterating are left out,
        those removed meanwhile skipped."""
        with self._website(website_id) as website:
            session_ids = [conversation.session_id for conversation in website.ordered()]
        for session_id in session_ids:
            with self._world.lock:
                conversation = website.conversations.get(session_id)
                item = None if conversation is None else truth_of(conversation)
            if item is not None:
                yield session_id, item

    def ground_truth_json(self, *, website_id: str | None = None) -> bytes:
        """`ground_truth` as one JSON object, as ``GET /_fake/truth`` serves it."""
        with self._website(website_id):
            return self._world.encoded_truth(website_id)


def _check_sender(sender: str) -> None:
    if sender not in SENDERS:
        raise ValueError(f"sender must be one of {sorted(SENDERS)}, not {sender!r}")


def _decode(encoded: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encoded)
    return decoded
