"""The one schema (`crisp_api.sync.schema`) against the databases earlier releases wrote.

Each database here is made with the statements a release shipped, copied as they were (not
built from `schema`): a file or database at an older version is migrated keeping every row,
one at the current version opens as it is, and either way it ends with exactly the tables
and columns a new one gets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crisp_api.sync import schema
from crisp_api.sync.sqlite_store import SQLiteStore
from crisp_api.sync.store import CredentialAllowance, MessageSpan

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytest_plugins = ["tests.postgres_server"]

WEBSITE = "website-a"

# SQLite's tables at user_version 4, as the release before schema.py created them.
SQLITE_V4 = {
    "conversations": """CREATE TABLE conversations (
        session_id TEXT PRIMARY KEY,
        website_id TEXT NOT NULL,
        updated_at INTEGER,
        data TEXT NOT NULL
    )""",
    "messages": """CREATE TABLE messages (
        session_id TEXT NOT NULL,
        fingerprint INTEGER NOT NULL,
        website_id TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        data TEXT NOT NULL,
        from_event INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, fingerprint)
    )""",
    "people": """CREATE TABLE people (
        website_id TEXT NOT NULL,
        people_id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (website_id, people_id)
    )""",
    "operators": """CREATE TABLE operators (
        website_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (website_id, user_id)
    )""",
    "sync_state": """CREATE TABLE sync_state (
        website_id TEXT PRIMARY KEY,
        checkpoint_ms INTEGER,
        people_listed_ms INTEGER,
        last_run_ms INTEGER,
        credential TEXT
    )""",
    "sync_locks": """CREATE TABLE sync_locks (
        website_id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        token TEXT NOT NULL,
        heartbeat_ms INTEGER NOT NULL,
        acquired_ms INTEGER NOT NULL
    )""",
    "quarantine": """CREATE TABLE quarantine (
        website_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        session_id TEXT NOT NULL,
        ident TEXT NOT NULL,
        raw TEXT NOT NULL,
        reason TEXT NOT NULL,
        quarantined_ms INTEGER NOT NULL,
        PRIMARY KEY (website_id, kind, session_id, ident)
    )""",
    "quota_ledger": """CREATE TABLE quota_ledger (
        credential TEXT NOT NULL,
        day INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        PRIMARY KEY (credential, day)
    )""",
    "allowance": """CREATE TABLE allowance (
        credential TEXT PRIMARY KEY,
        spent_until_ms INTEGER,
        learnt_rate REAL,
        daily_quota INTEGER,
        quota_reset REAL NOT NULL DEFAULT 0
    )""",
}
# Version 3 had no ledger, no allowance, and no last run in sync_state.
SQLITE_V3 = {
    **{name: sql for name, sql in SQLITE_V4.items() if name not in ("quota_ledger", "allowance")},
    "sync_state": """CREATE TABLE sync_state (
        website_id TEXT PRIMARY KEY,
        checkpoint_ms INTEGER,
        people_listed_ms INTEGER
    )""",
}
SQLITE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS conversations_website ON conversations (website_id, updated_at)",
    "CREATE INDEX IF NOT EXISTS messages_session ON messages (session_id, timestamp)",
)

# PostgreSQL's migrations 1 to 3, as the release before schema.py applied them.
POSTGRES_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE conversations (session_id TEXT PRIMARY KEY, website_id TEXT NOT NULL,
            updated_at BIGINT, data JSONB NOT NULL)""",
        """CREATE TABLE messages (session_id TEXT NOT NULL, fingerprint BIGINT NOT NULL,
            website_id TEXT NOT NULL, timestamp BIGINT NOT NULL, data JSONB NOT NULL,
            from_event BOOLEAN NOT NULL DEFAULT FALSE, PRIMARY KEY (session_id, fingerprint))""",
        """CREATE TABLE people (website_id TEXT NOT NULL, people_id TEXT NOT NULL,
            data JSONB NOT NULL, PRIMARY KEY (website_id, people_id))""",
        """CREATE TABLE operators (website_id TEXT NOT NULL, user_id TEXT NOT NULL,
            data JSONB NOT NULL, PRIMARY KEY (website_id, user_id))""",
        """CREATE TABLE sync_state (website_id TEXT PRIMARY KEY, checkpoint_ms BIGINT,
            people_listed_ms BIGINT)""",
        """CREATE TABLE sync_leases (website_id TEXT PRIMARY KEY, owner TEXT, holder TEXT,
            lease_until TIMESTAMPTZ, claimed_at TIMESTAMPTZ, synced_at TIMESTAMPTZ)""",
        """CREATE TABLE sync_workers (owner TEXT PRIMARY KEY, holder TEXT NOT NULL,
            alive_until TIMESTAMPTZ NOT NULL)""",
        "CREATE INDEX conversations_website ON conversations (website_id, updated_at)",
        "CREATE INDEX messages_session ON messages (session_id, timestamp)",
    ),
    (
        *(f"ALTER TABLE {table} ADD COLUMN replaced BOOLEAN NOT NULL DEFAULT FALSE"
          for table in ("conversations", "messages", "people", "operators")),
        """CREATE TABLE quarantine (website_id TEXT NOT NULL, kind TEXT NOT NULL,
            session_id TEXT NOT NULL, ident TEXT NOT NULL, raw TEXT NOT NULL,
            reason TEXT NOT NULL, quarantined_ms BIGINT NOT NULL,
            PRIMARY KEY (website_id, kind, session_id, ident))""",
    ),
    (
        "ALTER TABLE sync_state ADD COLUMN IF NOT EXISTS last_run_ms BIGINT, "
        "ADD COLUMN IF NOT EXISTS credential TEXT",
        """CREATE TABLE IF NOT EXISTS quota_ledger (credential TEXT NOT NULL,
            day INTEGER NOT NULL, requests BIGINT NOT NULL, PRIMARY KEY (credential, day))""",
        """CREATE TABLE IF NOT EXISTS allowance (credential TEXT PRIMARY KEY,
            spent_until_ms BIGINT, learnt_rate DOUBLE PRECISION, daily_quota BIGINT,
            quota_reset DOUBLE PRECISION NOT NULL DEFAULT 0)""",
    ),
)

# Rows of every kind an old release held: (table, columns, values).
OLD_ROWS: list[tuple[str, str, tuple[Any, ...]]] = [
    ("conversations", "session_id, website_id, updated_at, data",
     ("s1", WEBSITE, 1_000, json.dumps({"session_id": "s1", "updated_at": 1_000}))),
    ("messages", "session_id, fingerprint, website_id, timestamp, data",
     ("s1", 2**62, WEBSITE, 900, json.dumps({"fingerprint": 2**62, "content": "héllo"}))),
    ("people", "website_id, people_id, data",
     (WEBSITE, "p1", json.dumps({"people_id": "p1"}))),
    ("operators", "website_id, user_id, data",
     (WEBSITE, "u1", json.dumps({"details": {"user_id": "u1"}}))),
    ("sync_state", "website_id, checkpoint_ms, people_listed_ms", (WEBSITE, 1_000, 5)),
    ("quarantine", "website_id, kind, session_id, ident, raw, reason, quarantined_ms",
     (WEBSITE, "message", "s1", "x", "{}", "no fingerprint", 7)),
]


def old_rows(mark: str) -> list[tuple[str, tuple[Any, ...]]]:
    return [(f"INSERT INTO {table} ({columns}) VALUES ({', '.join([mark] * len(values))})",
             values) for table, columns, values in OLD_ROWS]


def check_old_rows_and_new_tables(store: Any) -> None:
    """What the old release stored reads back, and the current version's tables work."""
    assert store.checkpoint(WEBSITE) == 1_000
    assert store.people_listed_at(WEBSITE) == 5
    assert store.conversation_state(WEBSITE, "s1").newest_message == 900
    assert store.quarantined(WEBSITE) == 1
    assert store.save_people(WEBSITE, [{"people_id": "p1"}]).added == 0  # under its old key
    span = MessageSpan([{"fingerprint": 2**62, "timestamp": 900, "content": "héllo"}], None)
    conversation, messages = store.save_conversation(
        WEBSITE, {"session_id": "s1", "updated_at": 1_000}, span)
    assert (conversation.added, messages.added, messages.removed) == (0, 0, 0)
    store.count_requests("token", 20_000, 3)
    assert store.requests_on("token", 20_000) == 3
    store.set_allowance("token", CredentialAllowance(learnt_rate=2.5))
    assert store.allowance("token").learnt_rate == 2.5
    store.set_last_run(WEBSITE, 9_000, "token")
    [status] = store.statuses()
    assert (status.checkpoint_ms, status.last_run_ms, status.quarantined) == (1_000, 9_000, 1)
    with store.lock(WEBSITE):
        pass


# SQLite -------------------------------------------------------------------------------------


def old_sqlite(path: Path, version: int) -> None:
    tables = {3: SQLITE_V3, 4: SQLITE_V4}[version]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for statement in (*tables.values(), *SQLITE_INDEXES):
        db.execute(statement)
    for statement, values in old_rows("?"):
        db.execute(statement, values)
    db.execute(f"PRAGMA user_version = {version}")
    db.close()


def sqlite_shape(path: Path) -> dict[str, Any]:
    """Every table's columns (name, type, NOT NULL, default, key place) and every index."""
    db = sqlite3.connect(path)
    try:
        names = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        shape: dict[str, Any] = {
            name: db.execute(f"PRAGMA table_info({name})").fetchall() for name in names
        }
        shape["indexes"] = db.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"
            " AND sql IS NOT NULL ORDER BY name").fetchall()
        shape["version"] = db.execute("PRAGMA user_version").fetchall()
        return shape
    finally:
        db.close()


@pytest.mark.parametrize("version", [3, 4])
def test_a_sqlite_file_of_the_last_release_opens_with_every_row_and_the_current_tables(
    tmp_path: Path, version: int
) -> None:
    new = tmp_path / "new.sqlite3"
    SQLiteStore(new).close()
    old = tmp_path / f"v{version}.sqlite3"
    old_sqlite(old, version)

    with SQLiteStore(old) as store:
        check_old_rows_and_new_tables(store)

    assert sqlite_shape(old) == sqlite_shape(new)
    assert sqlite_shape(old)["version"] == [(schema.SQLITE_VERSION,)]


def test_the_sqlite_tables_are_the_schemas(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    SQLiteStore(path).close()
    shape = sqlite_shape(path)
    for table in schema.tables("sqlite"):
        assert [(name, kind) for _, name, kind, *_ in shape[table.name]] == [
            (column.name, column.type.named("sqlite")) for column in table.columns
        ], table.name
    assert {table.name for table in schema.tables("sqlite")} | {"indexes", "version"} == set(shape)


# PostgreSQL ---------------------------------------------------------------------------------


def postgres_shape(server: PostgresServer, url: str) -> list[list[tuple[Any, ...]]]:
    """Every column (in order, with its type, nullability and default), every index and the
    schema version."""
    with server.connect(url.rsplit("/", 1)[1]) as db:
        return [
            db.execute("SELECT table_name, ordinal_position, column_name, data_type,"
                       " is_nullable, column_default FROM information_schema.columns"
                       " WHERE table_schema = 'public' ORDER BY 1, 2").fetchall(),
            db.execute("SELECT indexname, indexdef FROM pg_indexes"
                       " WHERE schemaname = 'public' ORDER BY 1").fetchall(),
            db.execute("SELECT version FROM crisp_sync_schema").fetchall(),
        ]


def old_postgres(server: PostgresServer, url: str, version: int) -> None:
    with server.connect(url.rsplit("/", 1)[1]) as db:
        for statements in POSTGRES_MIGRATIONS[:version]:
            for statement in statements:
                db.execute(statement)
        db.execute("CREATE TABLE crisp_sync_schema (version INTEGER NOT NULL)")
        db.execute("INSERT INTO crisp_sync_schema (version) VALUES (%s)", (version,))
        for statement, values in old_rows("%s"):
            db.execute(statement, values)


@pytest.mark.parametrize("version", [2, 3])
def test_a_postgresql_database_of_the_last_release_opens_with_every_row_and_the_current_tables(
    postgres_server: PostgresServer, postgres_url: str, version: int
) -> None:
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    fresh = postgres_server.create_database()
    try:
        PostgresStore(fresh, pool_size=1).close()
        old_postgres(postgres_server, postgres_url, version)

        with PostgresStore(postgres_url, pool_size=2) as store:
            check_old_rows_and_new_tables(store)

        assert postgres_shape(postgres_server, postgres_url) == postgres_shape(
            postgres_server, fresh)
    finally:
        postgres_server.drop_database(fresh.rsplit("/", 1)[1])


def test_the_postgresql_tables_are_the_schemas(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    PostgresStore(postgres_url, pool_size=1).close()
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as db:
        for table in schema.tables("postgres"):
            columns = db.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                " ORDER BY attnum", (table.name,)).fetchall()
            declared = [
                (column.name, db.execute("SELECT %s::regtype::text",
                                         (column.type.named("postgres"),)).fetchone()[0])
                for column in table.columns
            ]
            assert columns == declared, table.name
