"""The store interface the sync engine writes to, so users can plug their own.

A store keeps four kinds of rows (conversations, messages, people profiles, operators) and
the checkpoint of each website. The engine relies on two promises: every ``save_*`` call is
atomic (all of it is kept, or none), and saving the same rows twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Changes:
    """How many rows a save added and how many it changed (unchanged rows count in neither)."""

    added: int = 0
    updated: int = 0

    def __add__(self, other: Changes) -> Changes:
        return Changes(self.added + other.added, self.updated + other.updated)


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What the store already holds of a conversation."""

    updated_at: int | None
    """The conversation's ``updated_at`` (epoch ms) when it was last saved in full."""
    newest_message: int | None
    """The timestamp of the newest stored message."""


class Store(Protocol):
    """Where a sync puts what it reads. Implementations must be safe to call from threads."""

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        """What is stored of ``session_id`` (both fields ``None`` for a new conversation)."""
        ...

    def save_conversation(
        self, website_id: str, conversation: Row, messages: Sequence[Row]
    ) -> tuple[Changes, Changes]:
        """Atomically upsert a conversation and messages; (conversation, message) changes.

        The conversation row is what marks it as synced up to its ``updated_at``, so it must
        be committed together with its messages, never before them.
        """
        ...

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        """Atomically upsert people profiles (keyed by ``people_id``)."""
        ...

    def save_operators(self, website_id: str, operators: Sequence[Row]) -> Changes:
        """Atomically upsert the website's operators (keyed by their user id)."""
        ...

    def checkpoint(self, website_id: str) -> int | None:
        """The end (epoch ms) of the last window that was synced completely, if any."""
        ...

    def set_checkpoint(self, website_id: str, until_ms: int) -> None:
        """Record that everything updated up to ``until_ms`` is stored."""
        ...
