"""`StateStore`: the store crisp-sync's engine writes to when it runs inside a dlt source.

It keeps no rows: every save turns into batches of rows handed to dlt (``emit``), which loads
them into the destination, and into marks in a state dictionary (dlt's source state), which
dlt commits in the same load. So the destination and the state move together: a run that
fails loads nothing and leaves the state as the last complete run left it.

The state holds what the engine asks a store (`crisp_api.sync.store.SyncStore`): each
website's checkpoint and people listing time, each conversation's ``updated_at``, and the
timestamp of each message a sync stored, by fingerprint. The engine's walk needs the newest of
these; the fingerprints let a re-read span (`MessageSpan`) name the stored messages Crisp no
longer lists, which reach the destination as deletions (rows flagged ``_deleted``, dlt's
``hard_delete`` column). It also holds the rows put aside (their identity only: the rows go to
the ``quarantine`` table) and the credential's allowance (`crisp_api.sync.allowance`): the
quota ledger and the learnt rate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from crisp_api.sync import rows
from crisp_api.sync.store import (
    Changes,
    ConversationState,
    CredentialAllowance,
    MessageSpan,
    Row,
)

CONVERSATIONS, MESSAGES, PEOPLE, OPERATORS, QUARANTINE = (
    "conversations", "messages", "people", "operators", "quarantine")
"""The tables the source loads."""
DELETED = "_deleted"
"""The column flagging a row as deleted (dlt's ``hard_delete`` hint)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows for one table, from one save."""

    table: str
    rows: list[dict[str, Any]]


Emit = Callable[[Batch], None]
"""Hands a batch to dlt; called from the engine's threads."""


class StateStore:
    """A `crisp_api.sync.store.SyncStore` (and `crisp_api.sync.allowance.AllowanceStore`)
    over ``state``, a dlt source state, handing its rows to ``emit``. Thread-safe: the
    engine's workers save conversations at once.

    It keeps no copy of the rows, so `Changes` counts a row read again as updated, changed
    or not (dlt's merge writes it again either way), and every listed profile and operator
    as updated."""

    def __init__(self, state: MutableMapping[str, Any], emit: Emit) -> None:
        self._state = state
        self._emit = emit
        self._lock = threading.Lock()

    def _website(self, website_id: str) -> dict[str, Any]:
        websites: dict[str, Any] = self._state.setdefault("websites", {})
        found: dict[str, Any] = websites.setdefault(website_id, {})
        return found

    def _conversations(self, website_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._website(website_id).setdefault("conversations", {})
        return found

    # What the engine reads and writes -------------------------------------------------------

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        """What is stored of ``session_id`` (both fields ``None`` for a new conversation)."""
        with self._lock:
            kept = self._conversations(website_id).get(session_id)
        if kept is None:
            return ConversationState(None, None)
        messages: dict[str, int] = kept["messages"]
        return ConversationState(kept.get("updated_at"),
                                 max(messages.values()) if messages else None)

    def save_conversation(
        self, website_id: str, conversation: Row, span: MessageSpan
    ) -> tuple[Changes, Changes]:
        """Emit the conversation and its span of messages, and deletions for the stored
        messages of the span Crisp no longer lists; note them in the state."""
        session_id, updated_at, conversation_aside = rows.key_conversation(conversation)
        keyed, aside = rows.key_messages(session_id, span.messages)
        message_rows = ([] if session_id is None
                        else [_message_row(website_id, session_id, m) for m in keyed])
        conversation_rows: list[dict[str, Any]] = []
        message_changes = Changes(quarantined=len(aside))
        conversation_changes = Changes()
        with self._lock:
            if session_id is not None:
                kept = self._conversations(website_id).setdefault(session_id, {"messages": {}})
                stored: dict[str, int] = kept["messages"]
                added = sum(1 for m in keyed if str(m.fingerprint) not in stored)
                fresh = {str(m.fingerprint) for m in keyed}
                absent = [fingerprint for fingerprint, timestamp in stored.items()
                          if fingerprint not in fresh and _within(timestamp, span)]
                for fingerprint in absent:
                    del stored[fingerprint]
                message_rows += [{"website_id": website_id, "session_id": session_id,
                                  "fingerprint": int(fingerprint), DELETED: True}
                                 for fingerprint in absent]
                stored.update((str(m.fingerprint), m.timestamp) for m in keyed)
                message_changes += Changes(added, len(keyed) - added, len(absent))
                if conversation_aside is None:
                    conversation_changes = (Changes(updated=1) if "updated_at" in kept
                                            else Changes(added=1))
                    kept["updated_at"] = updated_at
                    conversation_rows = [{
                        "website_id": website_id, "session_id": session_id,
                        "updated_at": updated_at, "data": rows.document(conversation)}]
            if conversation_aside is not None:
                aside.append(conversation_aside)
                conversation_changes = Changes(quarantined=1)
            aside_rows = self._put_aside(website_id, aside)
        self._emit_all([Batch(MESSAGES, message_rows), Batch(CONVERSATIONS, conversation_rows),
                        Batch(QUARANTINE, aside_rows)])
        return conversation_changes, message_changes

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        """Emit people profiles (keyed by website and ``people_id``)."""
        return self._save_listed(website_id, rows.PEOPLE, profiles)

    def save_operators(self, website_id: str, operators: Sequence[Row]) -> Changes:
        """Emit the website's operators (keyed by their user id)."""
        return self._save_listed(website_id, rows.OPERATORS, operators)

    def _save_listed(self, website_id: str, listed: rows.Listed, found: Sequence[Row]) -> Changes:
        keyed, aside = rows.key_rows(listed, found)
        with self._lock:
            aside_rows = self._put_aside(website_id, aside)
        self._emit_all([
            Batch(listed.table, [{"website_id": website_id, listed.column: key,
                                  "data": rows.document(row)} for key, row in keyed.items()]),
            Batch(QUARANTINE, aside_rows),
        ])
        return Changes(updated=len(keyed), quarantined=len(aside))

    def _put_aside(
        self, website_id: str, aside: Sequence[rows.Quarantined]
    ) -> list[dict[str, Any]]:
        """Note rows put aside in the state (under the lock); their rows for the
        ``quarantine`` table."""
        held: dict[str, int] = self._website(website_id).setdefault("quarantined", {})
        found = []
        for q in aside:
            held["\x1f".join((q.kind, q.session_id, q.ident))] = 1
            found.append({"website_id": website_id, "kind": q.kind,
                          "session_id": q.session_id, "ident": q.ident, "raw": q.raw,
                          "reason": q.reason})
        return found

    def _emit_all(self, batches: Sequence[Batch]) -> None:
        for batch in batches:
            if batch.rows:
                self._emit(batch)

    def checkpoint(self, website_id: str) -> int | None:
        """The watermark (Crisp's epoch ms) up to which every change is loaded, if any."""
        return self._mark(website_id, "checkpoint_ms")

    def set_checkpoint(self, website_id: str, until_ms: int) -> None:
        """Record that everything updated up to ``until_ms`` (Crisp's time) is loaded."""
        self._set_mark(website_id, "checkpoint_ms", until_ms)

    def people_listed_at(self, website_id: str) -> int | None:
        """When (epoch ms, this machine's clock) the last full people listing completed."""
        return self._mark(website_id, "people_listed_ms")

    def set_people_listed_at(self, website_id: str, at_ms: int) -> None:
        """Record that a full people listing completed at ``at_ms``."""
        self._set_mark(website_id, "people_listed_ms", at_ms)

    def _mark(self, website_id: str, name: str) -> int | None:
        """A time the website's state keeps under ``name``, if any."""
        with self._lock:
            found: int | None = self._website(website_id).get(name)
        return found

    def _set_mark(self, website_id: str, name: str, ms: int) -> None:
        with self._lock:
            self._website(website_id)[name] = ms

    def quarantined(self, website_id: str) -> int:
        """How many rows of the website were put aside (in the ``quarantine`` table)."""
        with self._lock:
            return len(self._website(website_id).get("quarantined", {}))

    def lock(self, website_id: str) -> AbstractContextManager[None]:
        """No lock: a dlt pipeline's runs are one at a time (its working folder and state are
        not shared between runs at once), which its scheduler ensures, not this store."""
        return nullcontext()

    # The allowance (crisp_api.sync.allowance.AllowanceStore) --------------------------------

    def count_requests(self, credential: str, day: int, requests: int) -> None:
        """Add ``requests`` sent under ``credential`` on quota day ``day`` to the ledger
        (only the current day is kept)."""
        if requests <= 0:
            return
        with self._lock:
            ledger = self._state.setdefault("ledger", {})
            kept = ledger.get(credential)
            count = kept["requests"] if kept is not None and kept["day"] == day else 0
            ledger[credential] = {"day": day, "requests": count + requests}

    def requests_on(self, credential: str, day: int) -> int:
        """Requests the ledger counts under ``credential`` on quota day ``day``."""
        with self._lock:
            kept = self._state.get("ledger", {}).get(credential)
        return int(kept["requests"]) if kept is not None and kept["day"] == day else 0

    def allowance(self, credential: str) -> CredentialAllowance:
        """What is kept of ``credential``'s allowance (all unknown if nothing is)."""
        with self._lock:
            kept = self._state.get("allowance", {}).get(credential)
        return CredentialAllowance() if kept is None else CredentialAllowance(**kept)

    def set_allowance(self, credential: str, allowance: CredentialAllowance) -> None:
        """Keep ``allowance`` as ``credential``'s, replacing what was kept."""
        with self._lock:
            self._state.setdefault("allowance", {})[credential] = asdict(allowance)

    def set_last_run(self, website_id: str, at_ms: int | None, credential: str) -> None:
        """Record that a complete run of ``website_id`` ended at ``at_ms`` (None: a run
        began), under ``credential``."""
        with self._lock:
            website = self._website(website_id)
            if at_ms is not None:
                website["last_run_ms"] = at_ms
            website["credential"] = credential


def _within(timestamp: int, span: MessageSpan) -> bool:
    """Whether a stored message's ``timestamp`` is in what ``span`` covers."""
    return ((span.since is None or timestamp > span.since)
            and (span.until is None or timestamp <= span.until))


def _message_row(website_id: str, session_id: str, message: rows.KeyedMessage) -> dict[str, Any]:
    return {"website_id": website_id, "session_id": session_id,
            "fingerprint": message.fingerprint, "timestamp": message.timestamp,
            "data": rows.document(message.row)}
