"""The store interfaces the sync writes to, so users can plug their own.

A store keeps four kinds of rows (conversations, messages, people profiles, operators) and
the state of each website (its checkpoint, when its people were last listed, which run holds
it). The engine writes what it reads from the REST API through `SyncStore`; follow mode also
applies Crisp's live events one row at a time through `EventSink` (`save_message`,
`edit_message`, ...); `Store` is both, as the built-in stores (`crisp_api.sync.sqlite_store`,
`crisp_api.sync.postgres_store`) are. They rely on these promises:

- every ``save_*`` call is atomic (all of it is kept, or none), and saving the same rows twice
  changes nothing;
- rows are keyed as Crisp keys them: a conversation by ``session_id``, a message by
  ``(session_id, fingerprint)`` (a fingerprint names a message within its conversation only),
  a profile by website and ``people_id``, an operator by website and user id;
- every value Crisp sends is kept: a row is stored as its JSON text or document, integers of
  any size included; where the database cannot hold a character (PostgreSQL: U+0000, a lone
  surrogate) the row is stored with it replaced and flagged (see the store's docstring);
- a row whose key the database cannot hold (no fingerprint, one outside 64 bits, a timestamp
  that is not an integer, ...) is put aside in the ``quarantine`` table with its raw answer
  and the reason (`crisp_api.sync.rows`), in the same transaction as the rest of the save, and
  counted (`Changes.quarantined`, `quarantined`): the rest is saved, nothing is dropped
  unseen (the table is a record: its rows stay until someone deletes them);
- a failure is raised, never swallowed, and only as `StoreError` for what the store itself
  could not do (``permanent`` when retrying cannot help: read-only, disk full, corrupt;
  an unexpected error of any other type is wrapped, naming the operation and never the row),
  and `WebsiteLockedError` when another run holds the website.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from crisp_api.sync.rows import Row

__all__ = ["Row"]  # re-exported: where a row's type was always imported from


@dataclass(frozen=True, slots=True)
class Changes:
    """How many rows a save added, changed and removed (unchanged rows count in none)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    quarantined: int = 0
    """Rows put aside in the quarantine table instead of stored (their key cannot be held)."""
    replaced: int = 0
    """Rows written with characters the database cannot hold replaced (and flagged)."""

    def __add__(self, other: Changes) -> Changes:
        return Changes(
            self.added + other.added,
            self.updated + other.updated,
            self.removed + other.removed,
            self.quarantined + other.quarantined,
            self.replaced + other.replaced,
        )


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What the store already holds of a conversation."""

    updated_at: int | None
    """The conversation's ``updated_at`` (epoch ms) when it was last saved in full."""
    newest_message: int | None
    """The timestamp of the newest stored message that a sync read. Messages stored from
    live events do not count: a walk that started after them would skip the older messages
    the events missed (a dropped socket)."""


@dataclass(frozen=True, slots=True)
class MessageSpan:
    """Messages of one conversation as read from Crisp, and how much of it they cover.

    ``messages`` are every message of the conversation whose ``timestamp`` is greater than
    ``since`` (all of its messages when ``since`` is None), as Crisp holds them now; they may
    also hold some messages at or before ``since``. A store upserts them all and removes the
    stored messages of the conversation newer than ``since`` that are not among them (Crisp
    removed them). Nothing at or before ``since`` is removed, nor anything newer than
    ``until`` (when given: the conversation's ``updated_at`` as read), which the read could not
    see (a message that arrived since, maybe stored from a live event).
    """

    messages: Sequence[Row]
    since: int | None
    until: int | None = None


class StoreError(Exception):
    """The store could not do what was asked.

    ``permanent`` says a rerun cannot help until someone acts (the file is read-only, the disk
    is full, the database is corrupt); otherwise the failure is transient (a lock held too long
    by another program) and the next run can finish the work.
    """

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class WebsiteLockedError(Exception):
    """Another run holds this website in this store: two runs would only double the traffic."""

    def __init__(self, website_id: str, holder: str) -> None:
        super().__init__(f"website {website_id} is being synced by another run ({holder})")
        self.website_id = website_id
        self.holder = holder


class SyncStore(Protocol):
    """What the sync engine writes to (`crisp_api.sync.engine`): conversations with their
    messages, listed rows and each website's state, one run per website at a time.
    Implementations must be safe to call from threads."""

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        """What is stored of ``session_id`` (both fields ``None`` for a new conversation)."""
        ...

    def save_conversation(
        self, website_id: str, conversation: Row, span: MessageSpan
    ) -> tuple[Changes, Changes]:
        """Atomically upsert a conversation and reconcile its messages with ``span``;
        (conversation, message) changes.

        The conversation row is what marks it as synced up to its ``updated_at``, so it must
        be committed together with its messages, never before them.
        """
        ...

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        """Atomically upsert people profiles (keyed by website and ``people_id``)."""
        ...

    def save_operators(self, website_id: str, operators: Sequence[Row]) -> Changes:
        """Atomically upsert the website's operators (keyed by their user id)."""
        ...

    def checkpoint(self, website_id: str) -> int | None:
        """The watermark (Crisp's epoch ms) up to which every change is stored, if any."""
        ...

    def set_checkpoint(self, website_id: str, until_ms: int) -> None:
        """Record that everything updated up to ``until_ms`` (Crisp's time) is stored."""
        ...

    def people_listed_at(self, website_id: str) -> int | None:
        """When (epoch ms, this machine's clock) the last full people listing completed."""
        ...

    def set_people_listed_at(self, website_id: str, at_ms: int) -> None:
        """Record that a full people listing completed at ``at_ms``."""
        ...

    def quarantined(self, website_id: str) -> int:
        """How many rows of the website the quarantine table holds."""
        ...

    def lock(self, website_id: str) -> AbstractContextManager[None]:
        """Hold ``website_id`` for one run; `WebsiteLockedError` if a live run holds it.

        A run that died (killed, machine lost) must not keep the website locked forever.
        """
        ...


@runtime_checkable
class BatchStates(Protocol):
    """A `SyncStore` that reads what it holds of many conversations in one go (`SQLiteStore`):
    the sync then asks once per listing page, not once per conversation, so an unchanged
    conversation costs little more than its listing entry. `stale_of` tells which of a page's
    conversations changed, and what the store holds of each; `updated_at_of` answers for rows
    it cannot be asked about (an ``updated_at`` that is no 64-bit integer), and
    `newest_messages` completes `SyncStore.conversation_state`'s answer for the changed."""

    def stale_of(self, website_id: str, listed: Mapping[str, int]) -> dict[str, int | None]:
        """Of the ``listed`` conversations (session id: the ``updated_at`` the listing gives,
        a 64-bit integer), those not stored with that ``updated_at`` or a later one: not
        stored, stored without one, older, or under an id no store can key; each with
        `ConversationState.updated_at`. The answer names only what changed, so a page found
        unchanged costs one query that returns nothing."""
        ...

    def updated_at_of(self, website_id: str, session_ids: Sequence[str]) -> dict[str, int]:
        """`ConversationState.updated_at` of those of ``session_ids`` that have one."""
        ...

    def newest_messages(self, website_id: str, session_ids: Sequence[str]) -> dict[str, int]:
        """`ConversationState.newest_message` of those of ``session_ids`` that have one."""
        ...


@runtime_checkable
class GroupCommit(Protocol):
    """A `SyncStore` that can commit many conversations in one transaction (`SQLiteStore`):
    the sync then saves them from one thread (`crisp_api.sync.writer`), a group at a time.

    Within ``saving_together()``, each `SyncStore.save_conversation` of the thread that entered
    it stays atomic on its own: one that raises leaves nothing of its conversation, and the
    others of the group are still committed when the block ends. If the block ends in an
    error (the transaction could not begin or commit, or the database rolled it back), none
    of the group's saves is stored.
    """

    def saving_together(self) -> AbstractContextManager[None]:
        """One transaction around the saves this thread makes in the block."""
        ...


class EventSink(Protocol):
    """What Crisp's live events write to (`crisp_api.sync.event_applier`): one row at a time,
    each call atomic. Implementations must be safe to call from threads."""

    def save_message(self, website_id: str, session_id: str, message: Row) -> Changes:
        """Upsert one message received as a live event (keyed by session and fingerprint).

        It does not count as read by a sync (see `ConversationState.newest_message`).
        """
        ...

    def edit_message(
        self, website_id: str, session_id: str, fingerprint: int, content: Any
    ) -> Changes:
        """Set the ``content`` of a stored message; nothing if it is not stored."""
        ...

    def remove_message(self, website_id: str, session_id: str, fingerprint: int) -> Changes:
        """Delete a stored message, if there."""
        ...

    def update_conversation(
        self, website_id: str, session_id: str, fields: Row
    ) -> Changes:
        """Merge ``fields`` into a stored conversation (its ``updated_at`` unchanged, so the
        next sync still reads it if it changed); nothing if it is not stored."""
        ...

    def remove_conversation(self, website_id: str, session_id: str) -> Changes:
        """Delete a conversation and its messages, atomically."""
        ...

    def remove_person(self, website_id: str, people_id: str) -> Changes:
        """Delete a people profile, if there."""
        ...

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        """Atomically upsert people profiles (a profile an event announced, read again)."""
        ...


class Store(SyncStore, EventSink, Protocol):
    """Both sides: where follow mode keeps what syncs read and what events say, and what a
    recheck (`crisp_api.sync.recheck`) writes; what the built-in stores are."""


@dataclass(frozen=True, slots=True)
class WebsiteStatus:
    """What a store holds of one website, for ``crisp-sync --status``."""

    website_id: str
    checkpoint_ms: int | None
    """The watermark (Crisp's epoch ms) up to which every change is stored, if any."""
    people_listed_ms: int | None
    """When (epoch ms) the last full people listing completed, if ever."""
    quarantined: int
    """Rows of the website put aside in the quarantine table."""
    last_run_ms: int | None = None
    """When (epoch ms) the last complete run of the website ended, if one did."""
    credential: str | None = None
    """The token identifier (never the key) that run spent its requests under."""


@dataclass(frozen=True, slots=True)
class CredentialAllowance:
    """What a store keeps of one credential's allowance between runs (see
    `crisp_api.sync.allowance`): ``spent_until_ms``, when Crisp's daily quota was last seen
    spent, the time it is expected to reset (epoch ms); ``learnt_rate``, the adaptive rate the
    last run ended at (requests/s); ``daily_quota`` and ``quota_reset`` (seconds after UTC
    midnight), as the last run was told them; ``reached_rate``, the highest rate a run's slow
    start reached without a refusal (requests/s), which the next one starts from when it has
    no learnt rate."""

    spent_until_ms: int | None = None
    learnt_rate: float | None = None
    daily_quota: int | None = None
    quota_reset: float = 0.0
    reached_rate: float | None = None
