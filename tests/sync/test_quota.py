"""A daily quota, met by crisp-sync runs against the fake: the ledger in the store, a run that
stops at a spent quota with its own status, a same-day rerun that costs at most one request,
a first copy spread over several days, and the learnt rate kept between runs.

The fake's ``daily_quota`` refuses everything with a plain 429 once spent (as Crisp does,
without a ``Retry-After``) until its faults are replaced: the day's reset, on demand."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from crisp_api.sync import SQLiteStore
from crisp_api.sync.allowance import LEDGER_BATCH, Allowance, quota_day, rate_limit_bucket
from crisp_api.sync.exits import EXIT_QUOTA
from crisp_api.sync.store import CredentialAllowance
from crisp_api.testing import FakeCrisp, Faults
from tests.sync.helpers import assert_exact_copy, sync_command, wait_for
from tests.sync.test_follow import message_content
from tests.sync.test_follow_degraded import health, is_exact_copy, metric, serving, stop

pytest_plugins = ["tests.redis_server"]


def run(fake: FakeCrisp, db: Path, *extra: str, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    command, env = sync_command(fake, db, "--website-id", fake.website_id, "--workers", "4",
                                *extra)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def ledger(db: Path, fake: FakeCrisp) -> int:
    with SQLiteStore(db) as store:
        return store.requests_on(fake.identifier, quota_day(time.time()))


def test_the_ledger_counts_every_request_sent_and_status_shows_it_without_a_request(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=120, messages=5, seed=11) as fake:
        first = run(fake, db)
        assert first.returncode == 0, first.stderr
        sent = fake.stats.requests
        assert ledger(db, fake) == sent
        assert f"requests today {sent:,} of an unknown quota" in first.stdout
        second = run(fake, db, "--daily-quota", "5000")
        assert second.returncode == 0, second.stderr
        assert ledger(db, fake) == fake.stats.requests
        assert f"requests today {fake.stats.requests:,} of 5,000" in second.stdout

        before = fake.stats.requests
        command, env = sync_command(fake, db, "--status")
        status = subprocess.run(command, env={**env, "CRISP_REST_HOST": "http://127.0.0.1:9"},
                                capture_output=True, text=True, timeout=60, check=True)
        assert fake.stats.requests == before
    header, row = status.stdout.splitlines()
    assert "last complete run (UTC)" in header
    assert "requests today" in header
    assert f"{before:,}" in row
    assert "5,000" in row


def test_a_known_quota_is_shared_by_the_runs_of_a_day_through_the_ledger(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=150, messages=5, seed=12) as fake:
        quota = ("--daily-quota", "100", "--quota-reserve", "0")
        first = run(fake, db, *quota)
        assert first.returncode == EXIT_QUOTA, first.stderr
        assert "configured daily quota" in first.stderr
        assert "progress is kept; run again after" in first.stderr
        assert fake.stats.requests == 100
        again = run(fake, db, *quota)
        assert again.returncode == EXIT_QUOTA, again.stderr
        assert fake.stats.requests == 100  # the ledger told the client: nothing sent


def test_a_known_quota_shared_through_redis_is_spent_at_the_rate_not_spread_over_the_day(
    tmp_path: Path, redis_url: str,
) -> None:
    """A run spends a known quota as fast as the rate allows, down to its reserve, with the
    count in Redis too (the client's default spreads it over the day: a batch run would crawl
    at a request every few minutes and fail its calls)."""
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=150, messages=5, seed=12) as fake:
        started = time.monotonic()
        first = run(fake, db, "--daily-quota", "100", "--quota-reserve", "0",
                    "--redis-url", redis_url)
        assert first.returncode == EXIT_QUOTA, first.stderr
        assert fake.stats.requests == 100
        assert time.monotonic() - started < 60


def test_a_spent_quota_stops_the_run_and_a_same_day_rerun_sends_one_probe(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=150, messages=5, seed=13) as fake:
        fake.set_faults(daily_quota=80)
        # Judged over 5 s instead of 30 (--quota-spent-after): the default rule's 60 s and 30
        # requests are tested on its own (tests/middleware/test_spent.py) and measured by the
        # benchmarks; here, what the run does with it.
        command, env = sync_command(fake, db, "--website-id", fake.website_id,
                                    "--workers", "8", "--quota-spent-after", "5s")
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        while not fake.stats.faults.get("quota") and child.poll() is None:
            time.sleep(0.05)
        refused_at, sent_then = time.monotonic(), fake.stats.requests
        _, err = child.communicate(timeout=120)
        stopped_after = time.monotonic() - refused_at
        after = fake.stats.requests - sent_then
        assert child.returncode == EXIT_QUOTA, err
        assert "Crisp's daily request quota is spent" in err
        assert "progress is kept; run again after" in err
        assert stopped_after < 60
        assert after <= 30
        print(f"\nquota spent: stopped {stopped_after:.1f} s and {after} requests after the "
              f"first refusal; {err.strip().splitlines()[-1]}")
        saved = sqlite_count(db)
        assert saved > 0

        before = fake.stats.requests
        rerun = run(fake, db)
        assert rerun.returncode == EXIT_QUOTA, rerun.stderr
        assert fake.stats.requests - before <= 1
        print(f"same-day rerun: {fake.stats.requests - before} request(s)")
        command, env = sync_command(fake, db, "--status")
        status = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                                check=True)
        reset = err.strip().splitlines()[-1].rsplit("run again after ", 1)[1]
        assert reset in status.stdout.splitlines()[1]  # spent until T, read from the store

        fake.set_faults()  # the day's reset
        final = run(fake, db)
        assert final.returncode == 0, final.stderr
        assert_exact_copy(db, fake)


def a_day_passes(db: Path) -> None:
    """Move what the store counted and marked one day back: the next run is a day later."""
    if not db.exists():
        return
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE quota_ledger SET day = day - 1")
        connection.execute("UPDATE allowance SET spent_until_ms = spent_until_ms - 86400000")
    connection.close()


def sqlite_count(db: Path) -> int:
    with SQLiteStore(db) as store:
        [(count,)] = store._select("SELECT count(*) FROM conversations", ())
    return int(count)


@pytest.mark.parametrize("known", [True, False])
def test_a_first_copy_over_several_days_costs_at_most_a_tenth_more(
    tmp_path: Path, known: bool,
) -> None:
    # Unknown, each day's quota is found spent after some ten refusals: a bigger website
    # makes them the small share they are for a real one (5,000 requests a day). Refusals
    # are judged a spent quota after 3 s instead of 30 (--quota-spent-after), to keep the
    # test short; the rule is the same.
    with FakeCrisp(conversations=240 if known else 1000, messages=5, seed=14) as fake:
        unconstrained = run(fake, tmp_path / "once.sqlite3")
        assert unconstrained.returncode == 0, unconstrained.stderr
        once = fake.stats.requests
        fake.reset_stats()
        quota = once // 2 + 5  # two or three days
        db = tmp_path / "days.sqlite3"
        extra = (("--daily-quota", str(quota), "--quota-reserve", "0") if known
                 else ("--quota-spent-after", "3s"))
        days, total = 0, 0
        while True:
            days += 1
            assert days <= 6
            fake.set_faults(daily_quota=quota)  # a new day, for the fake
            a_day_passes(db)  # and for the store
            fake.reset_stats()
            day = run(fake, db, *extra)
            total += fake.stats.requests
            if day.returncode == 0:
                break
            assert day.returncode == EXIT_QUOTA, day.stderr
        assert_exact_copy(db, fake)
        print(f"\nfirst copy: {days} days, {total} requests, {total / once:.2f}x one "
              f"unconstrained run ({once})")
        assert days in (2, 3)
        assert total <= 1.10 * once


@pytest.mark.parametrize("known", [True, False])
def test_follow_mode_under_a_spent_quota_is_degraded_applies_events_and_resumes_by_itself(
    tmp_path: Path, known: bool,
) -> None:
    """Spent as configured (``--daily-quota``: known at once) or as Crisp says (refusals
    judged a spent quota, after 3 s here: ``--quota-spent-after``); either way until the
    day's reset, seconds from now, which follow mode waits for by itself."""
    db = tmp_path / "follow.sqlite3"
    with FakeCrisp(conversations=10, messages=3, seed=15) as fake:
        extra: tuple[str, ...] = ("--quota-spent-after", "3s")
        if known:  # what the first sync costs, and a few reconciliations more
            once = run(fake, tmp_path / "once.sqlite3")
            assert once.returncode == 0, once.stderr
            extra = ("--daily-quota", str(fake.stats.requests + 2), "--quota-reserve", "0")
            fake.reset_stats()
        reset_in = 12.0 if known else 18.0
        quota_reset = f"{(time.time() + reset_in) % 86400:.0f}"
        with serving(fake, db, "--interval", "1", "--quota-reset", quota_reset,
                     *extra) as (child, port):
            follow_under_a_spent_quota(fake, db, child, port, known, reset_in)


def follow_under_a_spent_quota(fake: FakeCrisp, db: Path, child: subprocess.Popen[str],
                               port: int, known: bool, reset_in: float) -> None:
    """Degraded, not failing, while spent; events applied, profile reads deferred; all of it
    resumed by itself after the reset, with one line saying the quota was spent."""
    wait_for(lambda: metric(port, "crisp_socket_connected") == 1.0, 30, "live events")
    wait_for(lambda: is_exact_copy(db, fake), 15, "the first sync")
    if not known:
        fake.set_faults(daily_quota=0)  # spent from now on
    wait_for(lambda: any(p.startswith("quota spent until") for p in health(port)[2]), 60,
             "the quota seen spent")
    status, state, _ = health(port)
    assert (status, state) == (200, "degraded")
    assert (metric(port, "crisp_quota_spent_until") or 0) > time.time()

    session = next(iter(fake.ground_truth()))
    live = fake.add_messages(session, 1, content="live while spent")[0]
    wait_for(lambda: message_content(db, fake.website_id, session,
                                     live["fingerprint"]) == "live while spent",
             10, "an event applied while the quota is spent")
    with sqlite3.connect(db) as connection:
        [(people_id,)] = connection.execute("SELECT people_id FROM people LIMIT 1")
    connection.close()
    fake.push_event("people:profile:updated",
                    {"website_id": fake.website_id, "people_id": people_id})
    wait_for(lambda: metric(port, "crisp_profiles_deferred") == 1.0, 10,
             "the profile read deferred")
    assert child.poll() is None

    fake.set_faults()  # the day's reset
    wait_for(lambda: health(port)[:2] == (200, "ok"), reset_in + 30,
             "the service to resume by itself after the reset")
    wait_for(lambda: metric(port, "crisp_profiles_deferred") == 0.0, 10,
             "the deferred profile read")
    wait_for(lambda: is_exact_copy(db, fake), 15, "a reconciliation")
    stderr = stop(child)
    assert stderr.count("quota.spent") == 1, stderr


def test_the_learnt_rate_is_kept_and_the_next_run_starts_from_it(tmp_path: Path) -> None:
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=200, messages=2, seed=16,
                   faults=Faults(bucket_rate=80, bucket_burst=5)) as fake:
        first = run(fake, db)
        assert first.returncode == 0, first.stderr
        with SQLiteStore(db) as store:
            learnt = store.allowance(fake.identifier).learnt_rate
            assert learnt is not None
            assert 5 < learnt < 120

            client = fake.client(cache_ttl=0)
            fresh = rate_limit_bucket(client).rate()
            allowance = Allowance(store, client, fake.identifier, daily_quota=None,
                                  quota_reset=0.0)
            allowance.open()
            assert rate_limit_bucket(client).learnt() == pytest.approx(learnt, rel=0.05)
            assert fresh != pytest.approx(learnt, rel=0.05)  # not where a fresh client starts
            allowance.close()
            client.close()


def test_the_rate_reached_without_a_refusal_is_kept_and_the_next_run_starts_from_it(
    tmp_path: Path,
) -> None:
    """A server that never refuses: nothing is learnt, but the next run's slow start begins
    where this one got, not at 8 requests/s (every run spent seconds there)."""
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=200, messages=2, seed=17) as fake:
        first = run(fake, db)
        assert first.returncode == 0, first.stderr
        with SQLiteStore(db) as store:
            kept = store.allowance(fake.identifier)
            assert kept.learnt_rate is None
            assert kept.reached_rate is not None
            assert kept.reached_rate > 8.0

            client = fake.client(cache_ttl=0)
            fresh = rate_limit_bucket(client).rate()
            allowance = Allowance(store, client, fake.identifier, daily_quota=None,
                                  quota_reset=0.0)
            allowance.open()
            assert fresh == 8.0
            assert rate_limit_bucket(client).rate() == pytest.approx(kept.reached_rate)
            client.website.get_website(fake.website_id)  # a run that sends little...
            allowance.close()
            client.close()
            assert store.allowance(fake.identifier).reached_rate == kept.reached_rate  # ...keeps


def test_a_day_ended_by_a_spent_quota_keeps_the_rate_learnt_before_it(tmp_path: Path) -> None:
    """The refusals of a spent quota cut the adaptive rate to its floor (nothing gets
    through): kept, the next day's run would start at 1 request/s."""
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=200, messages=2, seed=18) as fake:
        with SQLiteStore(db) as store:
            store.set_allowance(fake.identifier, CredentialAllowance(learnt_rate=30.0))
        fake.set_faults(daily_quota=60)
        day = run(fake, db, "--quota-spent-after", "3s")
        assert day.returncode == EXIT_QUOTA, day.stderr
        with SQLiteStore(db) as store:
            kept = store.allowance(fake.identifier)
        assert kept.spent_until_ms is not None
        assert kept.learnt_rate == 30.0


def test_two_workers_sharing_a_database_stay_within_one_known_quota(tmp_path: Path) -> None:
    """Each worker counts what the other spent at every flush of the ledger (every
    `LEDGER_BATCH` requests): together they overshoot a quota by a batch each at most, where
    alone each would spend the whole quota."""
    db = tmp_path / "fleet.sqlite3"
    quota = 400
    with FakeCrisp(websites=2, conversations=480, messages=1, seed=17) as fake:
        children = []
        for website_id in fake.website_ids:
            command, env = sync_command(fake, db, "--website-id", website_id, "--workers", "2",
                                        "--daily-quota", str(quota), "--quota-reserve", "0")
            children.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True))
        said = [child.communicate(timeout=120)[1] for child in children]  # read as they run
        statuses = [child.returncode for child in children]
        assert statuses == [EXIT_QUOTA, EXIT_QUOTA], "\n---\n".join(said)
        assert fake.stats.requests <= quota + 2 * LEDGER_BATCH, said
        assert ledger(db, fake) == fake.stats.requests, said


def test_status_shows_the_ledger_of_each_website_an_all_websites_run_began(
    tmp_path: Path,
) -> None:
    """A run over ``--all-websites`` ended by the quota before any website completed: each
    website it began is listed with its ledger (it was shown only for ``--website-id``)."""
    db = tmp_path / "crisp.sqlite3"
    with FakeCrisp(websites=2, conversations=60, messages=2, seed=18) as fake:
        command, env = sync_command(fake, db, "--all-websites", "--workers", "2",
                                    "--daily-quota", "40", "--quota-reserve", "0")
        ended = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                               check=False)
        assert ended.returncode == EXIT_QUOTA, ended.stderr
        command, env = sync_command(fake, db, "--status")
        status = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                                check=False)
        assert status.returncode == 0, status.stderr
        rows = [line for line in status.stdout.splitlines()
                if any(website_id in line for website_id in fake.website_ids)]
        assert rows, status.stdout
        assert all(row.split()[-3:-1] == ["40", "40"] for row in rows), status.stdout
