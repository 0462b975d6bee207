"""The sync worker against the fake Crisp server: exact copies, incremental runs, resumes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crisp_api.sync import RequestCounter, SQLiteStore, install, sync_website
from crisp_api.sync.sharding import in_shard, parse_shard
from crisp_api.testing import FakeCrisp, Faults
from tests.sync.helpers import assert_exact_copy, fast_client, stored, sync_command

FAULTS = Faults(
    error_rate=0.05,
    throttle_rate=0.01,
    retry_after=0,
    drop_before_rate=0.02,
    drop_after_rate=0.02,
    slow_body_rate=0.02,
    seed=3,
)


def test_full_sync_under_faults_equals_the_fake(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=150, messages=30, seed=5, faults=FAULTS) as fake:
        client = fast_client(fake)
        with SQLiteStore(path) as store:
            report = sync_website(client, fake.website_id, store, workers=8)
        assert report.complete, report.errors
        assert report.conversations.added == 150
        assert fake.stats.faults  # faults really happened and were absorbed
        fake.set_faults()
        assert_exact_copy(path, fake)
        assert max(fake.stats.message_posts.values(), default=0) == 0  # a sync never writes


def test_second_run_costs_a_small_fraction_and_picks_up_changes(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=200, messages=30, seed=6) as fake:
        client = fast_client(fake)
        counter = RequestCounter()
        install(counter, client)
        with SQLiteStore(path) as store:
            first = sync_website(client, fake.website_id, store, workers=4)
            first_requests = counter.snapshot().requests
            again = sync_website(client, fake.website_id, store, workers=4)
            second_requests = counter.snapshot().requests - first_requests
            assert again.conversations == again.messages == type(again.messages)()
            assert second_requests <= first_requests * 0.05

            touched = fake.touch_conversations(10)
            created = fake.create_conversations(3, messages=45)
            time.sleep(0.05)  # the fake stamps changes a few ms ahead of our clock
            third = sync_website(client, fake.website_id, store, workers=4)
        assert all(run.complete for run in (first, again, third))
        assert third.conversations.added == 3
        assert third.conversations.updated == len(set(touched))
        assert third.messages.added == len(touched) + 3 * 45
        assert_exact_copy(path, fake)
        for session_id in created:
            assert session_id in stored(path, fake.website_id)[0]


def test_running_twice_never_duplicates_rows(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=40, messages=10, seed=8) as fake:
        client = fast_client(fake)
        for _ in range(2):
            with SQLiteStore(path) as store:
                store.set_checkpoint(fake.website_id, 0)  # force a whole window again
                sync_website(client, fake.website_id, store, workers=2, overlap_ms=10**13)
    db = sqlite3.connect(path)
    counts = [
        db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("conversations", "messages")
    ]
    db.close()
    truth = fake.ground_truth()
    assert counts == [40, sum(len(t.messages) for t in truth.values())]


def test_sync_while_the_fake_keeps_updating(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=300, messages=20, seed=9, faults=Faults(latency_ms=1)) as fake:
        client = fast_client(fake)
        stop = threading.Event()

        def keep_updating() -> None:
            while not stop.is_set():
                fake.touch_conversations(2)
                fake.create_conversations(1, messages=2)
                stop.wait(0.01)

        writer = threading.Thread(target=keep_updating)
        writer.start()
        try:
            with SQLiteStore(path) as store:
                busy = sync_website(client, fake.website_id, store, workers=8)
        finally:
            stop.set()
            writer.join()
        assert busy.complete
        time.sleep(0.05)
        with SQLiteStore(path) as store:
            final = sync_website(client, fake.website_id, store, workers=8)
        assert final.complete
        fake.set_faults()
        assert_exact_copy(path, fake)


def test_killed_mid_way_then_resumed_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=400, messages=30, seed=10, faults=Faults(latency_ms=5)) as fake:
        command, env = sync_command(fake, path, "--website-id", fake.website_id, "--workers", "4")
        worker = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while fake.stats.requests < 150 and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        partial, _ = stored(path, fake.website_id)
        assert 0 < len(partial) < 400
        with SQLiteStore(path) as store:
            assert store.checkpoint(fake.website_id) is None  # never moved past unfinished work

        fake.set_faults()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "complete" in done.stdout
        assert_exact_copy(path, fake)


def test_interrupted_with_ctrl_c_exits_130_and_keeps_work(tmp_path: Path) -> None:
    path = tmp_path / "crisp.sqlite3"
    with FakeCrisp(conversations=300, messages=30, seed=11, faults=Faults(latency_ms=5)) as fake:
        command, env = sync_command(fake, path, "--website-id", fake.website_id)
        worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while fake.stats.requests < 100:
            time.sleep(0.02)
        worker.send_signal(signal.SIGINT)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 130
        assert b"interrupted" in err
        fake.set_faults()
        assert subprocess.run(command, env=env, capture_output=True, timeout=120).returncode == 0
        assert_exact_copy(path, fake)


@pytest.mark.parametrize(
    ("environment", "code", "message"),
    [
        ({"CRISP_KEY": "wrong"}, 3, "bad credentials"),
        ({"CRISP_REST_HOST": "http://127.0.0.1:9"}, 4, "cannot reach"),
        ({"CRISP_IDENTIFIER": ""}, 2, "CRISP_IDENTIFIER"),
        ({"CRISP_TIER": "root"}, 2, "CRISP_TIER"),
    ],
)
def test_failures_exit_non_zero_with_one_line(
    tmp_path: Path, environment: dict[str, str], code: int, message: str
) -> None:
    with FakeCrisp(conversations=5, messages=2) as fake:
        command, env = sync_command(fake, tmp_path / "x.sqlite3", "--website-id", fake.website_id)
        done = subprocess.run(
            command, env={**env, **environment}, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == code
    last = done.stderr.strip().splitlines()[-1]  # after any warnings logged on the way
    assert last.startswith("crisp-sync: ")
    assert message in last
    assert "Traceback" not in done.stderr
    # A run that could not start leaves no empty database behind.
    assert not (tmp_path / "x.sqlite3").exists()


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["--workers", "0"],
        ["--shard", "1/2", "--website-id", "w"],
        ["--all-websites", "--shard", "3/2"],
        ["--demo", "--website-id", "w"],
        ["--demo", "--follow"],
        ["--website-id", "w", "--metrics-port", "9100"],
        ["--website-id", "w", "--hooks-port", "9101"],
        ["--website-id", "w", "--follow", "--interval", "0"],
    ],
)
def test_bad_arguments_exit_2(tmp_path: Path, arguments: list[str]) -> None:
    command = [sys.executable, "-m", "crisp_api.sync.cli", "--db", str(tmp_path / "x"), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("crisp-sync: ")


def test_all_websites_split_into_shards_covers_each_once(tmp_path: Path) -> None:
    with FakeCrisp(websites=5, conversations=6, messages=2, seed=12) as fake:
        synced: dict[str, int] = {}
        for index in (1, 2, 3):
            path = tmp_path / f"shard{index}.sqlite3"
            command, env = sync_command(fake, path, "--all-websites", "--shard", f"{index}/3")
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            db = sqlite3.connect(path)
            for (website_id,) in db.execute("SELECT DISTINCT website_id FROM conversations"):
                synced[website_id] = synced.get(website_id, 0) + 1
                assert in_shard(website_id, index, 3)
            db.close()
        assert synced == dict.fromkeys(fake.website_ids, 1)
        for website_id in fake.website_ids:
            index = next(i for i in (1, 2, 3) if in_shard(website_id, i, 3))
            assert_exact_copy(tmp_path / f"shard{index}.sqlite3", fake, website_id)


def test_shard_parsing() -> None:
    assert parse_shard(" 2 / 4 ") == (2, 4)
    for bad in ("0/4", "5/4", "a/b", "1"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crisp_api.sync.cli", "--demo", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("complete") == 2
    assert "updated       25" in done.stdout
    assert (tmp_path / "crisp-demo.sqlite3").exists()


def test_people_interval_reads_durations() -> None:
    from crisp_api.sync.cli import build_parser  # noqa: PLC0415 - the CLI's own parser

    parse = build_parser().parse_args
    assert parse(["--people-interval", "24h"]).people_interval == 86400
    assert parse(["--people-interval", "30m"]).people_interval == 1800
    assert parse(["--people-interval", "0"]).people_interval == 0
    assert parse([]).people_interval == 86400
    for bad in ("soon", "-1h", "h"):
        with pytest.raises(SystemExit):
            parse(["--people-interval", bad])


def test_rate_limit_is_adaptive_unless_a_rate_is_given() -> None:
    from crisp_api.sync.cli import build_parser  # noqa: PLC0415 - the CLI's own parser

    parse = build_parser().parse_args
    assert parse([]).rate_limit == "adaptive"
    assert parse(["--rate-limit", "adaptive"]).rate_limit == "adaptive"
    assert parse(["--rate-limit", "12.5"]).rate_limit == 12.5
    for bad in ("fast", "0", "-3", "inf", "nan"):
        with pytest.raises(SystemExit):
            parse(["--rate-limit", bad])


def test_help_lists_exit_codes_and_environment() -> None:
    command = [sys.executable, "-m", "crisp_api.sync.cli", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for name in ("CRISP_IDENTIFIER", "CRISP_KEY", "CRISP_TIER", "CRISP_REDIS_URL",
                 "CRISP_HOOKS_SECRET", "130", "--follow", "--log-format"):
        assert name in done.stdout


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``crisp-sync --demo | head -1``: the reader leaves early; no traceback follows."""
    command = [sys.executable, "-m", "crisp_api.sync.cli", "--demo", "--no-progress",
               "--db", str(tmp_path / "demo.sqlite3")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=tmp_path) as child:
        assert child.stdout is not None
        assert child.stderr is not None
        assert child.stdout.readline().startswith(b"demo: ")
        child.stdout.close()  # what head does after its line
        errors = child.stderr.read().decode()
        status = child.wait(timeout=180)
    assert "Traceback" not in errors
    assert status in (0, 1)


def test_logs_go_to_stderr_as_json_when_asked(tmp_path: Path) -> None:
    with FakeCrisp(conversations=5, messages=2) as fake:
        command, env = sync_command(fake, tmp_path / "x.sqlite3", "--website-id",
                                    fake.website_id, "-vv", "--log-format", "json")
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "http.attempt" and e["level"] == "debug" for e in events)
    assert all("timestamp" in e for e in events)
    assert fake.key not in done.stderr
