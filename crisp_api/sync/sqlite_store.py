"""`SQLiteStore`: the embedded default store (stdlib sqlite3, WAL, upserts in transactions)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from crisp_api.sync.store import Changes, ConversationState, Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    session_id TEXT PRIMARY KEY,
    website_id TEXT NOT NULL,
    updated_at INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_website ON conversations (website_id, updated_at);
CREATE TABLE IF NOT EXISTS messages (
    fingerprint INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    website_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_session ON messages (session_id, timestamp);
CREATE TABLE IF NOT EXISTS people (
    people_id TEXT PRIMARY KEY,
    website_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS operators (
    website_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (website_id, user_id)
);
CREATE TABLE IF NOT EXISTS sync_state (
    website_id TEXT PRIMARY KEY,
    checkpoint_ms INTEGER NOT NULL
);
"""


class SQLiteStore:
    """A SQLite database holding each row's full JSON, keyed as the API keys it.

    One connection serialised by a lock: SQLite has one writer at a time anyway, and the
    sync's time goes to the network, not here. WAL lets readers (your queries) run while a
    sync writes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        with self._lock:
            row = self._db.execute(
                "SELECT updated_at FROM conversations WHERE session_id = ?", (session_id,)
            ).fetchone()
            newest = self._db.execute(
                "SELECT MAX(timestamp) FROM messages WHERE session_id = ?", (session_id,)
            ).fetchone()
        return ConversationState(
            updated_at=None if row is None else row[0],
            newest_message=None if newest is None else newest[0],
        )

    def save_conversation(
        self, website_id: str, conversation: Row, messages: Sequence[Row]
    ) -> tuple[Changes, Changes]:
        session_id = _text(conversation, "session_id")
        with self._transaction() as db:
            message_changes = _upsert(
                db,
                "messages",
                ("fingerprint",),
                [
                    (
                        (_fingerprint(m),),
                        {
                            "session_id": session_id,
                            "website_id": website_id,
                            "timestamp": _integer(m, "timestamp"),
                        },
                        m,
                    )
                    for m in messages
                ],
            )
            conversation_changes = _upsert(
                db,
                "conversations",
                ("session_id",),
                [
                    (
                        (session_id,),
                        {
                            "website_id": website_id,
                            "updated_at": _optional_integer(conversation, "updated_at"),
                        },
                        conversation,
                    )
                ],
            )
        return conversation_changes, message_changes

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        with self._transaction() as db:
            return _upsert(
                db,
                "people",
                ("people_id",),
                [((_text(p, "people_id"),), {"website_id": website_id}, p) for p in profiles],
            )

    def save_operators(self, website_id: str, operators: Sequence[Row]) -> Changes:
        with self._transaction() as db:
            return _upsert(
                db,
                "operators",
                ("website_id", "user_id"),
                [((website_id, _operator_id(o)), {}, o) for o in operators],
            )

    def checkpoint(self, website_id: str) -> int | None:
        with self._lock:
            row = self._db.execute(
                "SELECT checkpoint_ms FROM sync_state WHERE website_id = ?", (website_id,)
            ).fetchone()
        return None if row is None else int(row[0])

    def set_checkpoint(self, website_id: str, until_ms: int) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sync_state (website_id, checkpoint_ms) VALUES (?, ?) "
                "ON CONFLICT (website_id) DO UPDATE SET checkpoint_ms = excluded.checkpoint_ms",
                (website_id, until_ms),
            )

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
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


def _upsert(
    db: sqlite3.Connection,
    table: str,
    keys: tuple[str, ...],
    rows: list[tuple[tuple[Any, ...], dict[str, Any], Row]],
) -> Changes:
    """Insert or update ``rows`` (key values, other columns, JSON) and count what changed."""
    if not rows:
        return Changes()
    where = " AND ".join(f"{k} = ?" for k in keys)
    added = updated = 0
    for key_values, columns, document in rows:
        data = json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        found = db.execute(f"SELECT data FROM {table} WHERE {where}", key_values).fetchone()  # noqa: S608 - fixed names
        names = (*keys, *columns, "data")
        values = (*key_values, *columns.values(), data)
        if found is None:
            added += 1
        elif found[0] != data:
            updated += 1
        else:
            continue
        assignments = ", ".join(f"{n} = excluded.{n}" for n in names if n not in keys)
        db.execute(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "  # noqa: S608 - fixed names
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {assignments}",
            values,
        )
    return Changes(added, updated)


def _text(row: Row, field: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"row has no {field}: cannot store it")
    return value


def _integer(row: Row, field: str) -> int:
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"row has no integer {field}: cannot store it")
    return value


def _optional_integer(row: Row, field: str) -> int | None:
    return _integer(row, field) if row.get(field) is not None else None


def _fingerprint(message: Row) -> int:
    return _integer(message, "fingerprint")


def _operator_id(operator: Row) -> str:
    details = operator.get("details")
    user_id = details.get("user_id") if isinstance(details, dict) else operator.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("operator has no user_id: cannot store it")
    return user_id
