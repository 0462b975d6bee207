"""No row can block a website or kill the service (issue 20, item 1), on SQLite and PostgreSQL.

Odd rows come through the fake's REST API as Crisp can send them (a lone UTF-16 surrogate, a
U+0000, integers beyond 64 bits, a fingerprint that is out of range or not an integer): each
is stored as it came (SQLite), stored with the characters JSONB cannot hold replaced and
flagged (PostgreSQL), or put aside in the quarantine table with its raw answer and the reason;
the run completes, its checkpoint moves and its summary counts what was put aside. The event
path's store methods take the same values without raising anything but `StoreError`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from crisp_api.sync import SQLiteStore
from crisp_api.sync.engine import SyncReport
from crisp_api.sync.metrics import Counts
from crisp_api.sync.report import summary
from crisp_api.sync.schema import POSTGRES_VERSION
from crisp_api.sync.store import Changes, MessageSpan, Store, StoreError
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import sync_command, wait_for

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytest_plugins = ["tests.postgres_server"]

WEBSITE = "website-a"
SURROGATE = "a lone \ud800 surrogate"
NUL = "a nul \u0000 inside"
BIG = {"big": 2**63, "small": -(2**63) - 1, "huge": 10**30}


@dataclass
class Backend:
    """One kind of database: what ``--db`` names, a store on it, and a way to look inside."""

    name: str
    db: str
    open: Callable[[], Any]
    select: Callable[[str], list[tuple[Any, ...]]]

    def messages(self, website_id: str) -> dict[tuple[str, int], tuple[Any, bool]]:
        """Each stored message's document and whether it is flagged ``replaced``."""
        flag = "replaced" if self.name == "postgres" else "0"
        return {
            (session_id, fingerprint): (_document(data), bool(replaced))
            for session_id, fingerprint, data, replaced in self.select(
                f"SELECT session_id, fingerprint, data, {flag} FROM messages"
                f" WHERE website_id = '{website_id}'")
        }

    def quarantine(self) -> list[tuple[Any, ...]]:
        """Every row put aside: (website, kind, session, ident, raw answer, reason)."""
        return [
            (website_id, kind, session_id, ident, json.loads(raw), reason)
            for website_id, kind, session_id, ident, raw, reason in self.select(
                "SELECT website_id, kind, session_id, ident, raw, reason FROM quarantine"
                " ORDER BY ident")
        ]

    def checkpoint(self, website_id: str) -> int | None:
        found = self.select(
            f"SELECT checkpoint_ms FROM sync_state WHERE website_id = '{website_id}'")
        return None if not found else found[0][0]

    def as_stored(self, value: Any) -> Any:
        """``value`` as this database holds it: itself on SQLite; on PostgreSQL, U+0000
        dropped and lone surrogates replaced by U+FFFD."""
        if self.name == "sqlite":
            return value
        return _replaced(value)


def _document(data: Any) -> Any:
    return json.loads(data) if isinstance(data, str) else data


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value.replace("\x00", ""))
    if isinstance(value, dict):
        return {_replaced(key): _replaced(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item) for item in value]
    return value


def _sqlite_backend(request: pytest.FixtureRequest) -> Backend:
    path: Path = request.getfixturevalue("tmp_path") / "crisp.sqlite3"

    def select(sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(path)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    return Backend("sqlite", str(path), lambda: SQLiteStore(path), select)


def _postgres_backend(request: pytest.FixtureRequest) -> Backend:
    url: str = request.getfixturevalue("postgres_url")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    def select(sql: str) -> list[tuple[Any, ...]]:
        with server.connect(url.rsplit("/", 1)[1]) as db:
            return db.execute(sql).fetchall()

    return Backend("postgres", url, lambda: PostgresStore(url, pool_size=4), select)


@pytest.fixture(params=["postgres", "sqlite"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return {"sqlite": _sqlite_backend, "postgres": _postgres_backend}[request.param](request)


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    with backend.open() as opened:
        yield opened


STATUS = [sys.executable, "-m", "crisp_api.sync.cli", "--status"]


def without_credentials(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if not name.startswith("CRISP_")}


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


# Through the fake's REST API ----------------------------------------------------------------


def test_odd_rows_are_stored_or_put_aside_and_the_run_completes(
    backend: Backend, tmp_path: Path
) -> None:
    with FakeCrisp(conversations=12, messages=4, seed=5, rtm=False) as fake:
        session_id = fake.conversations()[3]["session_id"]
        surrogate = fake.add_message(session_id, content=SURROGATE)
        big = fake.add_odd_message(session_id, BIG)
        nul = fake.add_message(session_id, content=NUL)
        too_big = fake.add_odd_message(session_id, {"fingerprint": 2**64})
        not_integer = fake.add_odd_message(session_id, {"fingerprint": "not-a-number"})
        command, env = sync_command(fake, Path("unused"), "--website-id", fake.website_id)
        command[command.index("--db") + 1] = backend.db

        result = run(command, env, tmp_path)

        assert result.returncode == 0, result.stderr
        assert "1 website(s) complete" in result.stdout
        assert "quarantined           2 row(s) this run, 2 held" in result.stdout
        truth = fake.ground_truth()
        newest = max(t.conversation["updated_at"] for t in truth.values())

    expected = {
        (sid, m["fingerprint"]): backend.as_stored(m)
        for sid, t in truth.items() for m in t.messages
        if m["fingerprint"] not in (too_big["fingerprint"], not_integer["fingerprint"])
    }
    stored = backend.messages(fake.website_id)
    assert {key: data for key, (data, _) in stored.items()} == expected
    by_content = {data["content"]: (data, flagged) for data, flagged in stored.values()
                  if isinstance(data["content"], str)}
    if backend.name == "sqlite":  # value for value
        assert by_content[SURROGATE] == (surrogate, False)
        assert by_content[NUL] == (nul, False)
    else:  # replaced and flagged
        assert by_content["a lone \ufffd surrogate"] == (_replaced(surrogate), True)
        assert by_content["a nul  inside"] == (_replaced(nul), True)
    assert by_content[big["content"]] == (big, False)  # integers beyond 64 bits, as they came
    assert sum(flagged for _, flagged in stored.values()) == (2 if backend.name == "postgres"
                                                              else 0)

    assert backend.quarantine() == [
        (fake.website_id, "message", session_id, '"not-a-number"', not_integer,
         "row has no integer fingerprint: cannot store it"),
        (fake.website_id, "message", session_id, "18446744073709551616", too_big,
         "fingerprint is outside the 64-bit range: cannot store it"),
    ]
    checkpoint = backend.checkpoint(fake.website_id)
    assert checkpoint is not None
    assert checkpoint >= newest  # the checkpoint moved past the odd rows

    # --status: no request, no credentials
    shown = run([*STATUS, "--db", backend.db], without_credentials(env), tmp_path)
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split() == ["website", "checkpoint", "(UTC)", "people", "listed", "(UTC)",
                              "quarantined", "last", "complete", "run", "(UTC)", "requests",
                              "today", "daily", "quota", "quota", "spent", "until", "(UTC)"]
    iso = datetime.fromtimestamp(checkpoint / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert row.split()[0] == fake.website_id
    assert row.split()[1].startswith(iso)
    assert row.split()[3] == "2"


def test_rows_whose_stamps_are_odd_are_put_aside_and_the_walks_go_on(
    backend: Backend, tmp_path: Path
) -> None:
    """A message without an integer timestamp, a listed conversation whose ``updated_at`` is
    not an integer and one without a session id neither stop the message walk nor the
    listing: the rows are put aside, everything else is stored, the checkpoint moves."""
    with FakeCrisp(conversations=60, messages=3, seed=8, rtm=False) as fake:
        listed = fake.conversations()
        unstamped_session, no_stamp_session, no_id_session = (
            listed[2]["session_id"], listed[52]["session_id"], listed[30]["session_id"])
        unstamped = fake.add_odd_message(unstamped_session, {"timestamp": None})
        fake.add_messages(unstamped_session, 2)  # the walk pages past the odd message
        fake.serve_conversation_over(no_stamp_session, {"updated_at": "yesterday"})
        fake.serve_conversation_over(no_id_session, {"session_id": None})
        command, env = sync_command(fake, Path("unused"), "--website-id", fake.website_id)
        command[command.index("--db") + 1] = backend.db

        result = run(command, env, tmp_path)

        assert result.returncode == 0, result.stderr
        assert "1 website(s) complete" in result.stdout
        truth = fake.ground_truth()
        newest = max(t.conversation["updated_at"] for t in truth.values()
                     if isinstance(t.conversation["updated_at"], int))

    stored = backend.messages(fake.website_id)
    expected = {(sid, m["fingerprint"]) for sid, t in truth.items() if sid != no_id_session
                for m in t.messages if m["fingerprint"] != unstamped["fingerprint"]}
    assert set(stored) == expected  # the unstamped conversation's other messages included
    aside = {(kind, reason) for _, kind, _, _, _, reason in backend.quarantine()}
    assert aside == {
        ("message", "row has no integer timestamp: cannot store it"),
        ("conversation", "row has no integer updated_at: cannot store it"),
        ("conversation", "row has no session_id: cannot store it"),
    }
    checkpoint = backend.checkpoint(fake.website_id)
    assert checkpoint is not None
    assert checkpoint >= newest


def test_status_of_a_database_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    result = run([*STATUS, "--db", str(tmp_path / "absent.sqlite3")],
                 without_credentials(dict(os.environ)), tmp_path)

    assert result.returncode == 2
    assert "no database" in result.stderr
    assert list(tmp_path.iterdir()) == []


# The event path -----------------------------------------------------------------------------


def message(fingerprint: Any, timestamp: Any = 10, **extra: Any) -> dict[str, Any]:
    return {"session_id": "s1", "fingerprint": fingerprint, "timestamp": timestamp,
            "content": "hello", **extra}


def test_the_event_path_stores_odd_values_or_puts_them_aside(
    backend: Backend, store: Store
) -> None:
    store.save_conversation(WEBSITE, {"session_id": "s1", "updated_at": 5},
                            MessageSpan([message(1, 5)], None))
    odd = message(2, content=SURROGATE, **BIG)

    assert store.save_message(WEBSITE, "s1", odd) == Changes(
        added=1, replaced=int(backend.name == "postgres"))
    unkeyed = message(2**64, content=SURROGATE + NUL)
    assert store.save_message(WEBSITE, "s1", unkeyed) == Changes(quarantined=1)
    assert store.save_message(WEBSITE, "s1", message(3, timestamp=2**63)) == Changes(
        quarantined=1)
    assert store.save_message(WEBSITE, "s\ud800", message(4)) == Changes(quarantined=1)
    assert store.edit_message(WEBSITE, "s1", 1, NUL).updated == 1
    assert store.edit_message(WEBSITE, "s1", 2**64, "x") == Changes()
    assert store.update_conversation(WEBSITE, "s1", {"state": SURROGATE, "n": 10**30}).updated == 1
    assert store.update_conversation(WEBSITE, "s\ud800", {"state": "x"}) == Changes()
    assert store.remove_message(WEBSITE, "s1", 2**64) == Changes()
    assert store.remove_message(WEBSITE, "s\ud800", 1) == Changes()
    assert store.remove_conversation(WEBSITE, "s\x00") == Changes()
    assert store.remove_person(WEBSITE, "p\ud800") == Changes()
    assert store.save_people(WEBSITE, [{"people_id": "p\ud800"}, {"people_id": "p1", **BIG}]) == (
        Changes(added=1, quarantined=1))
    assert store.quarantined(WEBSITE) == 4
    # the raw answer is kept whole, whatever it holds (ASCII JSON: any database takes it)
    assert (WEBSITE, "message", "s1", str(2**64), unkeyed,
            "fingerprint is outside the 64-bit range: cannot store it") in backend.quarantine()

    stored = backend.messages(WEBSITE)
    assert stored[("s1", 2)] == (backend.as_stored(odd), backend.name == "postgres")
    assert stored[("s1", 1)][0] == backend.as_stored(message(1, 5, content=NUL))
    [(conversation,)] = backend.select("SELECT data FROM conversations")
    assert _document(conversation) == backend.as_stored(
        {"session_id": "s1", "updated_at": 5, "state": SURROGATE, "n": 10**30})


def test_odd_rows_over_rtm_are_stored_or_put_aside_and_follow_mode_lives_on(
    backend: Backend, tmp_path: Path
) -> None:
    pytest.importorskip("socketio", reason="follow mode needs the events extra")
    with FakeCrisp(conversations=5, messages=2, seed=8) as fake:
        session_id = fake.conversations()[0]["session_id"]
        command, env = sync_command(fake, Path("unused"), "--website-id", fake.website_id,
                                    "--follow", "--interval", "1h")
        command[command.index("--db") + 1] = backend.db
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            first = child.stdout.readline()  # the first sync's summary, or '' if it died
            assert first.startswith("crisp-sync: 1 website(s) complete"), first
            odd = {"website_id": fake.website_id, "session_id": session_id, "type": "text",
                   "from": "user", "fingerprint": 777, "timestamp": fake.now_ms(),
                   "content": SURROGATE, **BIG}
            unkeyed = {**odd, "fingerprint": 2**64}

            def stored() -> bool:  # events pushed again until the socket is up: idempotent
                if child.poll() is not None:
                    return True
                fake.push_event("message:send", odd)
                fake.push_event("message:send", unkeyed)
                time.sleep(0.1)
                return ((session_id, 777) in backend.messages(fake.website_id)
                        and bool(backend.quarantine()))

            wait_for(stored, 30, "the odd event to be applied")
            assert child.poll() is None, child.communicate()
            child.send_signal(signal.SIGTERM)
            assert child.wait(timeout=15) == 0
        finally:
            if child.poll() is None:
                child.kill()
            _, errors = child.communicate()
    assert "Traceback" not in errors
    assert backend.messages(fake.website_id)[(session_id, 777)] == (
        backend.as_stored(odd), backend.name == "postgres")
    assert [(kind, ident, raw) for _, kind, _, ident, raw, _ in backend.quarantine()] == [
        ("message", str(2**64), unkeyed)]


@pytest.mark.parametrize("call", [
    lambda store: store.save_message(WEBSITE, "s1", message(1, content={"a", "set"})),
    lambda store: store.edit_message(WEBSITE, "s1", 1, {"a", "set"}),
    lambda store: store.update_conversation(WEBSITE, "s1", {"state": {"a", "set"}}),
    lambda store: store.save_people(WEBSITE, [{"people_id": "p1", "x": {"a", "set"}}]),
    lambda store: store.save_conversation(
        WEBSITE, {"session_id": "s1", "x": {"a", "set"}}, MessageSpan([], None)),
], ids=["save_message", "edit_message", "update_conversation", "save_people",
        "save_conversation"])
def test_an_unexpected_error_of_any_type_is_a_store_error_naming_no_row(
    store: Store, call: Callable[[Store], object]
) -> None:
    store.save_conversation(WEBSITE, {"session_id": "s1", "updated_at": 5},
                            MessageSpan([message(1, 5)], None))
    with pytest.raises(StoreError) as failed:
        call(store)
    assert isinstance(failed.value.__cause__, TypeError)
    assert not failed.value.permanent
    assert "set" not in str(failed.value)
    assert str(failed.value).endswith("failed (TypeError)")


# The summary --------------------------------------------------------------------------------


def test_the_summary_counts_rows_put_aside_and_replaced_only_when_there_are_some() -> None:
    counts = Counts(calls=3, cache_hits=0, requests=3, rate_limited=0)
    plain = SyncReport("w1", None, quarantine_held=0)
    assert "quarantined" not in summary([plain], counts, 1.0)
    assert "replaced" not in summary([plain], counts, 1.0)

    odd = SyncReport("w1", None, messages=Changes(added=5, quarantined=2, replaced=1),
                     quarantine_held=3)
    text = summary([odd], counts, 1.0)
    assert "  quarantined           2 row(s) this run, 3 held in the quarantine table" in text
    assert "  replaced              1 row(s) stored with characters" in text


# PostgreSQL: a bounded wait for a connection, none dead after a restart ---------------------


def test_a_postgresql_restart_hands_out_no_dead_connection(
    postgres_server_factory: Callable[[], PostgresServer],
) -> None:
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    server = postgres_server_factory()
    url = server.create_database()
    with PostgresStore(url, pool_size=4) as store:
        for at in range(4):  # every pooled connection used once, then idle
            store.set_checkpoint(WEBSITE, at)
        server.restart()

        store.set_checkpoint(WEBSITE, 10)  # no error: dead connections are not handed out
        assert store.checkpoint(WEBSITE) == 10


def test_a_stopped_postgresql_fails_each_save_within_seconds(
    postgres_server_factory: Callable[[], PostgresServer],
) -> None:
    from crisp_api.sync.postgres_store import POOL_WAIT_SECONDS, PostgresStore  # noqa: PLC0415

    server = postgres_server_factory()
    url = server.create_database()
    waits = []
    with PostgresStore(url, pool_size=2) as store:
        store.set_checkpoint(WEBSITE, 1)
        server.stop()
        for attempt in range(2):  # the pooled connection is dead, then there is none
            started = time.monotonic()
            with pytest.raises(StoreError) as failed:
                store.set_checkpoint(WEBSITE, 2 + attempt)
            waits.append(time.monotonic() - started)
            assert not failed.value.permanent
    assert max(waits) < POOL_WAIT_SECONDS + 5, waits  # psycopg_pool's own default is 30 s


# The metrics ---------------------------------------------------------------------------------


def test_the_metrics_show_the_quarantined_rows_of_each_synced_website() -> None:
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    from crisp_api import Crisp  # noqa: PLC0415
    from crisp_api.sync.follow import Health  # noqa: PLC0415
    from crisp_api.sync.monitoring import Metrics  # noqa: PLC0415

    with Crisp() as client:
        metrics = Metrics(client, Health(), 60.0)
        metrics.count_quarantined([SyncReport("w1", None, quarantine_held=3),
                                   SyncReport("w2", None)])  # w2's store failed: unknown
        text = metrics.render()[0].decode()
    assert 'crisp_quarantined_rows{website_id="w1"} 3.0' in text
    assert 'website_id="w2"' not in text


# Migrations: the quarantine table comes to databases of the previous schema -----------------


def test_a_sqlite_database_of_version_2_gains_the_quarantine_table(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    with SQLiteStore(path) as store:
        store.set_checkpoint(WEBSITE, 7)
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE quarantine; PRAGMA user_version = 2;")
    db.close()

    with SQLiteStore(path) as store:
        assert store.checkpoint(WEBSITE) == 7
        assert store.save_message(WEBSITE, "s1", message(2**64)) == Changes(quarantined=1)
        assert store.quarantined(WEBSITE) == 1


def test_a_postgresql_database_of_version_1_gains_the_flag_and_the_quarantine(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    with PostgresStore(postgres_url) as store:
        store.save_message(WEBSITE, "s1", message(1))
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as db:
        db.execute("DROP VIEW conversations_v, messages_v, people_v")  # version 1 had none
        db.execute("DROP TABLE quarantine")
        for table in ("conversations", "messages", "people", "operators"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN replaced")
        db.execute("UPDATE crisp_sync_schema SET version = 1")

    with PostgresStore(postgres_url) as store:
        assert store.save_message(WEBSITE, "s1", message(2**64)) == Changes(quarantined=1)
        assert store.quarantined(WEBSITE) == 1
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as db:
        assert db.execute("SELECT fingerprint, replaced FROM messages").fetchall() == [(1, False)]
        assert db.execute("SELECT version FROM crisp_sync_schema").fetchall() == [
            (POSTGRES_VERSION,)]
