"""`SQLiteStore`: the embedded default store (stdlib sqlite3, WAL, upserts in transactions).

Each row is kept as the JSON text Crisp sent, value for value: integers of any size, U+0000,
and lone UTF-16 surrogates (written as JSON escapes, ``\\ud800``, so the UTF-8 text holds
them) all read back as they came. Only a row whose key cannot be stored goes to the
``quarantine`` table instead (see `crisp_api.sync.store`).

The file, its schema and its migration from older releases are `sqlite_database`'s; the
website locks are `sqlite_locks`'; the SQL both stores share is `sql_store`'s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from crisp_api.json_codec import compact_text, parse_text
from crisp_api.sync import rows
from crisp_api.sync.schema import SQLITE_VERSION as SCHEMA_VERSION
from crisp_api.sync.sql_dialect import Cursor
from crisp_api.sync.sql_store import SqlStore
from crisp_api.sync.sqlite_database import SqliteDatabase
from crisp_api.sync.sqlite_locks import SqliteLocks
from crisp_api.sync.store import Changes, ConversationState, MessageSpan, Row

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

_Upsert = tuple[tuple[Any, ...], tuple[Any, ...], Row]
"""A row to upsert: its key values, its other columns' values, its JSON document."""
_KEYS = ("session_id", "fingerprint")
_MESSAGE_COLUMNS = ("website_id", "timestamp", "from_event")
"""A message row's key, and its columns besides them and ``data``."""


class SQLiteStore(SqlStore[SqliteDatabase]):
    """A SQLite database holding each row's full JSON, keyed as the API keys it.

    WAL lets readers (your queries) run while a sync writes. ``busy_timeout`` (seconds) is
    how long a write waits for another program's transaction before failing with a
    transient `StoreError` (see `SqliteDatabase`).
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        super().__init__(
            SqliteDatabase(self.path, busy_timeout=busy_timeout, configure=self._configure)
        )
        self._locks = SqliteLocks(self._db)

    def _configure(self, db: sqlite3.Connection) -> None:
        """Set the connection's pragmas before the schema is checked.

        A subclass may extend it to set more (tests cap the file with ``max_page_count``).
        """
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        """What is stored of ``session_id`` (both fields ``None`` for a new conversation)."""
        if not rows.is_key(session_id):
            return ConversationState(None, None)  # nothing is stored under such a key
        with self._db.statement("conversation_state") as db:
            row = db.execute(
                "SELECT updated_at FROM conversations WHERE session_id = ?", (session_id,)
            ).fetchone()
            newest = db.execute(
                "SELECT MAX(timestamp) FROM messages WHERE session_id = ? AND from_event = 0",
                (session_id,),
            ).fetchone()
        return ConversationState(
            updated_at=None if row is None else row[0],
            newest_message=None if newest is None else newest[0],
        )

    def _stale_keyed(self, cur: Cursor, keyed: dict[str, int]
                     ) -> Iterable[tuple[str, int | None]]:
        """`SqlStore.stale_of`'s query: the page's ids and stamps go in as one JSON object,
        joined to the covering index, and only the stale come back."""
        return cur.execute(_STALE, (compact_text(keyed)[0],)).fetchall()

    def updated_at_of(self, website_id: str, session_ids: Sequence[str]) -> dict[str, int]:
        """The stored ``updated_at`` of those of ``session_ids`` that have one, one query a
        chunk of ids (`crisp_api.sync.store.BatchStates`)."""
        found: dict[str, int] = {}
        with self._db.statement("updated_at_of") as db:
            for chunk in _chunks(session_ids):
                found.update(db.execute(
                    f"SELECT session_id, updated_at FROM conversations "  # noqa: S608 - marks
                    f"WHERE session_id IN ({', '.join('?' * len(chunk))}) "
                    "AND updated_at IS NOT NULL", chunk))
        return found

    def newest_messages(self, website_id: str, session_ids: Sequence[str]) -> dict[str, int]:
        """The timestamp of the newest message a sync read, for those of ``session_ids`` that
        have one, one query a chunk of ids (`crisp_api.sync.store.BatchStates`): a subquery
        each, which walks the session's timestamp index from its newest entry (an aggregate
        over ``IN (...)`` read every message of the chunk)."""
        found: dict[str, int] = {}
        newest = ("SELECT ?, (SELECT timestamp FROM messages WHERE session_id = ? "
                  "AND from_event = 0 ORDER BY timestamp DESC LIMIT 1)")
        with self._db.statement("newest_messages") as db:
            for chunk in _chunks(session_ids):
                query = " UNION ALL ".join([newest] * len(chunk))
                found.update((session_id, stamp) for session_id, stamp in db.execute(
                    query, [value for session_id in chunk for value in (session_id,) * 2])
                    if stamp is not None)
        return found

    def save_conversation(
        self, website_id: str, conversation: Row, span: MessageSpan
    ) -> tuple[Changes, Changes]:
        """Upsert the conversation and its ``span`` of messages, removing the stored messages
        of the span Crisp no longer has; (conversation, message) changes, all in one
        transaction, the conversation row last. Rows that cannot be keyed are put aside in
        the same transaction.
        """
        with self._db.transaction("save_conversation") as db:
            session_id, updated_at, conversation_aside = rows.key_conversation(conversation)
            keyed, aside = rows.key_messages(session_id, span.messages)
            message_changes = Changes(quarantined=len(aside))
            conversation_changes = Changes()
            if session_id is not None:
                present = _stored_messages(db, session_id)
                messages: list[_Upsert] = [
                    ((session_id, m.fingerprint), (website_id, m.timestamp, 0), m.row)
                    for m in keyed
                ]
                kept = {m.fingerprint for m in keyed}
                upserted = self._upsert(db, "messages", _KEYS, _MESSAGE_COLUMNS, messages,
                                        maybe_stored=[(session_id, fingerprint)
                                                      for fingerprint in kept & present.keys()])
                removed = _remove_absent(db, session_id, present, kept,
                                         since=rows.bounded(span.since),
                                         until=rows.bounded(span.until))
                _mark_read(db, session_id, present, kept)
                message_changes += upserted + Changes(removed=removed)
                if conversation_aside is None:
                    conversation_changes = self._upsert(
                        db, "conversations", ("session_id",), ("website_id", "updated_at"),
                        [((session_id,), (website_id, updated_at), conversation)])
            if conversation_aside is not None:
                aside.append(conversation_aside)
                conversation_changes = Changes(quarantined=1)
            self._put_aside(db, website_id, aside)
        return conversation_changes, message_changes

    def saving_together(self) -> AbstractContextManager[None]:
        """One transaction around the saves this thread makes in the block, each of them a
        savepoint (`crisp_api.sync.store.GroupCommit`): a commit per group of conversations
        instead of one each."""
        return self._db.group("save conversations together")

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        """Upsert people profiles, keyed by website and ``people_id``, in one transaction."""
        return self._save_keyed(website_id, rows.PEOPLE, profiles)

    def save_operators(self, website_id: str, operators: Sequence[Row]) -> Changes:
        """Upsert the website's operators, keyed by their user id, in one transaction."""
        return self._save_keyed(website_id, rows.OPERATORS, operators)

    def _save_keyed(self, website_id: str, listed: rows.Listed, found: Sequence[Row]) -> Changes:
        """Upsert rows of a website keyed by ``key_of``, those without a key put aside."""
        with self._db.transaction(f"save {listed.table}") as db:
            keyed, aside = rows.key_rows(listed, found)
            upserts: list[_Upsert] = [((website_id, k), (), row) for k, row in keyed.items()]
            changes = self._upsert(db, listed.table, ("website_id", listed.column), (), upserts)
            self._put_aside(db, website_id, aside)
        return changes + Changes(quarantined=len(aside))

    def _upsert(
        self, db: sqlite3.Connection, table: str, keys: tuple[str, ...],
        columns: tuple[str, ...], upserts: list[_Upsert], *,
        maybe_stored: list[tuple[Any, ...]] | None = None,
    ) -> Changes:
        """Insert or update ``upserts`` (key values, the values of ``columns``, JSON) and
        count what changed.

        Batched: the stored documents are read a chunk of keys per query (only those of
        ``maybe_stored``, when the caller knows which keys are stored: none to read on a
        first copy) and only the rows that differ are written, in one ``executemany``. A key
        given twice counts once, the last wins.
        """
        latest = {key_values: (*key_values, *values, rows.document(doc))
                  for key_values, values, doc in upserts}
        if not latest:
            return Changes()
        wanted = list(latest) if maybe_stored is None else maybe_stored
        stored = _stored_documents(db, table, keys, wanted) if wanted else {}
        changed = ([row for key_values, row in latest.items()
                    if stored.get(key_values) != row[-1]] if stored else list(latest.values()))
        if changed:
            db.executemany(self._db.upsert(table, keys, (*columns, "data")), changed)
        added = sum(1 for key_values in latest if key_values not in stored) if stored else len(
            latest)
        return Changes(added, len(changed) - added)

    def save_message(self, website_id: str, session_id: str, message: Row) -> Changes:
        """Upsert one message from a live event; a message a sync already read keeps
        counting as read; a message that cannot be keyed is put aside."""
        with self._db.transaction("save_message") as db:
            keyed, aside = rows.key_messages(
                session_id if rows.is_key(session_id) else None, [message])
            self._put_aside(db, website_id, aside)
            if aside:
                return Changes(quarantined=len(aside))
            [m] = keyed
            found = db.execute(
                "SELECT from_event FROM messages WHERE session_id = ? AND fingerprint = ?",
                (session_id, m.fingerprint),
            ).fetchone()
            row: _Upsert = ((session_id, m.fingerprint),
                            (website_id, m.timestamp, 1 if found is None else found[0]), m.row)
            return self._upsert(db, "messages", _KEYS, _MESSAGE_COLUMNS, [row])

    def edit_message(
        self, website_id: str, session_id: str, fingerprint: int, content: Any
    ) -> Changes:
        """Set a stored message's ``content``; nothing if it is not stored."""
        if not (rows.is_key(session_id) and rows.is_key(fingerprint)):
            return Changes()
        with self._db.transaction("edit_message") as db:
            return _merge(db, "messages", ("session_id", "fingerprint"),
                          (session_id, fingerprint), {"content": content})

    def update_conversation(self, website_id: str, session_id: str, fields: Row) -> Changes:
        """Merge ``fields`` into a stored conversation; nothing if it is not stored."""
        if not rows.is_key(session_id):
            return Changes()
        with self._db.transaction("update_conversation") as db:
            return _merge(db, "conversations", ("session_id",), (session_id,), fields)

    def is_empty(self) -> bool:
        """Whether no row of any kind is stored (a run that never got going)."""
        with self._db.statement("read") as db:
            return not any(
                db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()  # noqa: S608 - fixed names
                for table in ("conversations", "messages", "people", "operators", "sync_state",
                              "quarantine")
            )

    def lock(self, website_id: str) -> AbstractContextManager[None]:
        """Hold ``website_id`` for one run; `WebsiteLockedError` if a live run holds it.

        The lock is a row of ``sync_locks``, so it binds every program using this database
        (see `sqlite_locks`).
        """
        return self._locks.hold(website_id)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    def ping(self) -> None:
        """Ask the database for a trivial answer (follow mode's health probe); `StoreError`
        if it cannot give one."""
        with self._db.statement("ping") as db:
            db.execute("SELECT 1").fetchone()


_STALE = """
SELECT listed.key, stored.updated_at FROM json_each(?) AS listed
LEFT JOIN conversations AS stored INDEXED BY conversations_stamp ON stored.session_id = listed.key
WHERE stored.updated_at IS NULL OR stored.updated_at < listed.value
"""
"""`SQLiteStore._stale_keyed`'s statement: a listed stamp is an integer within 64 bits,
which ``json_each`` gives as an INTEGER, so the comparison is exact. The covering index is
named: SQLite's planner takes the primary key's, which reads each conversation's row (a
table page per conversation in a fresh process)."""

_KEYS_PER_QUERY = 300
"""Keys looked up per query (SQLite allows 999 parameters in older builds)."""


def _chunks(session_ids: Sequence[str]) -> Iterator[list[str]]:
    """The session ids a store can key, distinct, a query's worth at a time."""
    wanted = [session_id for session_id in dict.fromkeys(session_ids) if rows.is_key(session_id)]
    for start in range(0, len(wanted), _KEYS_PER_QUERY // 2):
        yield wanted[start:start + _KEYS_PER_QUERY // 2]


def _stored_documents(
    db: sqlite3.Connection, table: str, keys: tuple[str, ...], wanted: list[tuple[Any, ...]]
) -> dict[tuple[Any, ...], str]:
    """The stored JSON of each key of ``wanted`` that is stored.

    Keys are looked up by their leading columns' values, then ``last IN (...)``: a shape the
    primary key's index serves (SQLite scans the whole table for a row-value ``IN (VALUES
    ...)``, which made each save slower as the table grew).
    """
    found: dict[tuple[Any, ...], str] = {}
    *leading, last = keys
    by_lead: dict[tuple[Any, ...], list[Any]] = {}
    for key in wanted:
        by_lead.setdefault(tuple(key[:-1]), []).append(key[-1])
    where = "".join(f"{name} = ? AND " for name in leading)
    for lead, lasts in by_lead.items():
        for start in range(0, len(lasts), _KEYS_PER_QUERY):
            chunk = lasts[start:start + _KEYS_PER_QUERY]
            query = (
                f"SELECT {last}, data FROM {table} "  # noqa: S608 - fixed names
                f"WHERE {where}{last} IN ({', '.join('?' * len(chunk))})"
            )
            for value, data in db.execute(query, [*lead, *chunk]):
                found[(*lead, value)] = data
    return found


def _merge(
    db: sqlite3.Connection,
    table: str,
    keys: tuple[str, ...],
    key_values: tuple[Any, ...],
    fields: Row,
) -> Changes:
    """Merge ``fields`` into the JSON of the row at ``key_values``, if there is one."""
    where = " AND ".join(f"{k} = ?" for k in keys)
    found = db.execute(f"SELECT data FROM {table} WHERE {where}", key_values).fetchone()  # noqa: S608 - fixed names
    if found is None:
        return Changes()
    merged = {**parse_text(found[0]), **fields}
    data = rows.document(merged)
    if data == found[0]:
        return Changes()
    db.execute(f"UPDATE {table} SET data = ? WHERE {where}", (data, *key_values))  # noqa: S608 - fixed names
    return Changes(updated=1)


_Present = dict[int, tuple[int, int]]
"""A conversation's stored messages before a save: fingerprint to (timestamp, from_event)."""


def _stored_messages(db: sqlite3.Connection, session_id: str) -> _Present:
    """What a save needs to know of the conversation's stored messages, in one read (which
    of the span are stored, which to remove, which to mark read): nothing on a first copy."""
    return {fingerprint: (stamp, from_event) for fingerprint, stamp, from_event in db.execute(
        "SELECT fingerprint, timestamp, from_event FROM messages WHERE session_id = ?",
        (session_id,))}


def _mark_read(db: sqlite3.Connection, session_id: str, present: _Present,
               fingerprints: set[int]) -> None:
    """Count the messages a sync just read as read, those stored from live events included
    (an unchanged row is not rewritten by the upsert, so its mark is set here); ``present``
    is what was stored before the save."""
    flagged = [(session_id, fingerprint) for fingerprint, (_, from_event) in present.items()
               if from_event == 1 and fingerprint in fingerprints]
    if flagged:
        db.executemany(
            "UPDATE messages SET from_event = 0 WHERE session_id = ? AND fingerprint = ?",
            flagged)


def _remove_absent(
    db: sqlite3.Connection,
    session_id: str,
    present: _Present,
    kept: set[int],
    *,
    since: int | None,
    until: int | None,
) -> int:
    """Delete the conversation's messages (``present``: those stored before the save) newer
    than ``since`` (all if None), up to ``until`` (no bound if None), whose fingerprint is not
    in ``kept``; how many were deleted."""
    absent = [
        (session_id, fingerprint) for fingerprint, (stamp, _) in present.items()
        if fingerprint not in kept
        and (since is None or stamp > since) and (until is None or stamp <= until)
    ]
    if absent:
        db.executemany("DELETE FROM messages WHERE session_id = ? AND fingerprint = ?", absent)
    return len(absent)
