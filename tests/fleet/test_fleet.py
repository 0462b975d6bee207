"""A fleet of ``crisp-sync`` processes sharing websites through PostgreSQL leases."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from crisp_api.testing import FakeCrisp, Faults
from tests.sync.helpers import sync_command

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
        if not line.startswith("{"):
            continue
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
        deadline = time.monotonic() + 60
        while "website.sync.ended" not in logs[0].read_text():  # mid-run: one website done
            assert time.monotonic() < deadline, logs[0].read_text()
            time.sleep(0.02)
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
