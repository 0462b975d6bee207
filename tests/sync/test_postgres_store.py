"""What `PostgresStore` adds to the store contract: its schema (JSONB documents, migrated under
a lock, a newer one refused), typed errors naming the database and never its password, leases
that a live worker keeps and a dead one loses, and ``crisp-sync`` on a PostgreSQL URL.

Every test runs against the private server of `tests.postgres_server` (or one of its own)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crisp_api.sync.store import MessageSpan, StoreError, WebsiteLockedError
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import ready_children, sync_command, wait_for

pytest.importorskip("psycopg_pool", reason="the PostgreSQL store needs psycopg 3 and "
                                           "psycopg_pool (pip install 'crisp-api-next[postgres]')")

import psycopg

from crisp_api.sync.postgres_store import SCHEMA_VERSION, PostgresStore

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytest_plugins = ["tests.postgres_server"]

WEBSITE = "website-a"
PASSWORD = "s3cret"  # what no message may show; the trust authentication ignores it
TABLES = {
    "conversations", "messages", "people", "operators", "sync_state", "sync_leases",
    "sync_workers", "crisp_sync_schema", "quarantine", "quota_ledger", "allowance",
}
DOCUMENT_TABLES = ("conversations", "messages", "people", "operators")


def dbname(url: str) -> str:
    return url.rsplit("/", 1)[1]


def public_name(server: PostgresServer, name: str) -> str:
    """How errors and ``repr`` name a database of ``server``: no password."""
    return f"crisp@127.0.0.1:{server.port}/{name}"


def query(server: PostgresServer, url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own to ``url``'s database, committed at once."""
    with server.connect(dbname(url)) as db:
        cursor = db.execute(statement, params)
        return cursor.fetchall() if cursor.description is not None else []


def tables(server: PostgresServer, url: str) -> set[str]:
    return {name for (name,) in query(
        server, url, "SELECT table_name FROM information_schema.tables"
                     " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )}


def schema(server: PostgresServer, url: str) -> list[list[tuple[Any, ...]]]:
    """Every column and index, and the schema version row with the transaction that wrote it
    (rewriting the row, even with the same version, changes it)."""
    return [
        query(server, url, "SELECT table_name, column_name, data_type, is_nullable,"
                           " column_default FROM information_schema.columns"
                           " WHERE table_schema = 'public' ORDER BY 1, 2"),
        query(server, url, "SELECT indexname, indexdef FROM pg_indexes"
                           " WHERE schemaname = 'public' ORDER BY 1"),
        query(server, url, "SELECT version, xmin::text FROM crisp_sync_schema"),
    ]


def open_at_once(url: str, count: int) -> list[PostgresStore]:
    """``count`` stores opened by as many threads released together."""
    start = threading.Barrier(count)

    def open_one(_: int) -> PostgresStore:
        start.wait()
        return PostgresStore(url, pool_size=1)

    with ThreadPoolExecutor(count) as threads:
        futures = [threads.submit(open_one, i) for i in range(count)]
    opened = [future.result() for future in futures if future.exception() is None]
    if len(opened) < count:
        for store in opened:
            store.close()
        next(future for future in futures if future.exception() is not None).result()
    return opened


# Schema -------------------------------------------------------------------------------------


def test_a_new_database_gets_every_table_at_the_current_version(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    assert tables(postgres_server, postgres_url) == set()

    PostgresStore(postgres_url).close()

    assert tables(postgres_server, postgres_url) == TABLES
    assert query(postgres_server, postgres_url, "SELECT version FROM crisp_sync_schema") == [
        (SCHEMA_VERSION,)
    ]
    assert dict(query(
        postgres_server, postgres_url,
        "SELECT table_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND column_name = 'data'",
    )) == dict.fromkeys(DOCUMENT_TABLES, "jsonb")


CONVERSATION: dict[str, Any] = {
    "session_id": "session_7d1c",
    "updated_at": 1_700_000_000_123,
    "state": "resolved",
    "is_blocked": False,
    "meta": {
        "nickname": "Zoë 👋 \"quoted\" \\ back",
        "email": None,
        "segments": ["vip", "beta"],
        "data": {"score": 1.5, "visits": 12, "nested": {"deep": [1, {"x": True}, []]}},
    },
}
MESSAGES: list[dict[str, Any]] = [
    {"session_id": "session_7d1c", "fingerprint": 2**53 + 1, "timestamp": 1_700_000_000_001,
     "type": "text", "from": "user", "content": "héllo\nwörld\t✓"},
    {"session_id": "session_7d1c", "fingerprint": 42, "timestamp": 1_700_000_000_002,
     "type": "file", "from": "operator",
     "content": {"name": "a.png", "url": "https://example.com/a.png", "type": "image/png"},
     "user": {"nickname": "Ann", "user_id": "u1"}, "read": "chat", "delivered": ""},
]
PROFILE: dict[str, Any] = {
    "people_id": "p1", "email": "ann@example.com",
    "person": {"nickname": "Ann", "geolocation": {"coordinates": {"latitude": 48.85}}},
    "segments": [], "company": {},
}
OPERATOR: dict[str, Any] = {"type": "operator", "details": {"user_id": "u1", "role": "owner"}}


def test_rows_are_jsonb_objects_holding_the_whole_document(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with PostgresStore(postgres_url) as store:
        store.save_conversation(WEBSITE, CONVERSATION, MessageSpan(MESSAGES, since=None))
        store.save_people(WEBSITE, [PROFILE])
        store.save_operators(WEBSITE, [OPERATOR])

    def stored(table: str, keys: str) -> list[tuple[Any, ...]]:
        return query(postgres_server, postgres_url,
                     f"SELECT {keys}, jsonb_typeof(data), data FROM {table} ORDER BY 1, 2")

    assert stored("conversations", "session_id, website_id, updated_at") == [
        ("session_7d1c", WEBSITE, 1_700_000_000_123, "object", CONVERSATION)
    ]
    assert stored("messages", "fingerprint, session_id, website_id, timestamp") == [
        (m["fingerprint"], "session_7d1c", WEBSITE, m["timestamp"], "object", m)
        for m in sorted(MESSAGES, key=lambda m: int(m["fingerprint"]))
    ]
    assert stored("people", "people_id, website_id") == [("p1", WEBSITE, "object", PROFILE)]
    assert stored("operators", "user_id, website_id") == [("u1", WEBSITE, "object", OPERATOR)]
    # Documents, not text: PostgreSQL can look inside them.
    assert query(postgres_server, postgres_url,
                 "SELECT data -> 'meta' ->> 'nickname' FROM conversations") == [
        (CONVERSATION["meta"]["nickname"],)
    ]


def test_a_nul_character_is_dropped_not_a_failure_forever(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """JSONB cannot hold U+0000: the character is dropped (the rest of the row is exact),
    instead of failing the conversation at every run."""
    message = {"session_id": "s1", "fingerprint": 1, "timestamp": 5,
               "content": "before\u0000after", "note": "a backslash: \\u0000 stays"}
    conversation = {"session_id": "s1", "updated_at": 5}
    with PostgresStore(postgres_url) as store:
        saved = store.save_conversation(WEBSITE, conversation, MessageSpan([message], None))
        again = store.save_conversation(WEBSITE, conversation, MessageSpan([message], None))
        assert store.save_message(WEBSITE, "s1", message).added == 0
        assert store.edit_message(WEBSITE, "s1", 1, "edited\u0000").updated == 1
    assert saved[1].added == 1
    assert again[1].added == again[1].updated == 0  # idempotent, though not byte-equal
    [(data,)] = query(postgres_server, postgres_url, "SELECT data FROM messages")
    assert data == {**message, "content": "edited", "note": "a backslash: \\u0000 stays"}


def test_opening_again_leaves_the_schema_and_rows_as_they_are(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with PostgresStore(postgres_url) as store:
        store.set_checkpoint(WEBSITE, 1_000)
        store.save_conversation(WEBSITE, CONVERSATION, MessageSpan(MESSAGES, since=None))
    before = schema(postgres_server, postgres_url)

    with PostgresStore(postgres_url) as again:
        assert again.checkpoint(WEBSITE) == 1_000
    assert schema(postgres_server, postgres_url) == before

    for store in open_at_once(postgres_url, 2):
        assert store.conversation_state(WEBSITE, "session_7d1c").updated_at == 1_700_000_000_123
        store.close()
    assert schema(postgres_server, postgres_url) == before


def test_stores_opened_at_once_on_a_new_database_create_one_schema(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    stores = open_at_once(postgres_url, 4)  # each would create the tables, but one at a time
    try:
        assert tables(postgres_server, postgres_url) == TABLES
        assert query(postgres_server, postgres_url, "SELECT version FROM crisp_sync_schema") == [
            (SCHEMA_VERSION,)
        ]
        stores[0].set_checkpoint(WEBSITE, 5)
        assert [store.checkpoint(WEBSITE) for store in stores] == [5] * 4
    finally:
        for store in stores:
            store.close()


def test_a_database_of_a_newer_release_is_refused_untouched(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    query(postgres_server, postgres_url,
          "CREATE TABLE crisp_sync_schema (version INTEGER NOT NULL)")
    query(postgres_server, postgres_url, "INSERT INTO crisp_sync_schema VALUES (%s)",
          SCHEMA_VERSION + 1)

    with pytest.raises(StoreError) as refused:
        PostgresStore(postgres_url)

    message = str(refused.value)
    name = public_name(postgres_server, dbname(postgres_url))
    assert refused.value.permanent
    assert message.startswith(f"PostgreSQL database {name}: ")
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in message
    assert tables(postgres_server, postgres_url) == {"crisp_sync_schema"}  # nothing created
    assert query(postgres_server, postgres_url, "SELECT version FROM crisp_sync_schema") == [
        (SCHEMA_VERSION + 1,)
    ]


# Errors -------------------------------------------------------------------------------------


def require_passwords(server: PostgresServer, password: str) -> None:
    """Make ``server`` ask for ``crisp``'s password over TCP (``127.0.0.1``) and refuse the user
    ``intruder`` there, its unix socket staying trusted."""
    with server.connect() as db:
        db.execute(f"ALTER ROLE crisp PASSWORD '{password}'")
    Path(server.data_directory, "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all intruder 127.0.0.1/32 reject\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    with server.connect() as db:
        db.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while True:  # the server reloads its configuration in the background
        try:
            server.connect().close()
        except psycopg.OperationalError:
            return
        assert time.monotonic() < deadline, "the server never asked for a password"
        time.sleep(0.05)


def test_refused_credentials_are_permanent_errors_naming_the_database_not_the_password(
    postgres_server_factory: Callable[[], PostgresServer],
) -> None:
    server = postgres_server_factory()
    require_passwords(server, "right-" + PASSWORD)
    name = public_name(server, "postgres")

    with pytest.raises(StoreError) as wrong:
        PostgresStore(f"postgresql://crisp:wrong-{PASSWORD}@127.0.0.1:{server.port}/postgres")
    with pytest.raises(StoreError) as rejected:
        PostgresStore(f"postgresql://intruder:{PASSWORD}@127.0.0.1:{server.port}/postgres")

    for refused, reason in ((wrong, "password authentication failed"),
                            (rejected, "pg_hba.conf rejects connection")):
        message = str(refused.value)
        assert refused.value.permanent, message
        assert reason in message
        assert PASSWORD not in message
        assert "\n" not in message
    assert str(wrong.value).startswith(f"PostgreSQL database {name}: ")
    assert f"intruder@127.0.0.1:{server.port}/postgres" in str(rejected.value)

    right = f"postgresql://crisp:right-{PASSWORD}@127.0.0.1:{server.port}/postgres"
    with PostgresStore(right) as store:
        assert repr(store) == f"<PostgresStore {name}>"
        store.set_checkpoint(WEBSITE, 1)


def test_a_database_that_does_not_exist_is_a_permanent_error(
    postgres_server: PostgresServer,
) -> None:
    with pytest.raises(StoreError) as missing:
        PostgresStore(f"postgresql://crisp:{PASSWORD}@127.0.0.1:{postgres_server.port}/no_such_db")

    message = str(missing.value)
    assert missing.value.permanent, message
    assert message.startswith(
        f"PostgreSQL database {public_name(postgres_server, 'no_such_db')}: "
    )
    assert 'database "no_such_db" does not exist' in message
    assert PASSWORD not in message
    assert "\n" not in message


def test_a_stopped_server_is_a_transient_error(
    postgres_server_factory: Callable[[], PostgresServer],
) -> None:
    server = postgres_server_factory()
    url = server.create_database()
    store = PostgresStore(url, pool_size=1)
    try:
        store.set_checkpoint(WEBSITE, 1)
        server.stop()
        with pytest.raises(StoreError) as failed:
            store.set_checkpoint(WEBSITE, 2)
    finally:
        store.close()

    assert not failed.value.permanent, str(failed.value)
    assert str(failed.value).startswith(f"PostgreSQL database {public_name(server, dbname(url))}: ")
    assert isinstance(failed.value.__cause__, psycopg.OperationalError)


def test_a_read_only_database_is_a_permanent_error(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    PostgresStore(postgres_url).close()  # the schema is there: only writes are refused
    with postgres_server.connect() as db:
        db.execute(f"ALTER DATABASE {dbname(postgres_url)} SET default_transaction_read_only = on")

    with pytest.raises(StoreError) as refused:
        PostgresStore(postgres_url)

    message = str(refused.value)
    assert refused.value.permanent, message
    assert message.startswith(
        f"PostgreSQL database {public_name(postgres_server, dbname(postgres_url))}: "
    )
    assert "read-only transaction (SQLSTATE 25006)" in message


def test_the_password_never_shows_in_repr_whatever_form_it_is_given_in(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    name, port = dbname(postgres_url), postgres_server.port
    forms = [
        f"postgresql://crisp:{PASSWORD}@127.0.0.1:{port}/{name}",
        f"postgres://crisp@127.0.0.1:{port}/{name}?password={PASSWORD}",
        f"host=127.0.0.1 port={port} user=crisp password={PASSWORD} dbname={name}",
    ]
    for url in forms:  # trust authentication: the password is ignored, the store opens
        with PostgresStore(url) as store:
            assert repr(store) == f"<PostgresStore {public_name(postgres_server, name)}>"


@pytest.mark.parametrize("url", [
    pytest.param(f"postgresql://crisp:{PASSWORD}%zz@127.0.0.1:5432/db", id="bad-escape"),
    pytest.param(f"postgresql://crisp:{PASSWORD}@[::1/db", id="unclosed-bracket"),
    pytest.param(f"user=crisp password={PASSWORD} dbname", id="missing-equals"),
])
def test_a_malformed_url_is_refused_without_echoing_its_password(url: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL URL") as refused:
        PostgresStore(url)
    assert PASSWORD not in str(refused.value)


# Leases -------------------------------------------------------------------------------------

LEASE_TTL = 3.0
HOLD_LEASE = """
import sys, time
from crisp_api.sync.postgres_store import PostgresStore
store = PostgresStore(sys.argv[1], lease_ttl=float(sys.argv[3]), pool_size=2)
with store.lock(sys.argv[2]):
    store.leases.live_workers()
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts a Python child holding a website's lease (once it printed "held"); kills it
    after the test."""
    with ready_children("held") as spawn:

        def start(url: str, website_id: str) -> subprocess.Popen[str]:
            return spawn(HOLD_LEASE, url, website_id, str(LEASE_TTL))

        yield start


def refusal(store: PostgresStore, website_id: str) -> WebsiteLockedError:
    """The refusal of ``store.lock(website_id)`` (failing the test if it is not refused)."""
    with pytest.raises(WebsiteLockedError) as refused, store.lock(website_id):
        pass
    return refused.value


def test_a_lease_lives_while_its_holder_renews_it_and_ends_after_it_is_killed(
    postgres_server: PostgresServer, postgres_url: str,
    holder: Callable[..., subprocess.Popen[str]],
) -> None:
    with PostgresStore(postgres_url, lease_ttl=LEASE_TTL) as store:
        child = holder(postgres_url, WEBSITE)
        held_at = time.monotonic()
        refused = refusal(store, WEBSITE)
        assert refused.website_id == WEBSITE
        assert re.fullmatch(
            re.escape(f"pid {child.pid} on host {socket.gethostname()}, its lease ends ")
            + r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
            refused.holder,
        )
        assert store.leases.live_workers() == 2  # the child and this store

        time.sleep(max(0.0, held_at + LEASE_TTL * 1.5 - time.monotonic()))
        refusal(store, WEBSITE)  # renewed by the child past its time to live

        child.send_signal(signal.SIGKILL)
        child.wait()
        refusal(store, WEBSITE)  # a dead holder's lease lasts until it expires

        def taken() -> bool:
            try:
                with store.lock(WEBSITE):
                    [(holder_name,)] = query(postgres_server, postgres_url,
                                             "SELECT holder FROM sync_leases")
                    assert holder_name == f"pid {os.getpid()} on host {socket.gethostname()}"
            except WebsiteLockedError:
                return False
            return True

        wait_for(taken, 15, "the lease of the killed holder to expire")
        wait_for(lambda: store.leases.live_workers() == 1, 15,
                 "the killed holder to stop counting as live")
    assert query(postgres_server, postgres_url,
                 "SELECT owner, holder, lease_until FROM sync_leases") == [(None, None, None)]


def test_the_end_of_a_lease_is_shown_in_utc_whatever_the_server_time_zone(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with postgres_server.connect() as db:  # UTC+05:30: a local time would show as 5.5 h off
        db.execute(f"ALTER DATABASE {dbname(postgres_url)} SET timezone = 'Asia/Kolkata'")
    with (
        PostgresStore(postgres_url) as first,
        PostgresStore(postgres_url) as second,
        first.lock(WEBSITE),
    ):
        refused = refusal(second, WEBSITE)
        [(ends,)] = query(
            postgres_server, postgres_url,
            "SELECT to_char(lease_until AT TIME ZONE 'UTC',"
            " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM sync_leases",
        )
    assert refused.holder.endswith(f", its lease ends {ends}")


def test_stores_claiming_at_once_never_get_the_same_website(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    websites = [f"website-{i:02}" for i in range(40)]
    with ExitStack() as stack:
        stores = [stack.enter_context(PostgresStore(postgres_url, pool_size=2))
                  for _ in range(4)]
        assert stores[0].leases.add(websites) == 40
        start = threading.Barrier(len(stores))

        def claim_all(store: PostgresStore) -> list[str]:
            start.wait()
            claimed = []
            while (website_id := store.leases.claim(websites)) is not None:
                claimed.append(website_id)
            return claimed

        with ThreadPoolExecutor(len(stores)) as threads:
            claims = list(threads.map(claim_all, stores))

        assert sorted(w for claimed in claims for w in claimed) == websites  # each once
        owners = dict(query(postgres_server, postgres_url,
                            "SELECT website_id, owner FROM sync_leases WHERE lease_until > now()"))
        assert owners == {w: store.leases.owner
                          for store, claimed in zip(stores, claims, strict=True)
                          for w in claimed}
        for store, claimed in zip(stores, claims, strict=True):
            assert store.leases.held() == sorted(claimed)
    assert query(postgres_server, postgres_url,  # closing gave every lease back
                 "SELECT count(*) FROM sync_leases WHERE owner IS NOT NULL") == [(0,)]


def test_claim_skips_websites_synced_since_due_before_and_pending_tells_what_is_left(
    postgres_url: str,
) -> None:
    a, b, c = websites = ["website-a", "website-b", "website-c"]
    with PostgresStore(postgres_url) as mine, PostgresStore(postgres_url) as theirs:
        leases = mine.leases
        leases.add(websites)
        due = leases.now()
        assert leases.pending(websites, due_before=due)

        assert leases.claim(websites, due_before=due) == a  # never synced ones by id
        leases.give_back(a, synced=True)
        assert theirs.leases.claim(websites, due_before=due) == b
        assert leases.claim(websites, due_before=due) == c
        leases.give_back(c)  # not synced completely: still due
        assert leases.claim(websites, due_before=due) == c
        leases.give_back(c, synced=True)

        assert leases.claim(websites, due_before=due) is None  # a and c synced, b held
        assert leases.pending(websites, due_before=due)  # b is not synced yet
        assert not leases.pending(websites, due_before=due, exclude=[b])
        theirs.leases.give_back(b, synced=True)
        assert not leases.pending(websites, due_before=due)
        assert leases.claim(websites, due_before=due) is None

        # Once due again, the website synced longest ago comes first.
        later = leases.now()
        assert leases.pending(websites, due_before=later)
        assert leases.claim(websites, due_before=later, exclude=[a]) == b
        assert theirs.leases.claim(websites) == a
        assert leases.held() == [b]


def test_live_workers_counts_the_stores_that_asked_until_they_close(postgres_url: str) -> None:
    with PostgresStore(postgres_url) as first, PostgresStore(postgres_url) as bystander:
        assert first.leases.live_workers() == 1
        second = PostgresStore(postgres_url)
        try:
            assert second.leases.live_workers() == 2
            assert first.leases.live_workers() == 2
            assert bystander.checkpoint(WEBSITE) is None  # a store that never asked: no worker
            assert second.leases.live_workers() == 2
        finally:
            second.close()
        assert first.leases.live_workers() == 1
        assert bystander.leases.live_workers() == 2


# crisp-sync on PostgreSQL -------------------------------------------------------------------


def run_sync(
    command: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_exact_copy_in_postgres(
    server: PostgresServer, url: str, fake: FakeCrisp, website_id: str
) -> None:
    """The database holds exactly the fake's conversations and messages of the website."""
    conversations = dict(query(server, url, "SELECT session_id, data FROM conversations"
                                            " WHERE website_id = %s", website_id))
    messages = {
        (session_id, fingerprint): data
        for session_id, fingerprint, data in query(
            server, url, "SELECT session_id, fingerprint, data FROM messages"
                         " WHERE website_id = %s", website_id)
    }
    truth = fake.ground_truth(website_id=website_id)
    assert conversations == {sid: t.conversation for sid, t in truth.items()}
    expected = {(sid, m["fingerprint"]): m for sid, t in truth.items() for m in t.messages}
    assert messages.keys() == expected.keys()
    assert messages == expected


@pytest.mark.parametrize("given_by", ["--db", "CRISP_SYNC_DB"])
def test_crisp_sync_copies_a_website_into_postgresql(
    postgres_server: PostgresServer, postgres_url: str, tmp_path: Path, given_by: str
) -> None:
    with FakeCrisp(conversations=30, messages=6, seed=11) as fake:
        command, env = sync_command(fake, Path("unused"), "--website-id", fake.website_id)
        env.pop("CRISP_SYNC_DB", None)
        at = command.index("--db")
        if given_by == "--db":
            command[at + 1] = postgres_url
        else:
            del command[at:at + 2]
            env["CRISP_SYNC_DB"] = postgres_url

        result = run_sync(command, env, tmp_path)

        assert result.returncode == 0, result.stderr
        assert_exact_copy_in_postgres(postgres_server, postgres_url, fake, fake.website_id)
    assert list(tmp_path.iterdir()) == []  # no SQLite file on the side
    [(checkpoint,)] = query(postgres_server, postgres_url,
                            "SELECT checkpoint_ms FROM sync_state WHERE website_id = %s",
                            fake.website_id)
    assert checkpoint is not None
    assert query(postgres_server, postgres_url, "SELECT website_id, owner FROM sync_leases") == [
        (fake.website_id, None)  # held for the run, given back at its end
    ]


@pytest.mark.parametrize(("db", "extra", "status", "reason"), [
    pytest.param("crisp.sqlite3", ("--lease-ttl", "30"), 2,
                 "--lease-ttl goes with a PostgreSQL database", id="lease-ttl-on-sqlite"),
    pytest.param("postgresql://crisp:{password}@127.0.0.1:{port}/no_such_db",
                 ("--lease-ttl", "1"), 2, "--lease-ttl must be at least 3s",
                 id="lease-ttl-too-short"),
    pytest.param("postgresql://crisp:{password}%zz@127.0.0.1:{port}/postgres", (), 2,
                 "--db: not a PostgreSQL URL", id="malformed-url"),
    pytest.param("postgresql://crisp:{password}@127.0.0.1:{port}/no_such_db", (), 5,
                 "cannot write the database: PostgreSQL database "
                 "crisp@127.0.0.1:{port}/no_such_db: ", id="no-such-database"),
])
def test_crisp_sync_refuses_a_database_it_cannot_use_in_one_line(
    postgres_server: PostgresServer, tmp_path: Path,
    db: str, extra: tuple[str, ...], status: int, reason: str,
) -> None:
    port = postgres_server.port
    command = [sys.executable, "-m", "crisp_api.sync.cli", "--website-id", WEBSITE,
               "--db", db.format(password=PASSWORD, port=port), "--no-progress", *extra]
    env = {key: value for key, value in os.environ.items() if key != "CRISP_SYNC_DB"}
    env |= {"CRISP_IDENTIFIER": "identifier", "CRISP_KEY": "key",
            "CRISP_REST_HOST": "http://127.0.0.1:9"}  # never reached: the database comes first

    result = run_sync(command, env, tmp_path)

    assert result.returncode == status, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("crisp-sync: ")
    assert reason.format(port=port) in line
    assert PASSWORD not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no SQLite file either
