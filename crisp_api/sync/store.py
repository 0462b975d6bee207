"""The store interface the sync engine writes to, so users can plug their own.

A store keeps four kinds of rows (conversations, messages, people profiles, operators) and
the state of each website (its checkpoint, when its people were last listed, which run holds
it). The engine writes what it reads from the REST API; follow mode also applies Crisp's live
events one row at a time (`save_message`, `edit_message`, ...). They rely on these promises:

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

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from crisp_api.sync.rows import Quarantined, Row, is_key

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


class Store(Protocol):
    """Where a sync puts what it reads. Implementations must be safe to call from threads."""

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


class WebsiteState:
    """The website state methods of `Store`, written once over a table of one row per
    website with a column per value (``checkpoint_ms``, ``people_listed_ms``): a store
    inheriting it gives ``_state`` and ``_set_state``."""

    def _state(self, website_id: str, column: str) -> int | None:
        raise NotImplementedError

    def _set_state(self, website_id: str, column: str, value: int) -> None:
        raise NotImplementedError

    def checkpoint(self, website_id: str) -> int | None:
        """The watermark (Crisp's epoch ms) up to which every change is stored, if any."""
        return self._state(website_id, "checkpoint_ms")

    def set_checkpoint(self, website_id: str, until_ms: int) -> None:
        """Record that everything updated up to ``until_ms`` (Crisp's time) is stored."""
        self._set_state(website_id, "checkpoint_ms", until_ms)

    def people_listed_at(self, website_id: str) -> int | None:
        """When (epoch ms, this machine's clock) the last full people listing completed."""
        return self._state(website_id, "people_listed_ms")

    def set_people_listed_at(self, website_id: str, at_ms: int) -> None:
        """Record that a full people listing completed at ``at_ms``."""
        self._set_state(website_id, "people_listed_ms", at_ms)


class SqlRemovals:
    """The removals of `Store` (live events: a message, a conversation, a person removed),
    written once over SQL: a store inheriting it gives its placeholder (``_MARK``) and
    ``_execute``, which runs the statements in one transaction and returns the rows they
    touched."""

    _MARK: ClassVar[str]

    def _execute(self, operation: str, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> int:
        raise NotImplementedError

    def remove_message(self, website_id: str, session_id: str, fingerprint: int) -> Changes:
        """Delete a stored message, if there (none is under a key no store can hold)."""
        if not (is_key(session_id) and is_key(fingerprint)):
            return Changes()
        mark = self._MARK
        return Changes(removed=self._execute("remove", [(
            f"DELETE FROM messages WHERE session_id = {mark} AND fingerprint = {mark}",  # noqa: S608 - fixed text
            (session_id, fingerprint),
        )]))

    def remove_conversation(self, website_id: str, session_id: str) -> Changes:
        """Delete a conversation and its messages, in one transaction."""
        if not is_key(session_id):
            return Changes()
        mark = self._MARK
        return Changes(removed=self._execute("remove", [
            (f"DELETE FROM messages WHERE session_id = {mark}", (session_id,)),  # noqa: S608
            (f"DELETE FROM conversations WHERE session_id = {mark}", (session_id,)),  # noqa: S608
        ]))

    def remove_person(self, website_id: str, people_id: str) -> Changes:
        """Delete a people profile, if there."""
        if not is_key(people_id):
            return Changes()
        mark = self._MARK
        return Changes(removed=self._execute("remove", [(
            f"DELETE FROM people WHERE website_id = {mark} AND people_id = {mark}",  # noqa: S608 - fixed text
            (website_id, people_id),
        )]))


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
    midnight), as the last run was told them."""

    spent_until_ms: int | None = None
    learnt_rate: float | None = None
    daily_quota: int | None = None
    quota_reset: float = 0.0


ALLOWANCE_COLUMNS = ("spent_until_ms", "learnt_rate", "daily_quota", "quota_reset")
"""The columns of the ``allowance`` table besides its key, ``credential``."""


class SqlAllowance:
    """The quota ledger (``quota_ledger``: requests sent per credential and quota day), each
    credential's allowance (``allowance``) and the last complete run of each website, written
    once over SQL: a store inheriting it gives ``_MARK``, ``_select`` and ``_write`` (runs
    statements in one transaction). Credentials are token identifiers, never keys."""

    _MARK: ClassVar[str]

    def _select(self, sql: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _execute(self, operation: str, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> int:
        raise NotImplementedError

    def count_requests(self, credential: str, day: int, requests: int) -> None:
        """Add ``requests`` sent under ``credential`` on quota day ``day`` (days since the
        epoch, counted from the quota's reset time) to the ledger: one statement, so workers
        sharing the database add up, none lost."""
        if requests <= 0:
            return
        mark = self._MARK
        self._execute("write the allowance", [(
            f"INSERT INTO quota_ledger (credential, day, requests) VALUES ({mark}, {mark}, "  # noqa: S608 - fixed text
            f"{mark}) ON CONFLICT (credential, day) DO UPDATE SET "
            "requests = quota_ledger.requests + excluded.requests",
            (credential, day, requests),
        )])

    def requests_on(self, credential: str, day: int) -> int:
        """Requests the ledger counts under ``credential`` on quota day ``day``."""
        found = self._select(
            f"SELECT requests FROM quota_ledger WHERE credential = {self._MARK} "  # noqa: S608
            f"AND day = {self._MARK}",
            (credential, day),
        )
        return int(found[0][0]) if found else 0

    def allowance(self, credential: str) -> CredentialAllowance:
        """What is kept of ``credential``'s allowance (all unknown if nothing is)."""
        found = self._select(
            f"SELECT {', '.join(ALLOWANCE_COLUMNS)} FROM allowance "  # noqa: S608 - fixed names
            f"WHERE credential = {self._MARK}",
            (credential,),
        )
        if not found:
            return CredentialAllowance()
        spent, rate, quota, reset = found[0]
        return CredentialAllowance(
            None if spent is None else int(spent), None if rate is None else float(rate),
            None if quota is None else int(quota), float(reset or 0.0),
        )

    def set_allowance(self, credential: str, allowance: CredentialAllowance) -> None:
        """Keep ``allowance`` as ``credential``'s, replacing what was kept."""
        mark = self._MARK
        values = (allowance.spent_until_ms, allowance.learnt_rate, allowance.daily_quota,
                  allowance.quota_reset)
        self._execute("write the allowance", [(
            f"INSERT INTO allowance (credential, {', '.join(ALLOWANCE_COLUMNS)}) "  # noqa: S608 - fixed names
            f"VALUES ({', '.join([mark] * (len(ALLOWANCE_COLUMNS) + 1))}) "
            "ON CONFLICT (credential) DO UPDATE SET "
            + ", ".join(f"{name} = excluded.{name}" for name in ALLOWANCE_COLUMNS),
            (credential, *values),
        )])

    def set_last_run(self, website_id: str, at_ms: int | None, credential: str) -> None:
        """Record that a complete run of ``website_id`` ended at ``at_ms`` (epoch ms; None:
        a run began, the last complete one stays), its requests spent under
        ``credential``."""
        mark = self._MARK
        self._execute("write the allowance", [(
            f"INSERT INTO sync_state (website_id, last_run_ms, credential) "  # noqa: S608 - fixed text
            f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT (website_id) DO UPDATE SET "
            "last_run_ms = COALESCE(excluded.last_run_ms, sync_state.last_run_ms), "
            "credential = excluded.credential",
            (website_id, at_ms, credential),
        )])


QUARANTINE_COLUMNS = (
    "website_id", "kind", "session_id", "ident", "raw", "reason", "quarantined_ms"
)
"""The columns of the ``quarantine`` table, the first four its key."""


class SqlQuarantine:
    """The quarantine table and the website status, written once over SQL: a store
    inheriting it gives its placeholder (``_MARK``) and ``_select``, which runs one query and
    returns its rows."""

    _MARK: ClassVar[str]

    def _select(self, sql: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    @classmethod
    def _quarantine_statement(cls) -> str:
        """Puts one row aside; a row put aside again keeps one entry, with its latest raw
        answer, reason and time."""
        names = ", ".join(QUARANTINE_COLUMNS)
        marks = ", ".join([cls._MARK] * len(QUARANTINE_COLUMNS))
        return (
            f"INSERT INTO quarantine ({names}) VALUES ({marks}) "  # noqa: S608 - fixed names
            "ON CONFLICT (website_id, kind, session_id, ident) DO UPDATE SET "
            "raw = excluded.raw, reason = excluded.reason, "
            "quarantined_ms = excluded.quarantined_ms"
        )

    @staticmethod
    def _quarantine_values(
        website_id: str, aside: Iterable[Quarantined], now_ms: int
    ) -> list[tuple[Any, ...]]:
        return [(website_id, q.kind, q.session_id, q.ident, q.raw, q.reason, now_ms)
                for q in aside]

    def quarantined(self, website_id: str) -> int:
        """How many rows of the website the quarantine table holds."""
        [(count,)] = self._select(
            f"SELECT count(*) FROM quarantine WHERE website_id = {self._MARK}",  # noqa: S608
            (website_id,),
        )
        return int(count)

    def statuses(self) -> list[WebsiteStatus]:
        """Every website this store holds anything of (state, conversations or quarantined
        rows), by id."""
        return [
            WebsiteStatus(website_id, checkpoint, people, int(quarantined), last_run,
                          credential)
            for website_id, checkpoint, people, quarantined, last_run, credential
            in self._select(
                "SELECT w.website_id, s.checkpoint_ms, s.people_listed_ms,"
                " (SELECT count(*) FROM quarantine q WHERE q.website_id = w.website_id),"
                " s.last_run_ms, s.credential"
                " FROM (SELECT website_id FROM sync_state"
                " UNION SELECT website_id FROM quarantine"
                " UNION SELECT DISTINCT website_id FROM conversations) AS w"
                " LEFT JOIN sync_state AS s ON s.website_id = w.website_id"
                " ORDER BY w.website_id",
                (),
            )
        ]
