"""crisp-sync under a daily quota: days and requests to a first copy of a website whose copy
needs about three days of quota, the requests a run sends once the quota is spent, and a
same-day rerun's.

``crisp-sync`` runs as a child process, once per "day", against a fake Crisp whose daily quota
refuses everything with a plain 429 once spent (no ``Retry-After``, as Crisp does); replacing
the fake's faults is the day's reset, and moving the database's ledger a day back is the
calendar's. The copy is told the quota (``--daily-quota``): the several days' total is then
compared with one unconstrained run's. One run is not told it: it finds the quota spent from
Crisp's refusals, which takes some 30 s, then exits 7; a rerun the same day follows.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import Config
from crisp_api.testing import FakeCrisp

EXIT_QUOTA = 7
MAX_DAYS = 8


@dataclass(frozen=True, slots=True)
class QuotaDays:
    """What the section measured."""

    conversations: int
    unconstrained_requests: int
    quota: int
    days: int
    total_requests: int
    exact: bool
    sent_after_spent: int
    """Requests a run sent after the first refusal, the quota unknown to it."""
    seconds_to_stop: float
    stop_status: int
    rerun_requests: int
    """Requests a same-day rerun sent (its one probe)."""
    rerun_status: int

    @property
    def ratio(self) -> float:
        return self.total_requests / max(1, self.unconstrained_requests)


def run(config: Config) -> QuotaDays | None:
    """The section, on a website of ``config.quota_days_conversations`` (None if 0)."""
    conversations = config.quota_days_conversations
    if conversations <= 0:
        return None
    print(f"benchmarks: crisp-sync under a daily quota, {conversations} conversations",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch, FakeCrisp(
        conversations=conversations, messages=3, seed=71, rtm=False,
    ) as fake:
        folder = Path(scratch)
        status = _sync(fake, folder / "once.sqlite3")
        if status != 0:
            raise RuntimeError(f"the unconstrained run ended with {status}")
        once = fake.stats.requests
        quota = once // 3 + 1
        db = folder / "days.sqlite3"
        days = total = 0
        while days < MAX_DAYS:
            days += 1
            fake.set_faults(daily_quota=quota)
            fake.reset_stats()
            _a_day_passes(db)
            status = _sync(fake, db, "--daily-quota", str(quota), "--quota-reserve", "0")
            total += fake.stats.requests
            if status != EXIT_QUOTA:
                break
        exact = status == 0 and _exact(fake, db)

        fake.set_faults(daily_quota=quota // 2)
        fake.reset_stats()
        spent = folder / "spent.sqlite3"
        child = _spawn(fake, spent)
        while not fake.stats.faults.get("quota") and child.poll() is None:
            time.sleep(0.05)
        refused_at, sent_then = time.monotonic(), fake.stats.requests
        stop_status = child.wait(timeout=300)
        seconds = time.monotonic() - refused_at
        after = fake.stats.requests - sent_then
        before = fake.stats.requests
        rerun_status = _sync(fake, spent)
        rerun = fake.stats.requests - before
    return QuotaDays(conversations, once, quota, days, total, exact, after, round(seconds, 1),
                     stop_status, rerun, rerun_status)


def _spawn(fake: FakeCrisp, db: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CRISP_IDENTIFIER": fake.identifier, "CRISP_KEY": fake.key,
           "CRISP_REST_HOST": fake.url}
    command = [sys.executable, "-m", "crisp_api.sync.cli", "--db", str(db), "--no-progress",
               "--website-id", fake.website_id, *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _sync(fake: FakeCrisp, db: Path, *extra: str) -> int:
    return _spawn(fake, db, *extra).wait(timeout=300)


def _a_day_passes(db: Path) -> None:
    """Move the database's ledger (and spent mark) a day back: the next run is a day later."""
    if not db.exists():
        return
    connection = sqlite3.connect(db)
    try:
        with connection:
            connection.execute("UPDATE quota_ledger SET day = day - 1")
            connection.execute("UPDATE allowance SET spent_until_ms = spent_until_ms - 86400000")
    finally:
        connection.close()


def _exact(fake: FakeCrisp, db: Path) -> bool:
    """Whether the copy holds every conversation and message of the fake."""
    truth = fake.ground_truth()
    connection = sqlite3.connect(db)
    try:
        [(conversations,)] = connection.execute("SELECT count(*) FROM conversations")
        [(messages,)] = connection.execute("SELECT count(*) FROM messages")
    finally:
        connection.close()
    return bool(conversations == len(truth)
                and messages == sum(len(t.messages) for t in truth.values()))
