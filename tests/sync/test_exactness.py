"""crisp-sync keeps an exact copy under real-world conditions (issue 11).

Each test here reproduces a way an earlier version ended a run as complete (exit 0, checkpoint
moved) with rows missing or wrong for good, against the fake Crisp over real sockets and real
SQLite files.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from crisp_api.errors import InvalidResponseError, RouteError
from crisp_api.sync import RequestCounter, SQLiteStore, SyncProgress, install, sync_website
from crisp_api.sync.store import MessageSpan, Row, StoreError
from crisp_api.testing import FakeCrisp
from tests.scripted_server import Reply, ScriptedServer
from tests.sync.helpers import assert_exact_copy, checkpoint, fast_client, stored, sync_command

HOUR_MS = 3_600_000

# 1. A failing store never looks like success -----------------------------------------------


class FailingOnce(SQLiteStore):
    """A real SQLite store whose ``fail_at``-th conversation save raises ``error`` once."""

    def __init__(self, path: Path, error: BaseException, fail_at: int = 7) -> None:
        super().__init__(path)
        self.error = error
        self.saves = 0
        self.fail_at = fail_at
        self.failed_session: str | None = None

    def save_conversation(self, website_id: str, conversation: Row, *args: Any) -> Any:
        self.saves += 1
        if self.saves == self.fail_at:
            self.failed_session = str(conversation["session_id"])
            raise self.error
        return super().save_conversation(website_id, conversation, *args)


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("database is locked"),
        RecursionError("maximum recursion depth exceeded"),
        AttributeError("'NoneType' object has no attribute 'get'"),
    ],
    ids=["locked", "recursion", "attribute"],
)
def test_a_store_failing_once_is_reported_and_repaired_by_the_rerun(
    tmp_path: Path, error: BaseException
) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=60, messages=5, seed=21) as fake:
        client = fast_client(fake)
        store = FailingOnce(path, error)
        with store:
            report = sync_website(client, fake.website_id, store, workers=4)
        assert not report.complete
        assert store.failed_session is not None
        assert any(store.failed_session in line for line in report.errors)
        assert checkpoint(path, fake.website_id) is None  # the checkpoint did not move
        assert store.failed_session not in stored(path, fake.website_id)[0]

        with SQLiteStore(path) as again:
            rerun = sync_website(client, fake.website_id, again, workers=4)
        assert rerun.complete, rerun.errors
        assert_exact_copy(path, fake)


HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    db.execute("ROLLBACK")
    """
)


def test_a_database_locked_by_another_process_fails_the_run_visibly(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=120, messages=5, seed=22) as fake:
        client = fast_client(fake)
        with SQLiteStore(path, busy_timeout=0.3) as store:
            holder = None
            once = threading.Lock()

            def lock_once_started(_: SyncProgress) -> None:
                nonlocal holder
                with once:
                    if holder is not None:
                        return
                    # The first conversation handled takes the database away.
                    holder = subprocess.Popen(
                        [sys.executable, "-c", HOLD_LOCK, str(path), "3"],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    assert holder.stdout is not None
                    assert holder.stdout.readline().strip() == "locked"

            report = sync_website(
                client, fake.website_id, store, workers=4, on_progress=lock_once_started
            )
            assert holder is not None
            holder.communicate(timeout=30)
        assert not report.complete
        assert report.store_error is not None
        assert not report.store_error.permanent
        assert "locked" in str(report.store_error)
        assert checkpoint(path, fake.website_id) is None
        with SQLiteStore(path) as store:
            assert sync_website(client, fake.website_id, store, workers=4).complete
        assert_exact_copy(path, fake)


def _limit_file_size() -> None:
    """In the child: files may not grow past 300 KB (Python ignores SIGXFSZ: writes fail)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))


def test_a_full_disk_exits_5_with_one_line_and_the_checkpoint_unmoved(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=300, messages=30, seed=23) as fake:
        command, env = sync_command(fake, path, "--website-id", fake.website_id)
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_file_size,
        )
        assert done.returncode == 5, done.stderr
        assert done.stderr.startswith("crisp-sync: cannot write the database")
        assert len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr
        assert checkpoint(path, fake.website_id) is None
        requests_when_full = fake.stats.requests
        assert requests_when_full < 300  # it stopped early, not after every conversation

        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert_exact_copy(path, fake)


# 2. Time comes from Crisp, not from this machine ---------------------------------------------


@pytest.mark.parametrize("offset_ms", [-HOUR_MS, HOUR_MS], ids=["server-behind", "server-ahead"])
def test_a_server_clock_an_hour_off_misses_and_delays_nothing(
    tmp_path: Path, offset_ms: int
) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=80, messages=5, seed=24, clock_offset_ms=offset_ms) as fake:
        client = fast_client(fake)
        with SQLiteStore(path) as store:
            assert sync_website(client, fake.website_id, store, workers=4).complete
            mark = checkpoint(path, fake.website_id)
            assert mark is not None
            # The watermark is in the server's time: within a few seconds of its now.
            server_now = int(time.time() * 1000) + offset_ms
            assert mark <= server_now + 2000
            touched = fake.touch_conversations(5)
            created = fake.create_conversations(2, messages=3)
            second = sync_website(client, fake.website_id, store, workers=4)
        assert second.complete
        assert second.conversations.updated == len(set(touched))
        assert second.conversations.added == len(created)
        assert_exact_copy(path, fake)


# 3. Messages, as Crisp really pages and names them ---------------------------------------------


def test_messages_sharing_a_millisecond_at_a_page_boundary_are_all_stored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=0, messages=0, seed=25) as fake:
        (session_id,) = fake.create_conversations(1, messages=38)
        newest = fake.messages(session_id)[-1]["timestamp"]
        fake.add_messages(session_id, 5, timestamp=newest + 10)  # five share one millisecond
        fake.add_messages(session_id, 37)  # the newest page ends inside the five
        assert len(fake.messages(session_id)) == 80
        with SQLiteStore(path) as store:
            report = sync_website(fast_client(fake), fake.website_id, store, workers=1)
        assert report.complete
        assert report.warnings == []
        assert report.messages.added == 80
        assert_exact_copy(path, fake)


def test_more_than_a_page_in_one_millisecond_ends_the_walk_with_a_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=0, messages=0, seed=26) as fake:
        (session_id,) = fake.create_conversations(1, messages=10)
        newest = fake.messages(session_id)[-1]["timestamp"]
        fake.add_messages(session_id, 45, timestamp=newest + 10)
        with SQLiteStore(path) as store:
            report = sync_website(fast_client(fake), fake.website_id, store, workers=1)
        # The API cannot list 5 of the 45: that is said, and everything older is stored.
        assert any(str(newest + 10) in warning for warning in report.warnings)
        _, messages = stored(path, fake.website_id)
        assert len(messages) == 50
        older = {m["fingerprint"] for m in fake.messages(session_id)[:10]}
        assert older <= {fingerprint for _, fingerprint in messages}


def test_a_fingerprint_repeated_in_two_conversations_keeps_both(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=0, messages=0, seed=27) as fake:
        first, second = fake.create_conversations(2, messages=2)
        shared = fake.messages(first)[0]["fingerprint"]
        fake.add_messages(second, fingerprint=shared, content="same fingerprint, other chat")
        with SQLiteStore(path) as store:
            assert sync_website(fast_client(fake), fake.website_id, store).complete
        _, messages = stored(path, fake.website_id)
        assert (first, shared) in messages
        assert (second, shared) in messages
        assert_exact_copy(path, fake)


def test_edits_and_removals_in_the_newest_page_are_mirrored(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=0, messages=0, seed=28) as fake:
        first, second, third = fake.create_conversations(3, messages=60)
        client = fast_client(fake)
        with SQLiteStore(path) as store:
            assert sync_website(client, fake.website_id, store).complete
            edited = fake.messages(first)[-3]
            fake.edit_message(first, edited["fingerprint"], "corrected text")
            removed = fake.messages(second)[-1]  # the newest one: the walk's own anchor
            fake.remove_message(second, removed["fingerprint"])
            also_removed = fake.messages(third)[-20]
            fake.remove_message(third, also_removed["fingerprint"])
            fake.add_messages(third, 1)
            report = sync_website(client, fake.website_id, store)
        assert report.complete
        assert report.messages.updated == 1
        assert report.messages.removed == 2
        assert report.messages.added == 1
        _, messages = stored(path, fake.website_id)
        assert messages[(first, edited["fingerprint"])]["content"] == "corrected text"
        assert (second, removed["fingerprint"]) not in messages
        assert_exact_copy(path, fake)


# 4. People profiles cost what changed -------------------------------------------------------------


def test_an_unchanged_run_after_a_full_one_costs_a_handful_of_requests(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=30, messages=3, people=600, seed=29) as fake:
        client = fast_client(fake)
        counter = RequestCounter()
        install(counter, client)
        with SQLiteStore(path) as store:
            full = sync_website(client, fake.website_id, store)
            assert full.people_listed
            assert full.people.added == 600
            assert full.people_calls == 13  # 12 full pages of 50, then the empty one
            before = counter.snapshot().requests
            quiet = sync_website(client, fake.website_id, store)
            spent = counter.snapshot().requests - before
            assert quiet.complete
            assert not quiet.people_listed
            assert quiet.people_calls == 0
            assert spent <= 3, spent  # one listing page, the operators
            every_run = sync_website(client, fake.website_id, store, people_interval=0)
        assert every_run.people_listed
        assert every_run.people == type(every_run.people)()


class BatchReadFails(SQLiteStore):
    """A real SQLite store whose read of a page's stale conversations always fails."""

    failures = 0

    def stale_of(self, website_id: str, listed: Any) -> dict[str, int | None]:
        self.failures += 1
        raise StoreError("the page's read failed", permanent=False)


def test_a_pages_failed_batch_read_leaves_each_conversation_to_its_own(tmp_path: Path) -> None:
    """A listing page whose batch read fails costs its workers a read each, not the run: the
    changed conversations are read again and the unchanged ones found unchanged."""
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=120, messages=3, seed=31) as fake:
        client = fast_client(fake)
        with SQLiteStore(path) as store:
            assert sync_website(client, fake.website_id, store).complete
        touched = fake.touch_conversations(5)
        with sqlite3.connect(path) as db:  # every conversation listed again
            db.execute("UPDATE sync_state SET checkpoint_ms = NULL")
        store = BatchReadFails(path)
        with store:
            report = sync_website(client, fake.website_id, store, workers=4)
        assert store.failures == 3  # each page of 50 (120 conversations)
        assert report.complete, report.errors
        assert report.conversations_seen == 120
        assert report.conversations_fetched == len(touched)
        assert report.conversations.updated == len(touched)
        assert_exact_copy(path, fake)


def test_people_and_operators_are_read_beside_the_conversations_not_after_them(
    tmp_path: Path,
) -> None:
    """Once the listing's first page is in, the people and operators listings go out ahead of
    its conversations (they ran after the last one: two round trips more per website), and
    the copy is the same."""
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=40, messages=3, people=120, seed=30) as fake:
        with SQLiteStore(path) as store:
            report = sync_website(fast_client(fake), fake.website_id, store, workers=4)
        assert report.complete
        targets = [entry.target.split("?")[0] for entry in fake.stats.log]
        lists = [i for i, t in enumerate(targets) if "/conversations/" in t]
        people = [i for i, t in enumerate(targets) if "/people/profiles/" in t]
        operators = [i for i, t in enumerate(targets) if t.endswith("/operators/list")]
        messages = [i for i, t in enumerate(targets) if t.endswith("/messages")]
        assert len(people) == 3
        assert len(operators) == 1
        assert len(messages) >= 40
        assert lists[0] < min(people[0], operators[0])  # the listing answered first
        assert operators[0] < messages[-1], targets
        assert people[0] < messages[-1], targets
        assert report.people.added == 120
        assert report.operators.added > 0
    assert_exact_copy(path, fake)


def test_a_listing_crisp_refuses_costs_no_people_or_operators_request(tmp_path: Path) -> None:
    with FakeCrisp(conversations=5, messages=2, seed=31) as fake:
        with SQLiteStore(tmp_path / "crisp.sqlite3") as store, pytest.raises(RouteError):
            sync_website(fast_client(fake), "no-such-website", store)
        targets = [entry.target for entry in fake.stats.log]
        assert targets
        assert all("/conversations/" in target for target in targets), targets


def test_a_stop_ends_the_people_listing_beside_the_conversations_unmarked(
        tmp_path: Path) -> None:
    """A stop during the run ends the people listing at its next page (it no longer waits
    for the conversations to end), and a listing cut short is not taken for a full one: the
    next run lists every profile again."""
    with FakeCrisp(conversations=40, messages=2, people=500, seed=32) as fake, \
            SQLiteStore(tmp_path / "crisp.sqlite3") as store:
        fake.set_faults(latency_ms=30)  # ten pages of people: some 300 ms in series
        stop = threading.Event()
        report = sync_website(fast_client(fake), fake.website_id, store, workers=4,
                              on_progress=lambda _: stop.set(), stop=stop)
        assert not report.complete
        assert not report.people_listed
        assert 1 <= report.people_calls < 10
        assert store.people_listed_at(fake.website_id) is None


# 5. Errors a rerun cannot fix are not "rerun" ------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "rest_host_suffix"),
    [(["--website-id", "no-such-website"], ""), ([], "/api")],
    ids=["unknown-website", "rest-host-with-a-wrong-path"],
)
def test_permanent_failures_exit_2_with_what_to_fix(
    tmp_path: Path, arguments: list[str], rest_host_suffix: str
) -> None:
    with FakeCrisp(conversations=3, messages=1) as fake:
        command, env = sync_command(fake, tmp_path / "x.sqlite3")
        env["CRISP_REST_HOST"] = fake.url + rest_host_suffix
        command += arguments or ["--website-id", fake.website_id]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "not found" in done.stderr
    assert "--rest-host" in done.stderr
    assert "rerun" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_rest_host_given_with_the_base_path_works(tmp_path: Path) -> None:
    """``--rest-host https://api.crisp.chat/v1`` means the API's root, not ``/v1/v1``."""
    path = tmp_path / "x.sqlite3"
    with FakeCrisp(conversations=3, messages=1) as fake:
        command, env = sync_command(fake, path, "--website-id", fake.website_id)
        env["CRISP_REST_HOST"] = fake.url + "/v1/"
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert_exact_copy(path, fake)


def test_a_second_run_on_the_same_database_and_website_exits_6(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=3, messages=1) as fake:
        command, env = sync_command(fake, path, "--website-id", fake.website_id)
        with SQLiteStore(path) as store, store.lock(fake.website_id):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 6, done.stderr
        assert "another run" in done.stderr
        assert fake.stats.requests == 0  # nothing was spent
        assert subprocess.run(command, env=env, capture_output=True, timeout=60).returncode == 0


# 6. Broken answers inside a sync ----------------------------------------------------------


def test_deeply_nested_json_is_an_invalid_response(server: ScriptedServer, client: Any) -> None:
    server.push(Reply(200, body=b'{"error":false,"data":' + b"[" * 200_000 + b"]" * 200_000 + b"}"))
    with pytest.raises(InvalidResponseError, match="nested"):
        client.website.get_conversation("w", "s")


@pytest.mark.parametrize(
    "body",
    [b'{"error":true,"reason":"oops","data":{}}', b"<html>maintenance</html>", b'{"data":'],
    ids=["error-envelope", "html", "truncated"],
)
def test_a_2xx_that_is_not_a_success_is_never_cached(
    server: ScriptedServer, client: Any, body: bytes
) -> None:
    content_type = "text/html" if body.startswith(b"<") else "application/json"
    server.push(Reply(200, body=body, content_type=content_type))
    server.default = Reply(200, body=json.dumps({"error": False, "data": {"ok": 1}}).encode())
    with pytest.raises(Exception):  # noqa: B017, PT011 - each body raises its own RouteError
        client.website.get_conversation("w", "s")
    assert client.website.get_conversation("w", "s") == {"ok": 1}
    assert server.count() == 2


def test_a_span_removes_nothing_at_or_before_since(tmp_path: Path) -> None:
    """The store half of edits/removals, on the store the CLI uses."""
    with SQLiteStore(tmp_path / "s.sqlite3") as store:
        conversation = {"session_id": "s1", "updated_at": 1}
        rows = [{"fingerprint": n, "timestamp": n, "content": "x"} for n in range(1, 6)]
        store.save_conversation("w", conversation, MessageSpan(rows, None))
        _, changes = store.save_conversation("w", conversation, MessageSpan(rows[3:], 3))
        assert changes.removed == 0
        _, changes = store.save_conversation("w", conversation, MessageSpan(rows[4:], 3))
        assert changes.removed == 1


def test_store_errors_are_typed_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert caught.value.permanent
    assert str(path) in str(caught.value)
