"""`SQLiteStore`: the embedded default store (stdlib sqlite3, WAL, upserts in transactions).

Each row is kept as the JSON text Crisp sent, value for value: integers of any size, U+0000,
and lone UTF-16 surrogates (written as JSON escapes, ``\\ud800``, so the UTF-8 text holds
them) all read back as they came. Only a row whose key cannot be stored goes to the
``quarantine`` table instead (see `crisp_api.sync.store`).

The schema carries its version in ``PRAGMA user_version``. A database written by an older
release (version 0: messages keyed by fingerprint alone, people by ``people_id`` alone;
version 1: no ``from_event`` column; version 2: no ``quarantine`` table; version 3: no quota
ledger, allowance nor last complete run) is migrated in place,
in one transaction, the first time it is opened: every row is kept.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from crisp_api.sync import rows
from crisp_api.sync.store import (
    Changes,
    ConversationState,
    MessageSpan,
    Row,
    SqlAllowance,
    SqlQuarantine,
    SqlRemovals,
    StoreError,
    WebsiteLockedError,
    WebsiteState,
)

SCHEMA_VERSION = 4
"""The schema this module writes, kept in ``PRAGMA user_version`` (0: the first release's;
1: keyed per conversation; 2: messages know whether a live event stored them; 3: rows that
cannot be keyed are put aside in ``quarantine``; 4: the quota ledger, each credential's
allowance and each website's last complete run)."""
LOCK_EXPIRY_SECONDS = 120.0
"""A lock taken on another host is dead once its heartbeat is older than this."""
HEARTBEAT_SECONDS = 30.0
"""How often a held lock refreshes its heartbeat (well within `LOCK_EXPIRY_SECONDS`)."""

TABLES = {
    "conversations": """CREATE TABLE {name} (
        session_id TEXT PRIMARY KEY,
        website_id TEXT NOT NULL,
        updated_at INTEGER,
        data TEXT NOT NULL
    )""",
    "messages": """CREATE TABLE {name} (
        session_id TEXT NOT NULL,
        fingerprint INTEGER NOT NULL,
        website_id TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        data TEXT NOT NULL,
        from_event INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, fingerprint)
    )""",
    "people": """CREATE TABLE {name} (
        website_id TEXT NOT NULL,
        people_id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (website_id, people_id)
    )""",
    "operators": """CREATE TABLE {name} (
        website_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (website_id, user_id)
    )""",
    "sync_state": """CREATE TABLE {name} (
        website_id TEXT PRIMARY KEY,
        checkpoint_ms INTEGER,
        people_listed_ms INTEGER,
        last_run_ms INTEGER,
        credential TEXT
    )""",
    "sync_locks": """CREATE TABLE {name} (
        website_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        token TEXT NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        acquired_ms INTEGER NOT NULL
    )""",
    "quarantine": """CREATE TABLE {name} (
        website_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        session_id TEXT NOT NULL,
        ident TEXT NOT NULL,
        raw TEXT NOT NULL,
        reason TEXT NOT NULL,
        quarantined_ms INTEGER NOT NULL,
        PRIMARY KEY (website_id, kind, session_id, ident)
    )""",
    "quota_ledger": """CREATE TABLE {name} (
        credential TEXT NOT NULL,
        day INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (credential, day)
    )""",
    "allowance": """CREATE TABLE {name} (
        credential TEXT PRIMARY KEY,
        spent_until_ms INTEGER,
        learnt_rate REAL,
        daily_quota INTEGER,
        quota_reset REAL NOT NULL DEFAULT 0
    )""",
}
"""Each table of the current schema, ``{name}`` standing for its name (a migration builds
the new table beside the old one before swapping them)."""
INDEXES = (
    "CREATE INDEX IF NOT EXISTS conversations_website ON conversations (website_id, updated_at)",
    "CREATE INDEX IF NOT EXISTS messages_session ON messages (session_id, timestamp)",
)

_PERMANENT = frozenset(
    {
        "SQLITE_READONLY",
        "SQLITE_FULL",
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
        "SQLITE_CANTOPEN",
        "SQLITE_PERM",
        "SQLITE_IOERR",
    }
)
"""Primary SQLite result codes a rerun cannot get past until someone acts."""
_ERROR_TEXTS = {
    "attempt to write a readonly database": "SQLITE_READONLY",
    "database or disk is full": "SQLITE_FULL",
    "database disk image is malformed": "SQLITE_CORRUPT",
    "file is not a database": "SQLITE_NOTADB",
    "unable to open database file": "SQLITE_CANTOPEN",
    "access permission denied": "SQLITE_PERM",
    "disk I/O error": "SQLITE_IOERR",
}
"""SQLite's own texts for those codes, for an error that does not carry its code name."""

_Upsert = tuple[tuple[Any, ...], dict[str, Any], Row]
"""A row to upsert: its key values, its other columns, its JSON document."""

_held_tokens: set[str] = set()
"""Tokens of the website locks this process holds, to tell them from ones it failed to free."""

logger = logging.getLogger(__name__)


class SQLiteStore(WebsiteState, SqlRemovals, SqlQuarantine, SqlAllowance):
    """A SQLite database holding each row's full JSON, keyed as the API keys it.

    One connection serialised by a lock: SQLite has one writer at a time anyway, and the
    sync's time goes to the network, not here. WAL lets readers (your queries) run while a
    sync writes. ``busy_timeout`` (seconds) is how long a write waits for another program's
    transaction before failing with a transient `StoreError`.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        with self._errors():
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
            )
        try:
            with self._errors():
                self._configure(self._db)
                self._upgrade(self._db)
        except BaseException:
            self._db.close()
            raise

    def _configure(self, db: sqlite3.Connection) -> None:
        """Set the connection's pragmas before the schema is checked.

        A subclass may extend it to set more (tests cap the file with ``max_page_count``).
        """
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """Create the schema in a new database, or migrate an older one in one transaction."""
        if _user_version(db) == SCHEMA_VERSION:
            return
        with _immediate(db):
            version = _user_version(db)  # another program may have upgraded it meanwhile
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite database {self.path}: schema version {version} is newer than "
                    f"this release's ({SCHEMA_VERSION}); upgrade crisp-api-next",
                    permanent=True,
                )
            if version < SCHEMA_VERSION:
                for table, definition in TABLES.items():
                    self._shape_table(db, table, definition)
                for index in INDEXES:
                    db.execute(index)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _shape_table(self, db: sqlite3.Connection, table: str, definition: str) -> None:
        """Create ``table``, or rebuild it if it has another shape, copying every row.

        The rebuild is SQLite's documented way to change a primary key: create the new
        table, copy the rows, drop the old one, rename the new one. Its indexes go with
        the old table and are recreated by the caller.
        """
        old = _columns(db, table)
        if not old:
            db.execute(definition.format(name=table))
            return
        staging = f"{table}_migrating"
        db.execute(definition.format(name=staging))
        new = _columns(db, staging)
        if old == new:
            db.execute(f"DROP TABLE {staging}")
            return
        if unknown := sorted(set(old) - set(new)):
            raise StoreError(
                f"SQLite database {self.path}: table {table} has columns this release does "
                f"not know ({', '.join(unknown)}); not migrating it, to lose nothing",
                permanent=True,
            )
        shared = ", ".join(name for name in new if name in old)
        db.execute(f"INSERT INTO {staging} ({shared}) SELECT {shared} FROM {table}")  # noqa: S608 - fixed names
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE {staging} RENAME TO {table}")

    @contextmanager
    def _errors(self, operation: str = "a query") -> Iterator[None]:
        """Raise SQLite's errors as `StoreError`, naming this database; and any other error
        (a value the driver refused, a bug) as a transient one naming ``operation``, never
        the row."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from exc
        except (StoreError, WebsiteLockedError):
            raise
        except Exception as exc:
            raise StoreError(
                f"SQLite database {self.path}: {operation} failed ({type(exc).__name__})",
                permanent=False,
            ) from exc

    @contextmanager
    def _serialised(self, operation: str) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone, its errors raised as `StoreError`."""
        with self._errors(operation), self._lock:
            yield self._db

    @contextmanager
    def _transaction(self, operation: str) -> Iterator[sqlite3.Connection]:
        """The connection inside a write transaction, committed if the block succeeds."""
        with self._serialised(operation) as db, _immediate(db):
            yield db

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        """What is stored of ``session_id`` (both fields ``None`` for a new conversation)."""
        if not rows.is_key(session_id):
            return ConversationState(None, None)  # nothing is stored under such a key
        with self._serialised("conversation_state") as db:
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

    def save_conversation(
        self, website_id: str, conversation: Row, span: MessageSpan
    ) -> tuple[Changes, Changes]:
        """Upsert the conversation and its ``span`` of messages, removing the stored messages
        of the span Crisp no longer has; (conversation, message) changes, all in one
        transaction, the conversation row last. Rows that cannot be keyed are put aside in
        the same transaction.
        """
        with self._transaction("save_conversation") as db:
            session_id, updated_at, conversation_aside = rows.key_conversation(conversation)
            keyed, aside = rows.key_messages(session_id, span.messages)
            message_changes = Changes(quarantined=len(aside))
            conversation_changes = Changes()
            if session_id is not None:
                messages: list[_Upsert] = [
                    ((session_id, m.fingerprint),
                     {"website_id": website_id, "timestamp": m.timestamp, "from_event": 0},
                     m.row)
                    for m in keyed
                ]
                upserted = _upsert(db, "messages", ("session_id", "fingerprint"), messages)
                kept = {m.fingerprint for m in keyed}
                removed = _remove_absent(db, session_id, rows.bounded(span.since),
                                         rows.bounded(span.until), kept)
                _mark_read(db, session_id, kept)
                message_changes += upserted + Changes(removed=removed)
                if conversation_aside is None:
                    conversation_changes = _upsert(db, "conversations", ("session_id",), [
                        ((session_id,), {"website_id": website_id, "updated_at": updated_at},
                         conversation)])
            if conversation_aside is not None:
                aside.append(conversation_aside)
                conversation_changes = Changes(quarantined=1)
            self._put_aside(db, website_id, aside)
        return conversation_changes, message_changes

    def _put_aside(
        self, db: sqlite3.Connection, website_id: str, aside: list[rows.Quarantined]
    ) -> None:
        """Write rows that cannot be keyed to the quarantine table."""
        if aside:
            db.executemany(self._quarantine_statement(),
                           self._quarantine_values(website_id, aside, _now_ms()))

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        """Upsert people profiles, keyed by website and ``people_id``, in one transaction."""
        return self._save_keyed(website_id, rows.PEOPLE, profiles)

    def save_operators(self, website_id: str, operators: Sequence[Row]) -> Changes:
        """Upsert the website's operators, keyed by their user id, in one transaction."""
        return self._save_keyed(website_id, rows.OPERATORS, operators)

    def _save_keyed(self, website_id: str, listed: rows.Listed, found: Sequence[Row]) -> Changes:
        """Upsert rows of a website keyed by ``key_of``, those without a key put aside."""
        with self._transaction(f"save {listed.table}") as db:
            keyed, aside = rows.key_rows(listed, found)
            upserts: list[_Upsert] = [((website_id, k), {}, row) for k, row in keyed.items()]
            changes = _upsert(db, listed.table, ("website_id", listed.column), upserts)
            self._put_aside(db, website_id, aside)
        return changes + Changes(quarantined=len(aside))

    def save_message(self, website_id: str, session_id: str, message: Row) -> Changes:
        """Upsert one message from a live event; a message a sync already read keeps
        counting as read; a message that cannot be keyed is put aside."""
        with self._transaction("save_message") as db:
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
            row: _Upsert = (
                (session_id, m.fingerprint),
                {"website_id": website_id, "timestamp": m.timestamp,
                 "from_event": 1 if found is None else found[0]},
                m.row,
            )
            return _upsert(db, "messages", ("session_id", "fingerprint"), [row])

    def edit_message(
        self, website_id: str, session_id: str, fingerprint: int, content: Any
    ) -> Changes:
        """Set a stored message's ``content``; nothing if it is not stored."""
        if not (rows.is_key(session_id) and rows.is_key(fingerprint)):
            return Changes()
        with self._transaction("edit_message") as db:
            return _merge(db, "messages", ("session_id", "fingerprint"),
                          (session_id, fingerprint), {"content": content})

    def update_conversation(self, website_id: str, session_id: str, fields: Row) -> Changes:
        """Merge ``fields`` into a stored conversation; nothing if it is not stored."""
        if not rows.is_key(session_id):
            return Changes()
        with self._transaction("update_conversation") as db:
            return _merge(db, "conversations", ("session_id",), (session_id,), fields)

    _MARK = "?"

    def _execute(self, operation: str, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> int:
        with self._transaction(operation) as db:
            return sum(db.execute(sql, values).rowcount for sql, values in statements)

    def _select(self, sql: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._serialised("read") as db:
            return db.execute(sql, values).fetchall()

    def is_empty(self) -> bool:
        """Whether no row of any kind is stored (a run that never got going)."""
        with self._serialised("read") as db:
            return not any(
                db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()  # noqa: S608 - fixed names
                for table in ("conversations", "messages", "people", "operators", "sync_state",
                              "quarantine")
            )

    def _state(self, website_id: str, column: str) -> int | None:
        with self._serialised("read state") as db:
            row = db.execute(
                f"SELECT {column} FROM sync_state WHERE website_id = ?",  # noqa: S608 - fixed names
                (website_id,),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _set_state(self, website_id: str, column: str, value: int) -> None:
        """Set one column of the website's state, leaving the others as they are."""
        with self._transaction("set state") as db:
            db.execute(
                f"INSERT INTO sync_state (website_id, {column}) VALUES (?, ?) "  # noqa: S608 - fixed names
                f"ON CONFLICT (website_id) DO UPDATE SET {column} = excluded.{column}",
                (website_id, value),
            )

    @contextmanager
    def lock(self, website_id: str) -> Iterator[None]:
        """Hold ``website_id`` for one run; `WebsiteLockedError` if a live run holds it.

        The lock is a row of ``sync_locks``, so it binds every program using this database.
        A holder on this host is live while its process is (same pid and start time); on
        another host, while it refreshes its heartbeat (every `HEARTBEAT_SECONDS`, from a
        daemon thread) within `LOCK_EXPIRY_SECONDS`. A second run in this process is refused
        too, even through this same store.
        """
        token = self._acquire(website_id)
        stop = threading.Event()
        beating = threading.Thread(
            target=self._keep_alive,
            args=(website_id, token, stop),
            name=f"crisp-sync lock {website_id}",
            daemon=True,
        )
        beating.start()
        try:
            yield
        finally:
            stop.set()
            beating.join()
            self._release(website_id, token)

    def _acquire(self, website_id: str) -> str:
        """Take the website's lock row, unless a live run holds it; the row's token."""
        token = f"{_start_time(os.getpid())}:{secrets.token_hex(8)}"
        now = _now_ms()
        _held_tokens.add(token)  # before the commit, so no other store here sees it as stale
        try:
            with self._transaction("lock") as db:
                held = db.execute(
                    "SELECT host, pid, token, heartbeat_ms, acquired_ms FROM sync_locks "
                    "WHERE website_id = ?",
                    (website_id,),
                ).fetchone()
                if held is not None:
                    host, pid, held_token, heartbeat_ms, acquired_ms = held
                    if _is_live(host, pid, held_token, heartbeat_ms, now=now):
                        raise WebsiteLockedError(website_id, _holder(host, pid, acquired_ms))
                db.execute(
                    "INSERT OR REPLACE INTO sync_locks "
                    "(website_id, host, pid, token, heartbeat_ms, acquired_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (website_id, socket.gethostname(), os.getpid(), token, now, now),
                )
        except BaseException:
            _held_tokens.discard(token)
            raise
        return token

    def _keep_alive(self, website_id: str, token: str, stop: threading.Event) -> None:
        """Refresh the lock's heartbeat until ``stop``; a failed beat is logged and retried."""
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with self._transaction("lock heartbeat") as db:
                    db.execute(
                        "UPDATE sync_locks SET heartbeat_ms = ? WHERE website_id = ? AND token = ?",
                        (_now_ms(), website_id, token),
                    )
            except StoreError as exc:
                logger.warning("cannot refresh the lock of website %s: %s", website_id, exc)

    def _release(self, website_id: str, token: str) -> None:
        """Delete the lock row if it is still ours (another run may have taken it over)."""
        try:
            with self._transaction("unlock") as db:
                db.execute(
                    "DELETE FROM sync_locks WHERE website_id = ? AND token = ?",
                    (website_id, token),
                )
        finally:
            _held_tokens.discard(token)

    def close(self) -> None:
        """Close the database connection."""
        with self._serialised("close") as db:
            db.close()

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
        with self._serialised("ping") as db:
            db.execute("SELECT 1").fetchone()


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A ``BEGIN IMMEDIATE`` transaction (the write lock up front, so it cannot deadlock),
    committed if the block succeeds and rolled back otherwise."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            db.execute("ROLLBACK")
        raise


def _user_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _columns(db: sqlite3.Connection, table: str) -> dict[str, tuple[str, bool, int]]:
    """Each column of ``table`` (none if it does not exist): its type, NOT NULL and place
    in the primary key, which is what tells an older schema from the current one."""
    return {
        name: (kind.upper(), bool(not_null), key_place)
        for _, name, kind, not_null, _, key_place in db.execute(f"PRAGMA table_info({table})")
    }


def _upsert(
    db: sqlite3.Connection,
    table: str,
    keys: tuple[str, ...],
    upserts: list[_Upsert],
) -> Changes:
    """Insert or update ``upserts`` (key values, other columns, JSON) and count what changed.

    Batched: the stored documents are read a chunk of keys per query and only the rows that
    differ are written, in one ``executemany``. A key given twice counts once, the last wins.
    """
    latest = {key_values: (columns, rows.document(doc)) for key_values, columns, doc in upserts}
    if not latest:
        return Changes()
    stored = _stored_documents(db, table, keys, list(latest))
    changed = [
        (*key_values, *columns.values(), data)
        for key_values, (columns, data) in latest.items()
        if stored.get(key_values) != data
    ]
    if changed:
        columns = next(iter(latest.values()))[0]
        names = (*keys, *columns, "data")
        assignments = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
        db.executemany(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "  # noqa: S608 - fixed names
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {assignments}",
            changed,
        )
    added = sum(1 for key_values in latest if key_values not in stored)
    return Changes(added, len(changed) - added)


_KEYS_PER_QUERY = 300
"""Keys looked up per query (SQLite allows 999 parameters in older builds)."""


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
    merged = {**json.loads(found[0]), **fields}
    data = rows.document(merged)
    if data == found[0]:
        return Changes()
    db.execute(f"UPDATE {table} SET data = ? WHERE {where}", (data, *key_values))  # noqa: S608 - fixed names
    return Changes(updated=1)


def _mark_read(db: sqlite3.Connection, session_id: str, fingerprints: set[int]) -> None:
    """Count the messages a sync just read as read, those stored from live events included
    (an unchanged row is not rewritten by the upsert, so its mark is set here)."""
    flagged = db.execute(
        "SELECT fingerprint FROM messages WHERE session_id = ? AND from_event = 1", (session_id,)
    ).fetchall()
    db.executemany(
        "UPDATE messages SET from_event = 0 WHERE session_id = ? AND fingerprint = ?",
        [(session_id, fingerprint) for (fingerprint,) in flagged if fingerprint in fingerprints],
    )


def _remove_absent(
    db: sqlite3.Connection,
    session_id: str,
    since: int | None,
    until: int | None,
    kept: set[int],
) -> int:
    """Delete the conversation's messages newer than ``since`` (all if None), up to
    ``until`` (no bound if None), whose fingerprint is not in ``kept``; how many were
    deleted."""
    stored = db.execute(
        "SELECT fingerprint FROM messages WHERE session_id = ? AND (? IS NULL OR timestamp > ?)"
        " AND (? IS NULL OR timestamp <= ?)",
        (session_id, since, since, until, until),
    ).fetchall()
    absent = [(session_id, fingerprint) for (fingerprint,) in stored if fingerprint not in kept]
    db.executemany("DELETE FROM messages WHERE session_id = ? AND fingerprint = ?", absent)
    return len(absent)


def _store_error(path: str, error: sqlite3.Error) -> StoreError:
    """``error`` as a one-line `StoreError` naming the database, permanent or not by its code."""
    text = " ".join(str(error).split()) or type(error).__name__
    name = getattr(error, "sqlite_errorname", None) or _ERROR_TEXTS.get(text)
    primary = "_".join(name.split("_")[:2]) if name else None  # SQLITE_IOERR_READ: SQLITE_IOERR
    return StoreError(
        f"SQLite database {path}: {text}" + (f" ({name})" if name else ""),
        permanent=primary in _PERMANENT,
    )


def _is_live(host: str, pid: int, token: str, heartbeat_ms: int, *, now: int) -> bool:
    """Whether the run that wrote this lock row still holds it (see `SQLiteStore.lock`)."""
    if host != socket.gethostname() or os.name != "posix":  # no safe pid probe on Windows
        return now - heartbeat_ms < LOCK_EXPIRY_SECONDS * 1000
    if pid == os.getpid():
        return token in _held_tokens
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    return _start_time(pid) == token.partition(":")[0]


def _start_time(pid: int) -> str:
    """When ``pid`` started (field 22 of ``/proc/<pid>/stat``, in clock ticks since boot),
    so a pid reused by another process is told apart; empty where there is no ``/proc``."""
    if not sys.platform.startswith("linux"):
        return ""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    # Fields after the command name, which sits in parentheses and may hold spaces: the
    # first of them is field 3 (state), so field 22 is at index 19.
    return stat.rpartition(")")[2].split()[19]


def _holder(host: str, pid: int, acquired_ms: int) -> str:
    since = datetime.fromtimestamp(acquired_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"pid {pid} on host {host} since {since}"


def _now_ms() -> int:
    return int(time.time() * 1000)
