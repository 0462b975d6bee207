"""`PostgresStore`: the store for several machines (psycopg 3 and psycopg_pool, ``[postgres]``).

The same tables and keys as `SQLiteStore` (``conversations`` by ``session_id``, ``messages``
by ``(session_id, fingerprint)``, ``people``, ``operators``, ``sync_state``), each row's full
answer as ``JSONB``. Writes are batched: a conversation's messages go in one ``INSERT ... SELECT
FROM unnest(...) ON CONFLICT DO UPDATE`` that rewrites only the rows whose document changed and
tells added from updated rows, all in the conversation's one transaction.

**What JSONB cannot hold.** PostgreSQL's text and JSONB refuse U+0000 and lone UTF-16
surrogates (JavaScript strings may hold them; Crisp's JSON escapes them as ``\\ud800``). A row
holding one is stored with U+0000 dropped and each lone surrogate replaced by U+FFFD, and
flagged: its ``replaced`` column is true (``SELECT ... FROM messages WHERE replaced``), the
one way a PostgreSQL copy may differ from Crisp's data (a SQLite copy keeps every value).
Integers of any size are kept (JSONB numbers are exact). A row whose key cannot be stored goes
to the ``quarantine`` table with its raw answer (ASCII JSON, so it always fits) and the reason.

The tool creates and migrates its schema itself: `MIGRATIONS` are applied in order, each
once, under a transaction-scoped advisory lock (so workers starting together do not race), and
the version reached is kept in ``crisp_sync_schema``. A database of a newer release is refused.

Which worker syncs which website is decided here too, with leases (`postgres_leases`): the
``lock`` of the `Store` protocol is a lease that expires unless renewed, so a worker that dies
(``kill -9``, a lost machine) frees its websites after the lease's time to live.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any

from crisp_api.extras import install_hint
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

try:
    import psycopg
    import psycopg_pool
    from psycopg import conninfo
    from psycopg.types.json import Jsonb
except ImportError as missing:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL store needs psycopg 3 and psycopg_pool: "
        + install_hint("postgres")
    ) from missing

from crisp_api.sync.postgres_leases import DEFAULT_LEASE_TTL, Leases

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE conversations (
            session_id TEXT PRIMARY KEY,
            website_id TEXT NOT NULL,
            updated_at BIGINT,
            data JSONB NOT NULL
        )""",
        """CREATE TABLE messages (
            session_id TEXT NOT NULL,
            fingerprint BIGINT NOT NULL,
            website_id TEXT NOT NULL,
            timestamp BIGINT NOT NULL,
            data JSONB NOT NULL,
            from_event BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (session_id, fingerprint)
        )""",
        """CREATE TABLE people (
            website_id TEXT NOT NULL,
            people_id TEXT NOT NULL,
            data JSONB NOT NULL,
            PRIMARY KEY (website_id, people_id)
        )""",
        """CREATE TABLE operators (
            website_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            data JSONB NOT NULL,
            PRIMARY KEY (website_id, user_id)
        )""",
        """CREATE TABLE sync_state (
            website_id TEXT PRIMARY KEY,
            checkpoint_ms BIGINT,
            people_listed_ms BIGINT
        )""",
        """CREATE TABLE sync_leases (
            website_id TEXT PRIMARY KEY,
            owner TEXT,
            holder TEXT,
            lease_until TIMESTAMPTZ,
            claimed_at TIMESTAMPTZ,
            synced_at TIMESTAMPTZ
        )""",
        """CREATE TABLE sync_workers (
            owner TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            alive_until TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX conversations_website ON conversations (website_id, updated_at)",
        "CREATE INDEX messages_session ON messages (session_id, timestamp)",
    ),
    (
        *(f"ALTER TABLE {table} ADD COLUMN replaced BOOLEAN NOT NULL DEFAULT FALSE"
          for table in ("conversations", "messages", "people", "operators")),
        """CREATE TABLE quarantine (
            website_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            session_id TEXT NOT NULL,
            ident TEXT NOT NULL,
            raw TEXT NOT NULL,
            reason TEXT NOT NULL,
            quarantined_ms BIGINT NOT NULL,
            PRIMARY KEY (website_id, kind, session_id, ident)
        )""",
    ),
    (
        # IF NOT EXISTS: applied again over a database that has them, it changes nothing
        "ALTER TABLE sync_state ADD COLUMN IF NOT EXISTS last_run_ms BIGINT, "
        "ADD COLUMN IF NOT EXISTS credential TEXT",
        """CREATE TABLE IF NOT EXISTS quota_ledger (
            credential TEXT NOT NULL,
            day INTEGER NOT NULL,
            requests BIGINT NOT NULL,
            PRIMARY KEY (credential, day)
        )""",
        """CREATE TABLE IF NOT EXISTS allowance (
            credential TEXT PRIMARY KEY,
            spent_until_ms BIGINT,
            learnt_rate DOUBLE PRECISION,
            daily_quota BIGINT,
            quota_reset DOUBLE PRECISION NOT NULL DEFAULT 0
        )""",
    ),
)
"""The schema's history: version N is reached by applying the first N entries in order.
Version 1: the tables of `SQLiteStore`'s schema 2 in JSONB, plus the fleet's leases. Version 2:
rows flagged ``replaced`` where characters JSONB cannot hold were replaced, and the
``quarantine`` table of `SQLiteStore`'s schema 3. Version 3: the quota ledger, each
credential's allowance and each website's last complete run (`SQLiteStore`'s schema 4)."""
SCHEMA_VERSION = len(MIGRATIONS)
_MIGRATION_LOCK = 0x63726973  # any constant: one advisory lock for every migrating worker
POOL_WAIT_SECONDS = 5.0
"""How long a save or a reconciliation waits for a pooled connection (none free, or the
server unreachable) before failing with a transient `StoreError`: a few seconds, so an
outage shows at once instead of after psycopg_pool's 30 s."""

_TYPES = {
    "session_id": "text", "website_id": "text", "people_id": "text", "user_id": "text",
    "fingerprint": "bigint", "timestamp": "bigint", "updated_at": "bigint",
    "from_event": "boolean", "replaced": "boolean", "data": "text",
}
"""The SQL type of each column, for the arrays a batch is sent as."""

_PERMANENT_CLASSES = ("28", "3D", "42", "XX")
"""SQLSTATE classes a rerun cannot get past: refused credentials, no such database, a schema
or privilege problem, corruption."""
_PERMANENT_CODES = frozenset({"53100", "25006", "57P04"})
"""Disk full, a read-only server (a standby), a database dropped."""
_PERMANENT_REFUSALS = ("authentication failed", "does not exist", "pg_hba.conf")
"""What libpq says when the server refuses a connection for good (a wrong password, no such
database or role, not allowed by ``pg_hba.conf``): such errors carry no SQLSTATE."""


class PostgresStore(WebsiteState, SqlRemovals, SqlQuarantine, SqlAllowance):
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
        self.name = _public_name(url)
        options: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout))}
        with self._errors():
            with psycopg.connect(url, **options) as db:  # fails fast on a bad URL or password
                self._upgrade(db)
            self._pool = psycopg_pool.ConnectionPool(
                url, min_size=1, max_size=pool_size, kwargs={**options, "autocommit": True},
                open=False, check=psycopg_pool.ConnectionPool.check_connection,
                timeout=POOL_WAIT_SECONDS, name="crisp-sync",
            )
            self._pool.open(wait=True, timeout=max(30.0, connect_timeout))
        self.leases = Leases(self._pool, self._errors, ttl=lease_ttl)

    def _upgrade(self, db: psycopg.Connection[Any]) -> None:
        """Apply the migrations this database lacks, in one transaction."""
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS crisp_sync_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM crisp_sync_schema").fetchone()
            version = 0 if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL database {self.name}: schema version {version} is newer than "
                    f"this release's ({SCHEMA_VERSION}); upgrade crisp-api-next",
                    permanent=True,
                )
            for statements in MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            if row is None:
                db.execute("INSERT INTO crisp_sync_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                db.execute("UPDATE crisp_sync_schema SET version = %s", (SCHEMA_VERSION,))

    @contextmanager
    def _errors(self, operation: str = "a query") -> Iterator[None]:
        """Raise psycopg's and the pool's errors as `StoreError`, naming this database; and
        any other error (a value the driver refused, a bug) as a transient one naming
        ``operation``, never the row."""
        try:
            yield
        except psycopg_pool.PoolTimeout as exc:
            raise StoreError(
                f"PostgreSQL database {self.name}: no connection free or reachable ({exc})",
                permanent=False,
            ) from exc
        except psycopg.Error as exc:
            raise _store_error(self.name, exc) from exc
        except (StoreError, WebsiteLockedError):
            raise
        except Exception as exc:
            raise StoreError(
                f"PostgreSQL database {self.name}: {operation} failed ({type(exc).__name__})",
                permanent=False,
            ) from exc

    @contextmanager
    def _transaction(self, operation: str) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor inside one transaction, committed if the block succeeds."""
        with (self._errors(operation), self._pool.connection() as db, db.transaction(),
              db.cursor() as cur):
            yield cur

    @contextmanager
    def _statement(self, operation: str) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor for one statement, atomic on its own (the pool's connections are in
        autocommit): no BEGIN and COMMIT round trips, which cost a sync more CPU than the
        statement itself."""
        with self._errors(operation), self._pool.connection() as db, db.cursor() as cur:
            yield cur

    def conversation_state(self, website_id: str, session_id: str) -> ConversationState:
        """What is stored of ``session_id`` (both fields ``None`` for a new conversation)."""
        if not rows.is_key(session_id):
            return ConversationState(None, None)  # nothing is stored under such a key
        with self._statement("conversation_state") as cur:
            row = cur.execute(
                "SELECT (SELECT updated_at FROM conversations WHERE session_id = %s), "
                "(SELECT max(timestamp) FROM messages WHERE session_id = %s AND NOT from_event)",
                (session_id, session_id),
            ).fetchone()
        assert row is not None  # a SELECT without FROM has one row
        return ConversationState(updated_at=row[0], newest_message=row[1])

    def save_conversation(
        self, website_id: str, conversation: Row, span: MessageSpan
    ) -> tuple[Changes, Changes]:
        """Upsert the conversation and its ``span`` of messages, removing the stored messages
        of the span Crisp no longer has; (conversation, message) changes, all in one
        transaction, the conversation row last. Rows that cannot be keyed are put aside in
        the same transaction."""
        with self._transaction("save_conversation") as cur:
            session_id, updated_at, conversation_aside = rows.key_conversation(conversation)
            keyed, aside = rows.key_messages(session_id, span.messages)
            message_changes = Changes(quarantined=len(aside))
            conversation_changes = Changes()
            if session_id is not None:
                message_changes += _upsert(
                    cur, "messages", ("session_id", "fingerprint"),
                    ("website_id", "timestamp", "from_event"),
                    [(session_id, m.fingerprint, website_id, m.timestamp, False,
                      *_document(m.row)) for m in keyed],
                )
                kept = [m.fingerprint for m in keyed]
                # One statement: the span's messages Crisp no longer has go, and those it has
                # count as read (rows stored from live events included; disjoint rows).
                found = cur.execute(
                    "WITH removed AS (DELETE FROM messages WHERE session_id = %(s)s"
                    " AND (%(since)s::bigint IS NULL OR timestamp > %(since)s)"
                    " AND (%(until)s::bigint IS NULL OR timestamp <= %(until)s)"
                    " AND NOT (fingerprint = ANY(%(kept)s::bigint[])) RETURNING 1),"
                    " read AS (UPDATE messages SET from_event = FALSE WHERE session_id = %(s)s"
                    " AND from_event AND fingerprint = ANY(%(kept)s::bigint[]))"
                    " SELECT count(*) FROM removed",
                    {"s": session_id, "since": rows.bounded(span.since),
                     "until": rows.bounded(span.until), "kept": kept},
                ).fetchone()
                message_changes += Changes(removed=0 if found is None else int(found[0]))
                if conversation_aside is None:
                    conversation_changes = _upsert(
                        cur, "conversations", ("session_id",), ("website_id", "updated_at"),
                        [(session_id, website_id, updated_at, *_document(conversation))],
                    )
            if conversation_aside is not None:
                aside.append(conversation_aside)
                conversation_changes = Changes(quarantined=1)
            _put_aside(cur, website_id, aside)
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
        with self._errors(operation):
            keyed, aside = rows.key_rows(listed, found)
            values = [(website_id, k, *_document(row)) for k, row in keyed.items()]
        with self._writing(operation, aside) as cur:
            _put_aside(cur, website_id, aside)
            changes = _upsert(cur, listed.table, ("website_id", listed.column), (), values)
        return changes + Changes(quarantined=len(aside))

    def _writing(
        self, operation: str, aside: Sequence[rows.Quarantined]
    ) -> AbstractContextManager[psycopg.Cursor[Any]]:
        """A cursor for one statement, or a transaction when rows are also put aside."""
        return self._transaction(operation) if aside else self._statement(operation)

    def save_message(self, website_id: str, session_id: str, message: Row) -> Changes:
        """Upsert one message from a live event; a message a sync already read keeps
        counting as read; a message that cannot be keyed is put aside."""
        with self._errors("save_message"):
            keyed, aside = rows.key_messages(
                session_id if rows.is_key(session_id) else None, [message])
            values = [(session_id, m.fingerprint, website_id, m.timestamp, True,
                       *_document(m.row)) for m in keyed]
        with self._writing("save_message", aside) as cur:
            _put_aside(cur, website_id, aside)
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
        with self._statement("edit_message") as cur:
            return _merge(cur, "messages", "session_id = %s AND fingerprint = %s",
                          (session_id, fingerprint), {"content": content})

    def update_conversation(self, website_id: str, session_id: str, fields: Row) -> Changes:
        """Merge ``fields`` into a stored conversation; nothing if it is not stored."""
        if not rows.is_key(session_id):
            return Changes()
        with self._statement("update_conversation") as cur:
            return _merge(cur, "conversations", "session_id = %s", (session_id,), fields)

    _MARK = "%s"

    def _execute(self, operation: str, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> int:
        with self._transaction(operation) as cur:
            return sum(cur.execute(sql, values).rowcount for sql, values in statements)

    def _select(self, sql: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._statement("read") as cur:
            return cur.execute(sql, values).fetchall()

    def _state(self, website_id: str, column: str) -> int | None:
        with self._statement("read state") as cur:
            row = cur.execute(
                f"SELECT {column} FROM sync_state WHERE website_id = %s",  # noqa: S608 - fixed names
                (website_id,),
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _set_state(self, website_id: str, column: str, value: int) -> None:
        """Set one column of the website's state, leaving the others as they are."""
        with self._statement("set state") as cur:
            cur.execute(
                f"INSERT INTO sync_state (website_id, {column}) VALUES (%s, %s) "  # noqa: S608 - fixed names
                f"ON CONFLICT (website_id) DO UPDATE SET {column} = excluded.{column}",
                (website_id, value),
            )

    def lock(self, website_id: str) -> Any:
        """Hold ``website_id`` for one run: a lease (see `Leases.hold`); `WebsiteLockedError`
        if another live worker holds it."""
        return self.leases.hold(website_id)

    def close(self) -> None:
        """Give up every lease this store holds and close the connections."""
        try:
            self.leases.close()
        finally:
            self._pool.close()

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
        with self._errors(), self._pool.connection(timeout=timeout) as db:
            db.execute("SELECT 1")


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
    arrays = ", ".join(f"%s::{_TYPES[name]}[]" for name in names)
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
    data, replaced = _document(dict(fields))
    patch = Jsonb(data, dumps=str)
    updated = cur.execute(
        f"UPDATE {table} SET data = data || %s, replaced = replaced OR %s "  # noqa: S608 - fixed names
        f"WHERE {where} AND data IS DISTINCT FROM data || %s",
        (patch, replaced, *key_values, patch),
    ).rowcount
    return Changes(updated=updated, replaced=updated if replaced else 0)


def _put_aside(cur: psycopg.Cursor[Any], website_id: str, aside: Sequence[rows.Quarantined]
               ) -> None:
    """Write rows that cannot be keyed to the quarantine table."""
    if aside:
        cur.executemany(PostgresStore._quarantine_statement(),
                        PostgresStore._quarantine_values(website_id, aside, _now_ms()))


_UNHELD = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000|[\ud800-\udfff]")
"""What JSONB cannot hold, in canonical JSON text: an escaped U+0000 (not an escaped
backslash followed by ``u0000``), or a lone surrogate (written as it is)."""


def _document(row: Any) -> tuple[str, bool]:
    """A row as canonical JSON text that JSONB accepts, and whether characters had to be
    replaced: U+0000 is dropped (as other loaders into PostgreSQL do) and a lone surrogate
    becomes U+FFFD (see the module docstring)."""
    text, count = _UNHELD.subn(_replacement, rows.canonical(row))
    return text, count > 0


def _replacement(found: re.Match[str]) -> str:
    escaped = found[1]
    return "\ufffd" if escaped is None else escaped


def _now_ms() -> int:
    return int(time.time() * 1000)


def _public_name(url: str) -> str:
    """``user@host:port/dbname`` of a connection URL or string: no password, no options."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's reason quotes the part it could not parse, which may be the password.
        raise ValueError(
            "not a PostgreSQL URL or connection string "
            "(postgresql://user:password@host:port/dbname)"
        ) from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{user}{parts.get('host', 'localhost')}{port}/{parts.get('dbname', '')}"


def _store_error(name: str, error: psycopg.Error) -> StoreError:
    """``error`` as a one-line `StoreError` naming the database, permanent by its SQLSTATE.

    Only the server's primary message is kept: its DETAIL and CONTEXT lines may quote the
    row being written (a message's text), which has no place in an error or a log."""
    primary = error.diag.message_primary if error.sqlstate is not None else None
    text = " ".join((primary or str(error)).split()) or type(error).__name__
    code = error.sqlstate
    permanent = code is not None and (code in _PERMANENT_CODES or code[:2] in _PERMANENT_CLASSES)
    if code is None and any(refusal in text for refusal in _PERMANENT_REFUSALS):
        permanent = True  # refused at connection time, before any SQLSTATE
    return StoreError(
        f"PostgreSQL database {name}: {text}" + (f" (SQLSTATE {code})" if code else ""),
        permanent=permanent,
    )

