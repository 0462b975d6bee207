"""`PostgresStore`: the store for several machines (psycopg 3 and psycopg_pool, ``[postgres]``).

The same tables and keys as `SQLiteStore` (``conversations`` by ``session_id``, ``messages``
by ``(session_id, fingerprint)``, ``people``, ``operators``, ``sync_state``), each row's full
answer as ``JSONB``. Writes are batched: a conversation is saved by one statement (atomic on
its own, so no ``BEGIN`` and ``COMMIT``), its messages sent as binary arrays, upserted by one
``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE`` that rewrites only the rows whose
document changed (no dead tuples for unchanged rows) and tells added from updated rows, the
messages Crisp removed deleted and the conversation row upserted in the same statement. Of
psycopg 3's bulk ways, this measured fastest (``python -m benchmarks --sections fleet``: COPY
into a temporary table, then ``INSERT ... SELECT``; pipeline mode; ``executemany``).

**What JSONB cannot hold.** PostgreSQL's text and JSONB refuse U+0000 and lone UTF-16
surrogates (JavaScript strings may hold them; Crisp's JSON escapes them as ``\\ud800``). A row
holding one is stored with U+0000 dropped and each lone surrogate replaced by U+FFFD, and
flagged: its ``replaced`` column is true (``SELECT ... FROM messages WHERE replaced``), the
one way a PostgreSQL copy may differ from Crisp's data (a SQLite copy keeps every value).
Integers of any size are kept (JSONB numbers are exact). A row whose key cannot be stored goes
to the ``quarantine`` table with its raw answer (ASCII JSON, so it always fits) and the reason.

The tool creates and migrates its schema itself (`postgres_database`, from
`crisp_api.sync.schema`); the pool, the statement helpers and the errors are the
`PgDatabase`'s, which the leases share; the SQL both stores share is `sql_store`'s.

Which worker syncs which website is decided here too, with leases (`postgres_leases`): the
``lock`` of the `Store` protocol is a lease that expires unless renewed, so a worker that dies
(``kill -9``, a lost machine) frees its websites after the lease's time to live.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from crisp_api.json_codec import compact_text
from crisp_api.sync import rows, schema
from crisp_api.sync.postgres_database import POOL_WAIT_SECONDS, PgDatabase
from crisp_api.sync.postgres_leases import DEFAULT_LEASE_TTL, Leases
from crisp_api.sync.schema import POSTGRES_VERSION as SCHEMA_VERSION
from crisp_api.sync.sql_dialect import Cursor
from crisp_api.sync.sql_store import SqlStore
from crisp_api.sync.store import Changes, ConversationState, MessageSpan, Row

if TYPE_CHECKING:
    import psycopg

__all__ = ["POOL_WAIT_SECONDS", "SCHEMA_VERSION", "PostgresStore"]


_ARRAYS = {
    (table.name, column.name):
        "text" if column.type is schema.DOCUMENT else column.type.named("postgres").lower()
    for table in schema.tables("postgres") for column in table.columns
}
"""The SQL type of the array a batch sends each column (by table) as: a document goes as its
text, cast to JSONB in the statement."""

_STALE = """
SELECT listed.session_id, stored.updated_at
FROM unnest(%s::text[], %s::int8[]) AS listed(session_id, updated_at)
LEFT JOIN conversations AS stored ON stored.session_id = listed.session_id
WHERE stored.updated_at IS NULL OR stored.updated_at < listed.updated_at
"""
"""`PostgresStore._stale_keyed`'s statement."""


class PostgresStore(SqlStore[PgDatabase]):
    """A PostgreSQL database holding each row's full answer as JSONB, for one or many workers.

    ``url`` is a ``postgresql://user:password@host:port/dbname`` URL (or a libpq connection
    string); the password never appears in errors or ``repr``. ``pool_size`` connections at
    most are shared by the sync's threads; each is checked when taken from the pool, so
    connections that died with a server restart are replaced, not handed out. ``lease_ttl`` is
    how long (seconds) a website stays held by a worker that stopped renewing its lease.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 16,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        connect_timeout: float = 10.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        super().__init__(PgDatabase(url, pool_size=pool_size, connect_timeout=connect_timeout))
        self.name = self._db.name
        try:
            self.leases = Leases(self._db, ttl=lease_ttl)
        except BaseException:
            self._db.close()
            raise

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        """What is stored of ``session_id`` (both fields ``None`` for a new conversation)."""
        if not rows.is_key(session_id):
            return ConversationState(None, None)  # nothing is stored under such a key
        with self._db.statement("conversation_state") as cur:
            row = cur.execute(
                "SELECT (SELECT updated_at FROM conversations WHERE session_id = %s), "
                "(SELECT max(timestamp) FROM messages WHERE session_id = %s AND NOT from_event)",
                (session_id, session_id),
            ).fetchone()
        assert row is not None  # a SELECT without FROM has one row
        return ConversationState(updated_at=row[0], newest_message=row[1])

    def _stale_keyed(self, cur: Cursor, keyed: dict[str, int]
                     ) -> Iterable[tuple[str, int | None]]:
        """`SqlStore.stale_of`'s query: the page's ids and stamps as two arrays, joined to
        the ``conversations_stamp`` index; only the stale come back."""
        return cur.execute(_STALE, (list(keyed), list(keyed.values()))).fetchall()

    def updated_at_of(self, website_id: str, session_ids: Sequence[str]) -> dict[str, int]:
        """The stored ``updated_at`` of those of ``session_ids`` that have one, in one query
        (`crisp_api.sync.store.BatchStates`)."""
        wanted = [session_id for session_id in dict.fromkeys(session_ids)
                  if rows.is_key(session_id)]
        if not wanted:
            return {}
        with self._db.statement("updated_at_of") as cur:
            return dict(cur.execute(
                "SELECT session_id, updated_at FROM conversations "
                "WHERE session_id = ANY(%s) AND updated_at IS NOT NULL", (wanted,)).fetchall())

    def newest_messages(self, website_id: str, session_ids: Sequence[str]) -> dict[str, int]:
        """The timestamp of the newest message a sync read, for those of ``session_ids`` that
        have one, in one query (`crisp_api.sync.store.BatchStates`)."""
        wanted = [session_id for session_id in dict.fromkeys(session_ids)
                  if rows.is_key(session_id)]
        if not wanted:
            return {}
        with self._db.statement("newest_messages") as cur:
            return {session_id: stamp for session_id, stamp in cur.execute(
                "SELECT s, (SELECT max(timestamp) FROM messages "
                "WHERE session_id = s AND NOT from_event) FROM unnest(%s::text[]) AS s",
                (wanted,)).fetchall() if stamp is not None}

    def save_conversation(
        self, website_id: str, conversation: Row, span: MessageSpan
    ) -> tuple[Changes, Changes]:
        """Upsert the conversation and its ``span`` of messages, removing the stored messages
        of the span Crisp no longer has; (conversation, message) changes, all in one
        statement (see `_save_statement`). Rows that cannot be keyed are put aside in the
        same transaction."""
        with self._db.errors("save_conversation"):
            session_id, updated_at, conversation_aside = rows.key_conversation(conversation)
            keyed, aside = rows.key_messages(session_id, span.messages)
            message_changes = Changes(quarantined=len(aside))
            conversation_changes = Changes()
            if conversation_aside is not None:
                aside.append(conversation_aside)
                conversation_changes = Changes(quarantined=1)
            values: dict[str, Any] = {}
            if session_id is not None:
                documents = [_document(m.row) for m in keyed]
                values = {
                    "session": session_id, "website": website_id,
                    "since": rows.bounded(span.since), "until": rows.bounded(span.until),
                    "fingerprints": [m.fingerprint for m in keyed],
                    "stamps": [m.timestamp for m in keyed],
                    "documents": [text for text, _ in documents],
                    "replaced": [lossy for _, lossy in documents],
                }
                if conversation_aside is None:
                    document, lossy = _document(conversation)
                    values |= {"updated_at": updated_at, "document": document, "lossy": lossy}
        # One statement is atomic in autocommit: a transaction only when rows go aside too.
        with self._writing("save_conversation", aside) as cur:
            self._put_aside(cur, website_id, aside)
            if values:
                counts = cur.execute(_SAVE[conversation_aside is None], values).fetchone()
                assert counts is not None  # a SELECT without FROM has one row
                added, updated, replaced, removed, *conversation_counts = counts
                message_changes += Changes(added, updated, removed, replaced=replaced)
                if conversation_aside is None:
                    added, updated, replaced = conversation_counts
                    conversation_changes = Changes(added, updated, replaced=replaced)
        return conversation_changes, message_changes

    def save_people(self, website_id: str, profiles: Sequence[Row]) -> Changes:
        """Upsert people profiles, keyed by website and ``people_id``, in one statement."""
        return self._save_keyed(website_id, rows.PEOPLE, profiles)

    def save_operators(self, website_id: str, operators: Sequence[Row]) -> Changes:
        """Upsert the website's operators, keyed by their user id, in one statement."""
        return self._save_keyed(website_id, rows.OPERATORS, operators)

    def _save_keyed(self, website_id: str, listed: rows.Listed, found: Sequence[Row]) -> Changes:
        """Upsert rows of a website keyed by ``key_of`` in one statement; those without a
        key are put aside, in the same transaction."""
        operation = f"save {listed.table}"
        with self._db.errors(operation):
            keyed, aside = rows.key_rows(listed, found)
            values = [(website_id, k, *_document(row)) for k, row in keyed.items()]
        with self._writing(operation, aside) as cur:
            self._put_aside(cur, website_id, aside)
            changes = _upsert(cur, listed.table, ("website_id", listed.column), (), values)
        return changes + Changes(quarantined=len(aside))

    def _writing(
        self, operation: str, aside: Sequence[rows.Quarantined]
    ) -> AbstractContextManager[psycopg.Cursor[Any]]:
        """A cursor for one statement, or a transaction when rows are also put aside."""
        return self._db.transaction(operation) if aside else self._db.statement(operation)

    def save_message(self, website_id: str, session_id: str, message: Row) -> Changes:
        """Upsert one message from a live event; a message a sync already read keeps
        counting as read; a message that cannot be keyed is put aside."""
        with self._db.errors("save_message"):
            keyed, aside = rows.key_messages(
                session_id if rows.is_key(session_id) else None, [message])
            values = [(session_id, m.fingerprint, website_id, m.timestamp, True,
                       *_document(m.row)) for m in keyed]
        with self._writing("save_message", aside) as cur:
            self._put_aside(cur, website_id, aside)
            changes = _upsert(cur, "messages", ("session_id", "fingerprint"),
                              ("website_id", "timestamp", "from_event"), values,
                              keep=("from_event",))
        return changes + Changes(quarantined=len(aside))

    def edit_message(
        self, website_id: str, session_id: str, fingerprint: int, content: Any
    ) -> Changes:
        """Set a stored message's ``content``; nothing if it is not stored."""
        if not (rows.is_key(session_id) and rows.is_key(fingerprint)):
            return Changes()
        with self._db.statement("edit_message") as cur:
            return _merge(cur, "messages", "session_id = %s AND fingerprint = %s",
                          (session_id, fingerprint), {"content": content})

    def update_conversation(self, website_id: str, session_id: str, fields: Row) -> Changes:
        """Merge ``fields`` into a stored conversation; nothing if it is not stored."""
        if not rows.is_key(session_id):
            return Changes()
        with self._db.statement("update_conversation") as cur:
            return _merge(cur, "conversations", "session_id = %s", (session_id,), fields)

    def lock(self, website_id: str) -> AbstractContextManager[None]:
        """Hold ``website_id`` for one run: a lease (see `Leases.hold`); `WebsiteLockedError`
        if another live worker holds it."""
        return self.leases.hold(website_id)

    def close(self) -> None:
        """Give up every lease this store holds and close the connections."""
        try:
            self.leases.close()
        finally:
            self._db.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.name}>"

    def ping(self, timeout: float = 2.0) -> None:
        """Ask the database for a trivial answer (follow mode's health probe), waiting at most
        ``timeout`` seconds for a pooled connection; `StoreError` if it cannot give one."""
        self._db.ping(timeout)


def _upsert(
    cur: psycopg.Cursor[Any],
    table: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    values: list[tuple[Any, ...]],
    *,
    keep: tuple[str, ...] = (),
) -> Changes:
    """Insert or update ``values`` (keys, then ``columns``, then the JSON text and whether
    characters were replaced in it) in one statement; a row whose document is unchanged is not
    written. ``keep`` names columns an update leaves as they are. Keys must be unique within
    ``values``."""
    if not values:
        return Changes()
    names = (*keys, *columns, "data", "replaced")
    arrays = ", ".join(f"%b::{_ARRAYS[table, name]}[]" for name in names)
    chosen = ", ".join(f"u.{name}::jsonb" if name == "data" else f"u.{name}" for name in names)
    updated = ", ".join(
        f"{name} = excluded.{name}" for name in names if name not in keys and name not in keep
    )
    statement = (
        f"INSERT INTO {table} AS t ({', '.join(names)}) "  # noqa: S608 - fixed names
        f"SELECT {chosen} FROM unnest({arrays}) AS u({', '.join(names)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updated} "
        "WHERE t.data IS DISTINCT FROM excluded.data "
        "RETURNING (xmax = 0), t.replaced"
    )
    cur.execute(statement, [list(column) for column in zip(*values, strict=True)])
    written = cur.fetchall()
    added = sum(inserted for inserted, _ in written)
    return Changes(added, len(written) - added, replaced=sum(lossy for _, lossy in written))


def _merge(
    cur: psycopg.Cursor[Any], table: str, where: str, key_values: tuple[Any, ...], fields: Row
) -> Changes:
    """Merge ``fields`` into the document of the row ``where`` selects, if it changes it
    (flagged ``replaced`` if characters of ``fields`` had to be)."""
    patch, replaced = _document(dict(fields))
    updated = cur.execute(
        f"UPDATE {table} SET data = data || %s::jsonb, replaced = replaced OR %s "  # noqa: S608 - fixed names
        f"WHERE {where} AND data IS DISTINCT FROM data || %s::jsonb",
        (patch, replaced, *key_values, patch),
    ).rowcount
    return Changes(updated=updated, replaced=updated if replaced else 0)


def _save_statement(*, with_conversation: bool) -> str:
    """The one statement that saves a conversation's messages (and the conversation, if
    ``with_conversation``), read as `PostgresStore.save_conversation` fills it; one row of
    counts: messages added, updated, replaced, removed, then the conversation's added,
    updated, replaced.

    A message is rewritten when its document changed, or when it was stored from a live event
    (it now counts as read: ``from_event`` false); such a row with its document unchanged
    (``read``, from the statement's snapshot) is no update. Rewriting it in the upsert rather
    than in an ``UPDATE`` beside it keeps any row from being changed twice in one statement,
    which PostgreSQL does not allow. The span's stored messages Crisp no longer has go (no
    incoming row is among them, so no row is both written and removed)."""
    messages = ("session_id", "fingerprint", "website_id", "timestamp", "from_event", "data",
                "replaced")
    assigned = ", ".join(f"{name} = excluded.{name}" for name in messages[2:])
    conversation = (
        ", conversation AS (INSERT INTO conversations AS t"
        " (session_id, website_id, updated_at, data, replaced)"
        " VALUES (%(session)s, %(website)s, %(updated_at)s, %(document)s::jsonb, %(lossy)s)"
        " ON CONFLICT (session_id) DO UPDATE SET website_id = excluded.website_id,"
        " updated_at = excluded.updated_at, data = excluded.data, replaced = excluded.replaced"
        " WHERE t.data IS DISTINCT FROM excluded.data"
        " RETURNING (xmax = 0) AS added, t.replaced)"
    ) if with_conversation else ""
    counted = (
        "(SELECT count(*) FILTER (WHERE added) FROM conversation),"
        " (SELECT count(*) FILTER (WHERE NOT added) FROM conversation),"
        " (SELECT count(*) FILTER (WHERE replaced) FROM conversation)"
    ) if with_conversation else "0, 0, 0"
    return (
        "WITH incoming AS MATERIALIZED (SELECT u.fingerprint, u.timestamp,"  # noqa: S608 - fixed
        " u.data::jsonb AS data,"
        " u.replaced FROM unnest(%(fingerprints)b::bigint[], %(stamps)b::bigint[],"
        " %(documents)b::text[], %(replaced)b::boolean[])"
        " AS u(fingerprint, timestamp, data, replaced)),"
        " read AS (SELECT m.fingerprint FROM messages AS m JOIN incoming AS i"
        " ON m.fingerprint = i.fingerprint WHERE m.session_id = %(session)s AND m.from_event"
        " AND m.data = i.data),"
        f" written AS (INSERT INTO messages AS t ({', '.join(messages)})"
        " SELECT %(session)s, i.fingerprint, %(website)s, i.timestamp, FALSE, i.data, i.replaced"
        f" FROM incoming AS i ON CONFLICT (session_id, fingerprint) DO UPDATE SET {assigned}"
        " WHERE t.data IS DISTINCT FROM excluded.data OR t.from_event"
        " RETURNING t.fingerprint, (xmax = 0) AS added, t.replaced),"
        " removed AS (DELETE FROM messages WHERE session_id = %(session)s"
        " AND (%(since)s::bigint IS NULL OR timestamp > %(since)s)"
        " AND (%(until)s::bigint IS NULL OR timestamp <= %(until)s)"
        " AND NOT (fingerprint = ANY(%(fingerprints)b::bigint[])) RETURNING 1)"
        f"{conversation}"
        " SELECT (SELECT count(*) FILTER (WHERE added) FROM written),"
        " (SELECT count(*) FILTER (WHERE NOT added AND fingerprint NOT IN"
        " (SELECT fingerprint FROM read)) FROM written),"
        " (SELECT count(*) FILTER (WHERE replaced AND fingerprint NOT IN"
        " (SELECT fingerprint FROM read)) FROM written),"
        f" (SELECT count(*) FROM removed), {counted}"
    )


_SAVE = {flag: _save_statement(with_conversation=flag) for flag in (False, True)}
"""The saving statement without, and with, the conversation row."""


_UNHELD = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000|[\ud800-\udfff]")
"""What JSONB cannot hold, in JSON text: an escaped U+0000 (not an escaped
backslash followed by ``u0000``), or a lone surrogate (written as it is)."""


def _document(row: Any) -> tuple[str, bool]:
    """A row as JSON text that JSONB accepts, and whether characters had to be
    replaced: U+0000 is dropped (as other loaders into PostgreSQL do) and a lone surrogate
    becomes U+FFFD (see the module docstring)."""
    text, unchecked = compact_text(row)  # keys unsorted: JSONB orders them itself
    if "\\u0000" not in text and not (unchecked and rows.holds_surrogate(text)):
        return text, False  # the common case, told by scans far cheaper than _UNHELD's
    text, count = _UNHELD.subn(_replacement, text)
    return text, count > 0


def _replacement(found: re.Match[str]) -> str:
    escaped = found[1]
    return "\ufffd" if escaped is None else escaped
