"""A fleet of ``crisp-sync`` processes sharing websites through PostgreSQL leases."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psycopg
import pytest

from crisp_api.errors import ServerError
from crisp_api.sync import fleet
from crisp_api.sync.engine import StopSignal, SyncReport
from crisp_api.sync.postgres_store import PostgresStore
from crisp_api.sync.run import connected_websites
from crisp_api.sync.store import CredentialAllowance
from crisp_api.sync.website_list import WebsiteList
from crisp_api.testing import FakeCrisp, Faults
from tests.sync.helpers import sync_command, wait_for

if TYPE_CHECKING:
    from tests.postgres_server import PostgresServer

pytest_plugins = ["tests.postgres_server"]

WEBSITES = 12
SLOW = Faults(latency_ms=15)  # long enough runs for a worker to die in the middle of one


def _fake() -> FakeCrisp:
    return FakeCrisp(websites=WEBSITES, conversations=12, messages=4, seed=41, faults=SLOW)


def _worker(fake: FakeCrisp, url: str, log: IO[str], *extra: str) -> subprocess.Popen[str]:
    command, env = sync_command(fake, Path("unused"), "--all-websites", "--workers", "4",
                                "-v", "--log-format", "json", *extra)
    command[command.index("--db") + 1] = url
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)


def assert_exact_copy_in_postgres(db: Any, fake: FakeCrisp, website_id: str) -> None:
    """The PostgreSQL database holds exactly the fake's conversations and messages."""
    conversations = dict(db.execute(
        "SELECT session_id, data FROM conversations WHERE website_id = %s", (website_id,)
    ).fetchall())
    messages = {
        (session_id, fingerprint): data
        for session_id, fingerprint, data in db.execute(
            "SELECT session_id, fingerprint, data FROM messages WHERE website_id = %s",
            (website_id,),
        )
    }
    truth = fake.ground_truth(website_id=website_id)
    assert conversations == {sid: t.conversation for sid, t in truth.items()}
    assert messages == {(sid, m["fingerprint"]): m for sid, t in truth.items() for m in t.messages}


def _syncs(log: Path) -> list[tuple[str, datetime, datetime | None]]:
    """Each website sync a worker's log shows: website, start, end (None: never ended)."""
    open_: dict[str, datetime] = {}
    done = []
    for line in log.read_text().splitlines():
        if not (line.startswith("{") and line.endswith("}")):
            continue  # not a log line, or one still being written
        entry = json.loads(line)
        at = datetime.fromisoformat(entry["timestamp"])
        if entry["event"] == "website.sync.started":
            open_[entry["website_id"]] = at
        elif entry["event"] == "website.sync.ended":
            done.append((entry["website_id"], open_.pop(entry["website_id"]), at))
    return done + [(website, start, None) for website, start in open_.items()]


def test_three_workers_one_killed_share_every_website_exactly_once_at_a_time(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with _fake() as alone:  # the cost of one worker doing it all
        url = postgres_server.create_database()
        with (tmp_path / "alone.log").open("w") as log:
            assert _worker(alone, url, log).wait(timeout=120) == 0
        single = alone.stats.requests

    url = postgres_server.create_database()
    with _fake() as fake:
        logs = [tmp_path / f"worker{i}.log" for i in range(3)]
        handles = [path.open("w") for path in logs]
        workers = [_worker(fake, url, handle, "--lease-ttl", "3") for handle in handles]
        wait_for(lambda: any(end is None for *_, end in _syncs(logs[0]))
              and any(end is not None for *_, end in _syncs(logs[0])), 60,
              "worker 0 in the middle of its second website")
        workers[0].send_signal(signal.SIGKILL)
        killed_at = datetime.now().astimezone()
        statuses = [worker.wait(timeout=120) for worker in workers]
        for handle in handles:
            handle.close()
        assert statuses[0] == -signal.SIGKILL
        assert statuses[1:] == [0, 0], [path.read_text()[-2000:] for path in logs[1:]]

        with postgres_server.connect(url.rsplit("/", 1)[1]) as db:
            for website_id in fake.website_ids:
                assert_exact_copy_in_postgres(db, fake, website_id)
            # Every lease is free, the dead worker's taken over; every website synced since.
            assert db.execute("SELECT count(*) FROM sync_leases WHERE owner IS NOT NULL"
                              " OR synced_at IS NULL").fetchone() == (0,)

        syncs = {i: _syncs(path) for i, path in enumerate(logs)}
        unfinished = [s for s in syncs[0] if s[2] is None]
        assert unfinished, "the killed worker was not in the middle of a website"
        spans = [(worker, website, start, end or killed_at)
                 for worker, runs in syncs.items() for website, start, end in runs]
        for worker, website, start, end in spans:
            for other, same, other_start, other_end in spans:
                if other != worker and same == website:
                    assert other_end <= start or end <= other_start, (
                        f"{website} synced by workers {worker} and {other} at once"
                    )
        taken_over = {website for website, *_ in unfinished}
        assert all(any(w == website for i in (1, 2) for w, *_ in syncs[i])
                   for website in taken_over)
        assert fake.stats.requests <= 1.3 * single


def _owners(db: Any) -> dict[str, list[str]]:
    """The websites each lease owner holds now (owners named by their pid)."""
    held: dict[str, list[str]] = {}
    for website_id, owner in db.execute(
        "SELECT website_id, owner FROM sync_leases WHERE owner IS NOT NULL AND lease_until > now()"
    ):
        held.setdefault(owner.split(":")[1], []).append(website_id)
    return held


def test_following_workers_split_the_websites_and_take_over_a_dead_ones(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database()
    dbname = url.rsplit("/", 1)[1]
    PostgresStore(url).close()  # the schema, before the test looks at the leases
    with FakeCrisp(websites=6, conversations=5, messages=2, seed=43) as fake, \
            postgres_server.connect(dbname) as db:
        logs = [(tmp_path / f"follower{i}.log").open("w") for i in range(2)]
        followers = [_worker(fake, url, log, "--follow", "--interval", "2", "--lease-ttl", "3")
                     for log in logs]
        try:
            pids = [str(follower.pid) for follower in followers]
            wait_for(lambda: sorted(len(w) for w in _owners(db).values()) == [3, 3], 60,
                  "an even split")
            held = _owners(db)
            assert sorted(held) == sorted(pids)

            def stored(website_id: str, session_id: str, fingerprint: int) -> bool:
                return db.execute(
                    "SELECT 1 FROM messages WHERE website_id = %s AND session_id = %s"
                    " AND fingerprint = %s", (website_id, session_id, fingerprint),
                ).fetchone() is not None

            def add_and_see(website_id: str, what: str) -> None:
                session = next(iter(fake.ground_truth(website_id=website_id)))
                sent = fake.add_messages(session, 1, website_id=website_id)[0]
                wait_for(lambda: stored(website_id, session, sent["fingerprint"]), 10, what)

            for pid in pids:  # each follower applies the events of its own websites
                add_and_see(held[pid][0], f"a message of a website of {pid}")

            followers[0].send_signal(signal.SIGKILL)
            took = wait_for(lambda: _owners(db).get(pids[1], []) and len(_owners(db)[pids[1]]) == 6,
                         30, "the takeover")
            assert took < 3 + 2 + 5  # the lease's time to live, one interval, some slack
            add_and_see(held[pids[0]][0], "a message of a website taken over")

            def exact() -> bool:
                try:
                    for website_id in fake.website_ids:
                        assert_exact_copy_in_postgres(db, fake, website_id)
                except AssertionError:
                    return False
                return True

            # Events carry messages, not the conversation's new updated_at: the next
            # reconciliation of the survivor brings every row to Crisp's state.
            wait_for(exact, 3 * 2 + 10, "an exact copy after the reconciliations")
            followers[1].send_signal(signal.SIGTERM)
            assert followers[1].wait(timeout=20) == 0
            assert db.execute("SELECT count(*) FROM sync_leases WHERE owner IS NOT NULL"
                              ).fetchone() == (0,)  # given back on the way out
        finally:
            for follower in followers:
                if follower.poll() is None:
                    follower.kill()
                follower.wait()
            for log in logs:
                log.close()


def test_a_worker_that_stalls_past_its_lease_stops_and_says_so(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database()
    slow = Faults(latency_ms=20)
    with FakeCrisp(websites=2, conversations=120, messages=2, seed=44, faults=slow) as fake:
        logs = [tmp_path / "stalled.log", tmp_path / "other.log"]
        handles = [path.open("w") for path in logs]
        workers: list[subprocess.Popen[str]] = []
        try:
            stalled = _worker(fake, url, handles[0], "--lease-ttl", "3", "--workers", "2")
            workers.append(stalled)
            wait_for(lambda: any(end is None for *_, end in _syncs(logs[0])), 60,
                  "the first worker in the middle of a website")
            stalled.send_signal(signal.SIGSTOP)  # a frozen VM, a long GC pause
            other = _worker(fake, url, handles[1], "--lease-ttl", "3", "--workers", "2")
            workers.append(other)
            assert other.wait(timeout=120) == 0  # it took the stalled worker's website over
            stalled.send_signal(signal.SIGCONT)
            assert stalled.wait(timeout=60) == 1
        finally:
            for worker in workers:  # a failed wait leaves no worker behind for later tests
                if worker.poll() is None:
                    worker.send_signal(signal.SIGCONT)
                    worker.kill()
                    worker.wait()
            for handle in handles:
                handle.close()
        assert "lost the lease of 1 website(s)" in logs[0].read_text()
        assert {website for website, *_ in _syncs(logs[1])} == set(fake.website_ids)
        with postgres_server.connect(url.rsplit("/", 1)[1]) as db:
            for website_id in fake.website_ids:
                assert_exact_copy_in_postgres(db, fake, website_id)


def test_a_following_fleet_worker_records_a_spent_quota_in_the_store(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A fleet worker in follow mode that finds Crisp's quota spent keeps "spent until T" in
    the store, as a lone follower does, so that `--status` and the next worker see it (it
    only told its own follower: the store kept the old mark). The store says the quota was
    spent until a minute ago, so the worker's first request is the one probe, refused: the
    quota is known spent at once, without the 30 s of refusals it takes to judge it."""
    url = postgres_server.create_database()
    with FakeCrisp(websites=2, conversations=30, messages=2, seed=44,
                   faults=Faults(daily_quota=0)) as fake, \
            (tmp_path / "worker.log").open("w") as log:
        earlier = int((time.time() - 60) * 1000)
        with PostgresStore(url) as store:
            store.set_allowance(fake.identifier, CredentialAllowance(spent_until_ms=earlier))
        worker = _worker(fake, url, log, "--follow", "--interval", "1", "--lease-ttl", "5")
        try:
            def spent_until() -> int:
                with PostgresStore(url) as store:
                    return store.allowance(fake.identifier).spent_until_ms or 0

            wait_for(lambda: spent_until() > time.time() * 1000, 30,
                     "the spent quota renewed in the store")
            assert worker.poll() is None  # degraded, not ended
            assert fake.stats.requests <= 2  # the probe (and a request in flight with it)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0


def test_a_website_another_worker_synced_after_this_run_began_is_not_synced_again(
        postgres_url: str) -> None:
    # The run begins before its website list; another worker syncs every website while the
    # list is fetched: those syncs count for this run, which then has nothing left to do.
    websites = ["website-a", "website-b", "website-c"]
    synced: dict[str, list[str]] = {"first": [], "second": []}

    def syncer(worker: str) -> Callable[[str, StopSignal], SyncReport]:
        def sync_one(website_id: str, _: StopSignal) -> SyncReport:
            synced[worker].append(website_id)
            return SyncReport(website_id, None)
        return sync_one

    with (PostgresStore(postgres_url) as first, PostgresStore(postgres_url) as second):
        began = second.leases.now()
        assert fleet.sync_once(first.leases, websites, syncer("first")).failed == []
        assert sorted(synced["first"]) == websites
        run = fleet.sync_once(second.leases, websites, syncer("second"), began=began)
        assert synced["second"] == []
        assert run.failed == []
        # Begun after those syncs, a run has them all to do again.
        fleet.sync_once(second.leases, websites, syncer("second"))
        assert sorted(synced["second"]) == websites


def test_a_worker_waiting_on_another_workers_website_ends_when_it_is_given_back(
        postgres_url: str) -> None:
    # The second worker finds the only website held by the first: it waits, and wakes on the
    # first's give-back (NOTIFY), not at its next poll, which here is 60 s away.
    websites = ["website-a"]
    with (PostgresStore(postgres_url, lease_ttl=600) as first,
          PostgresStore(postgres_url, lease_ttl=600) as second):
        began = second.leases.now()  # the first's sync, claimed after, counts for this run
        first.leases.add(websites)
        assert first.leases.claim(websites) == "website-a"
        ended = threading.Event()
        outcome: list[fleet.FleetRun] = []

        def wait_for_it() -> None:
            outcome.append(fleet.sync_once(
                second.leases, websites, lambda website_id, _: SyncReport(website_id, None),
                poll=60.0, began=began))
            ended.set()

        waiter = threading.Thread(target=wait_for_it, daemon=True)
        waiter.start()
        assert not ended.wait(1.0)  # held by the first: the second waits
        time.sleep(0.5)  # let the poll's first look go by (the wait, not the look, is tested)
        first.leases.give_back("website-a", synced=True)
        given_back = time.monotonic()
        assert ended.wait(20.0), "the waiting worker slept through the give-back"
        assert time.monotonic() - given_back < 20.0
        waiter.join()
    assert outcome[0].reports == []
    assert outcome[0].failed == []


def _listening(url: str) -> int:
    """How many connections to ``url``'s database have LISTEN as their last statement."""
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'"
                            " AND datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def test_a_worker_with_nothing_held_by_others_ends_without_listening(
        postgres_url: str) -> None:
    # A process alone, or the fleet's last to end, finds nothing held by others once its own
    # websites are done: it ends at once, without first opening a connection to listen for
    # leases given back (a backend PostgreSQL starts and stops for nothing, on the path to
    # the run's end).
    websites = ["website-a", "website-b"]
    before = _listening(postgres_url)
    with PostgresStore(postgres_url, lease_ttl=600) as store:
        run = fleet.sync_once(store.leases, websites,
                              lambda website_id, _: SyncReport(website_id, None), poll=60.0)
        assert _listening(postgres_url) == before
    assert [report.website_id for report in run.reports] == websites
    assert run.failed == []


def test_a_worker_whose_listening_connection_fails_still_waits_by_polling(
        postgres_url: str) -> None:
    # The listening connection dies (a server restart, a proxy): the wait falls back to
    # sleeping, and the run still sees the website given back at its next look.
    websites = ["website-a"]
    with (PostgresStore(postgres_url, lease_ttl=600) as first,
          PostgresStore(postgres_url, lease_ttl=600) as second):
        began = second.leases.now()
        first.leases.add(websites)
        assert first.leases.claim(websites) == "website-a"
        second.leases.watch_releases()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                  " WHERE query LIKE 'LISTEN%'").fetchone()
        assert ended == (1,)
        threading.Timer(0.5, first.leases.give_back, ("website-a",),
                        {"synced": True}).start()
        run = fleet.sync_once(second.leases, websites,
                              lambda website_id, _: SyncReport(website_id, None), poll=0.3,
                              began=began)
    assert run.reports == []
    assert run.failed == []


def test_a_worker_syncs_its_first_websites_while_the_list_is_still_being_fetched(
        postgres_url: str) -> None:
    # The list's second page comes only once the first page's website has begun syncing: a
    # worker that waited for the whole list first would wait forever (here: 20 s, then fail).
    first_synced = threading.Event()
    synced: list[str] = []

    def pages() -> Iterator[str]:
        yield "website-a"
        assert first_synced.wait(20.0), "the worker waited for the whole list"
        yield "website-b"

    def sync_one(website_id: str, _: StopSignal) -> SyncReport:
        synced.append(website_id)
        first_synced.set()
        return SyncReport(website_id, None)

    with PostgresStore(postgres_url) as store, WebsiteList(pages()) as listed:
        run = fleet.sync_once(store.leases, listed, sync_one)
    assert synced == ["website-a", "website-b"]
    assert run.failed == []


def test_a_website_list_that_fails_half_way_fails_the_run(postgres_url: str) -> None:
    # Crisp fails the list's second page (500, every retry): the run raises that error (which
    # the CLI turns into its exit status), never ending as if the websites seen were all.
    synced: list[str] = []

    def sync_one(website_id: str, _: StopSignal) -> SyncReport:
        synced.append(website_id)
        return SyncReport(website_id, None)

    with FakeCrisp(websites=25, conversations=1, messages=1, seed=43, rtm=False) as fake:
        client = fake.client()

        def pages() -> Iterator[str]:
            listed = connected_websites(client)
            yield next(listed)  # the first page has come
            fake.set_faults(Faults(error_rate=1.0, error_statuses=(500,),
                                   routes={"list_all_connect_websites"}))
            yield from listed

        with (PostgresStore(postgres_url) as store, WebsiteList(pages()) as listed,
              pytest.raises(ServerError)):
            fleet.sync_once(store.leases, listed, sync_one)
    assert len(synced) < 25


def test_a_fleet_run_begins_when_its_process_did() -> None:
    # A run's `began` is set back by the process's age: a process that slept a second before
    # asking is at least that old (and the age is no made-up figure).
    asked = subprocess.run(
        [sys.executable, "-c", "import time; time.sleep(1.0); "
         "from crisp_api.sync.run import process_age; print(process_age())"],
        capture_output=True, text=True, check=True, timeout=60)
    assert 0.95 <= float(asked.stdout) < 30.0
