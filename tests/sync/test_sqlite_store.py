"""What `SQLiteStore` adds to the store contract: migrating old databases in place, a lock
that binds other processes and dies with its holder, and typed errors."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisp_api.sync import sqlite_locks
from crisp_api.sync.sqlite_store import SCHEMA_VERSION, SQLiteStore
from crisp_api.sync.store import Changes, MessageSpan, StoreError, WebsiteLockedError
from tests.sync.helpers import Spawn, ready_children

WEBSITE = "website-a"

# The schema of the first release (user_version 0), exactly as it shipped.
OLD_SCHEMA = """
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

OLD_ROWS: dict[str, list[tuple[Any, ...]]] = {
    "conversations (session_id, website_id, updated_at, data)": [
        ("s1", WEBSITE, 1_000, json.dumps({"session_id": "s1", "updated_at": 1_000})),
        ("s2", WEBSITE, None, json.dumps({"session_id": "s2"})),
    ],
    "messages (fingerprint, session_id, website_id, timestamp, data)": [
        (11, "s1", WEBSITE, 100, json.dumps({"fingerprint": 11, "content": "héllo"})),
        (12, "s1", WEBSITE, 200, json.dumps({"fingerprint": 12, "content": "bye"})),
        (21, "s2", WEBSITE, 150, json.dumps({"fingerprint": 21})),
    ],
    "people (people_id, website_id, data)": [
        ("p1", WEBSITE, json.dumps({"people_id": "p1"})),
        ("p2", "website-b", json.dumps({"people_id": "p2"})),
    ],
    "operators (website_id, user_id, data)": [
        (WEBSITE, "u1", json.dumps({"details": {"user_id": "u1"}})),
    ],
    "sync_state (website_id, checkpoint_ms)": [(WEBSITE, 1_700_000_000_000)],
}


def create_old_database(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # as the first release left it
    db.executescript(OLD_SCHEMA)
    for table, rows in OLD_ROWS.items():
        marks = ", ".join("?" * len(rows[0]))
        db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    db.close()


def query(path: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection, committed at once."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def schema(path: Path) -> list[tuple[Any, ...]]:
    return query(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")


class TracingStore(SQLiteStore):
    """Records every statement its connection runs once configured."""

    statements: list[str]

    def _configure(self, db: sqlite3.Connection) -> None:
        super()._configure(db)
        self.statements = []
        db.set_trace_callback(self.statements.append)


class CappedStore(SQLiteStore):
    """A store whose file cannot grow past its current size: a full disk, without one."""

    def _configure(self, db: sqlite3.Connection) -> None:
        super()._configure(db)
        db.execute("PRAGMA max_page_count = 1")  # SQLite raises it to the current size


# Migration


def test_an_old_database_is_migrated_in_place_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    create_old_database(path)

    with SQLiteStore(path) as store:
        assert store.checkpoint(WEBSITE) == 1_700_000_000_000
        assert store.people_listed_at(WEBSITE) is None
        assert store.conversation_state(WEBSITE, "s1").newest_message == 200

    for table, rows in OLD_ROWS.items():
        name, columns = table.split(" ", 1)
        stored = query(path, f"SELECT {columns.strip('()')} FROM {name}")
        assert sorted(stored, key=repr) == sorted(rows, key=repr), name
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    names = {name for _, name, _ in schema(path)}
    assert {"messages_session", "conversations_website", "sync_locks"} <= names
    assert not [name for name in names if "migrating" in name]


def test_a_version_1_database_gains_from_event_keeping_every_message(tmp_path: Path) -> None:
    """Version 1 had no ``from_event``: every message it holds was read by a sync."""
    path = tmp_path / "v1.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE messages (session_id TEXT NOT NULL, fingerprint INTEGER NOT NULL,"
        " website_id TEXT NOT NULL, timestamp INTEGER NOT NULL, data TEXT NOT NULL,"
        " PRIMARY KEY (session_id, fingerprint));"
        "INSERT INTO messages VALUES ('s1', 1, 'w', 100, '{}'), ('s1', 2, 'w', 250, '{}');"
        "PRAGMA user_version = 1;"
    )
    db.close()

    with SQLiteStore(path) as store:
        assert store.conversation_state(WEBSITE, "s1").newest_message == 250
    assert query(path, "SELECT fingerprint, from_event FROM messages ORDER BY 1") == [
        (1, 0),
        (2, 0),
    ]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_migrated_database_takes_the_new_keys(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    create_old_database(path)

    with SQLiteStore(path) as store:
        span = MessageSpan(messages=[{"fingerprint": 11, "timestamp": 900}], since=None)
        assert store.save_conversation(WEBSITE, {"session_id": "s3"}, span) == (
            Changes(added=1),
            Changes(added=1),
        )
        assert store.save_people("website-b", [{"people_id": "p1"}]) == Changes(added=1)
        store.set_people_listed_at(WEBSITE, 5)
        assert store.checkpoint(WEBSITE) == 1_700_000_000_000

    assert query(path, "SELECT session_id FROM messages WHERE fingerprint = 11 ORDER BY 1") == [
        ("s1",),
        ("s3",),
    ]
    assert len(query(path, "SELECT * FROM people WHERE people_id = 'p1'")) == 2


def test_opening_an_up_to_date_database_only_checks_its_version(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    create_old_database(path)
    with SQLiteStore(path):
        pass
    migrated = schema(path)

    store = TracingStore(path)
    with store:
        assert store.statements == ["PRAGMA user_version"]
    assert schema(path) == migrated


def test_a_new_database_gets_the_current_schema_directly(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    store = TracingStore(path)
    with store:
        assert not any("migrating" in statement for statement in store.statements)
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_pages_stored_updated_at_is_read_from_an_index_alone(tmp_path: Path) -> None:
    """A relisting asks the stored ``updated_at`` of each page: read from the conversations'
    rows, that cost a fresh process a table page per conversation."""
    path = tmp_path / "crisp.sqlite3"
    store = TracingStore(path)
    with store:
        store.statements.clear()
        assert store.updated_at_of("website", ["session_a", "session_b"]) == {}
        assert store.stale_of("website", {"session_a": 1}) == {"session_a": None}
        lookups = [sql for sql in store.statements if "updated_at" in sql]
    assert len(lookups) == 2
    for lookup in lookups:
        plan = [step[-1] for step in query(path, f"EXPLAIN QUERY PLAN {lookup}")]
        assert any("COVERING INDEX conversations_stamp" in step for step in plan), plan


def test_a_migration_that_cannot_keep_everything_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    create_old_database(path)
    query(path, "ALTER TABLE sync_state ADD COLUMN note TEXT")  # not ours: would be lost
    before = schema(path)

    with pytest.raises(StoreError, match=r"sync_state has columns .*note") as failed:
        SQLiteStore(path)

    assert failed.value.permanent
    assert schema(path) == before  # people and messages, rebuilt first, were rolled back
    assert query(path, "PRAGMA user_version") == [(0,)]


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    query(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer") as refused:
        SQLiteStore(path)
    assert refused.value.permanent


# Lock

HOLD_LOCK = """
import sys, time
from crisp_api.sync.sqlite_store import SQLiteStore
with SQLiteStore(sys.argv[1]) as store, store.lock(sys.argv[2]):
    print("ready", flush=True)
    time.sleep(60)
"""

HOLD_WRITE_TRANSACTION = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("ready", flush=True)
time.sleep(60)
"""

HOLD_THEN_COMMIT_IN_ROLLBACK_MODE = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("CREATE TABLE IF NOT EXISTS theirs (x)")  # another program's file, not yet WAL
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO theirs VALUES (1)")
print("ready", flush=True)
time.sleep(0.5)
db.execute("COMMIT")
time.sleep(60)
"""

@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Starts a Python child running a script, once it printed "ready"; kills it after."""
    with ready_children("ready") as start:
        yield start


def lock_row(path: Path, host: str, pid: int, token: str, heartbeat_ms: int) -> None:
    query(path, "DELETE FROM sync_locks")
    query(
        path,
        "INSERT INTO sync_locks VALUES (?, ?, ?, ?, ?, ?)",
        WEBSITE,
        host,
        pid,
        token,
        heartbeat_ms,
        heartbeat_ms,
    )


def test_opening_waits_for_another_programs_write_that_sqlite_refuses_at_once(
        tmp_path: Path, spawn: Spawn) -> None:
    """Switching a file to WAL while another program writes to it in rollback-journal mode
    fails at once with SQLITE_BUSY, without SQLite's busy handler: so did a second crisp-sync
    starting beside a first on a new file (test_quota's two workers, now and then). Opening
    waits for it, within ``busy_timeout``, as any other write does."""
    path = tmp_path / "shared.sqlite3"
    spawn(HOLD_THEN_COMMIT_IN_ROLLBACK_MODE, str(path))
    with SQLiteStore(path, busy_timeout=30) as store:
        assert store.checkpoint(WEBSITE) is None
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "SELECT x FROM theirs") == [(1,)]


def test_opening_gives_up_on_a_write_that_outlasts_busy_timeout(
        tmp_path: Path, spawn: Spawn) -> None:
    path = tmp_path / "held.sqlite3"
    query(path, "CREATE TABLE theirs (x)")
    spawn(HOLD_WRITE_TRANSACTION, str(path))
    started = time.monotonic()
    with pytest.raises(StoreError, match="locked") as refused:
        SQLiteStore(path, busy_timeout=0.5)
    assert not refused.value.permanent
    assert time.monotonic() - started >= 0.5


def test_a_second_store_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with SQLiteStore(path) as first, SQLiteStore(path) as second:
        with first.lock(WEBSITE):
            with pytest.raises(WebsiteLockedError) as refused, second.lock(WEBSITE):
                pass
            holder = f"pid {os.getpid()} on host {socket.gethostname()} since "
            assert re.fullmatch(
                re.escape(holder) + r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", refused.value.holder
            )
        assert query(path, "SELECT * FROM sync_locks") == []
        with second.lock(WEBSITE):
            pass
    assert not [t for t in threading.enumerate() if t.name.startswith("crisp-sync lock")]


def test_a_lock_held_by_another_process_dies_with_it(tmp_path: Path, spawn: Spawn) -> None:
    path = tmp_path / "db.sqlite3"
    with SQLiteStore(path) as store:
        child = spawn(HOLD_LOCK, str(path), WEBSITE)
        with (
            pytest.raises(WebsiteLockedError, match=f"pid {child.pid} on host"),
            store.lock(WEBSITE),
        ):
            pass

        child.send_signal(signal.SIGKILL)
        child.wait()
        with store.lock(WEBSITE):
            assert query(path, "SELECT pid FROM sync_locks") == [(os.getpid(),)]


def test_a_live_pid_that_started_at_another_time_does_not_hold_the_lock(
    tmp_path: Path, spawn: Spawn
) -> None:
    path = tmp_path / "db.sqlite3"
    with SQLiteStore(path) as store:
        alive = spawn("print('ready', flush=True); import time; time.sleep(60)")
        lock_row(path, socket.gethostname(), alive.pid, "1:reused", sqlite_locks._now_ms())
        with store.lock(WEBSITE):
            pass


@pytest.mark.parametrize(
    ("age", "held"), [(sqlite_locks.LOCK_EXPIRY_SECONDS + 1, False), (1, True)]
)
def test_a_lock_from_another_host_lives_by_its_heartbeat(
    tmp_path: Path, age: float, held: bool
) -> None:
    path = tmp_path / "db.sqlite3"
    with SQLiteStore(path) as store:
        lock_row(path, "elsewhere", 4321, "99:x", sqlite_locks._now_ms() - int(age * 1000))
        if held:
            with (
                pytest.raises(WebsiteLockedError, match="pid 4321 on host elsewhere"),
                store.lock(WEBSITE),
            ):
                pass
        else:
            with store.lock(WEBSITE):
                assert query(path, "SELECT host FROM sync_locks") == [(socket.gethostname(),)]


def test_the_holder_keeps_its_heartbeat_fresh_and_frees_only_its_own_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_locks, "HEARTBEAT_SECONDS", 0.02)
    path = tmp_path / "db.sqlite3"
    with SQLiteStore(path) as store, store.lock(WEBSITE):
        [(taken,)] = query(path, "SELECT heartbeat_ms FROM sync_locks")
        deadline = time.monotonic() + 5
        while query(path, "SELECT heartbeat_ms FROM sync_locks") == [(taken,)]:
            assert time.monotonic() < deadline, "the heartbeat never moved"
            time.sleep(0.01)
        query(path, "UPDATE sync_locks SET token = 'taken over by another run'")
    assert query(path, "SELECT token FROM sync_locks") == [("taken over by another run",)]


# Errors


def test_a_write_lock_held_too_long_elsewhere_is_a_transient_error(
    tmp_path: Path, spawn: Spawn
) -> None:
    path = tmp_path / "db.sqlite3"
    SQLiteStore(path).close()
    spawn(HOLD_WRITE_TRANSACTION, str(path))

    with SQLiteStore(path, busy_timeout=0.05) as store:
        with pytest.raises(StoreError) as failed:
            store.set_checkpoint(WEBSITE, 1)
        assert store.checkpoint(WEBSITE) is None  # reads go on under WAL

    assert not failed.value.permanent
    assert str(path) in str(failed.value)
    assert "SQLITE_BUSY" in str(failed.value)
    assert isinstance(failed.value.__cause__, sqlite3.OperationalError)


def test_a_full_database_is_a_permanent_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    SQLiteStore(path).close()

    with CappedStore(path) as store:
        with pytest.raises(StoreError) as failed:
            store.save_people(WEBSITE, [{"people_id": "p1", "bio": "x" * 100_000}])
        store.set_checkpoint(WEBSITE, 7)  # the failed transaction left nothing behind
        assert store.checkpoint(WEBSITE) == 7

    message = str(failed.value)
    assert failed.value.permanent
    assert message.startswith(f"SQLite database {path}: ")
    assert "SQLITE_FULL" in message
    assert "\n" not in message


def test_a_file_that_is_not_a_database_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(StoreError, match="SQLITE_NOTADB") as failed:
        SQLiteStore(path)
    assert failed.value.permanent
    assert str(path) in str(failed.value)


def test_a_path_that_cannot_be_opened_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="SQLITE_CANTOPEN") as failed:
        SQLiteStore(tmp_path / "missing" / "db.sqlite3")
    assert failed.value.permanent


def test_a_row_that_cannot_be_encoded_mid_batch_rolls_the_call_back(tmp_path: Path) -> None:
    good = [{"fingerprint": 1, "timestamp": 1}, {"fingerprint": 2, "timestamp": 2}]
    bad = {"fingerprint": 3, "timestamp": 3, "content": {"not", "json"}}
    with SQLiteStore(tmp_path / "db.sqlite3") as store:
        with pytest.raises(StoreError) as failed:
            store.save_conversation(
                WEBSITE, {"session_id": "s1"}, MessageSpan([good[0], bad, good[1]], None)
            )
        assert isinstance(failed.value.__cause__, TypeError)  # wrapped, naming no row
        assert str(failed.value).endswith("save_conversation failed (TypeError)")
        assert store.save_conversation(WEBSITE, {"session_id": "s1"}, MessageSpan(good, None)) == (
            Changes(added=1),
            Changes(added=2),
        )
