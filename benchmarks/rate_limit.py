"""Section 3: a full sync under a server-side rate limit of R requests/s.

The fake Crisp enforces a token bucket per token (R/s, burst B) and answers 429 with
``Retry-After`` when it is empty. A full `sync_website` (conversations, messages, people,
operators; several workers) runs against it; then the database is compared with the fake's
ground truth: every conversation and message must be there, exactly as served.

Two clients are measured. The one the targets apply to is configured with the server's rate
(``rate_limit=R``) and half its burst, as the README advises for a known limit. The other keeps
the default, no rate of its own: it only obeys the server's 429s, shown for comparison on a
smaller fake.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.config import Config
from crisp_api import Crisp
from crisp_api.errors import RouteError
from crisp_api.sync import RequestCounter, SQLiteStore, install, sync_website
from crisp_api.testing import FakeCrispProcess, Faults

CONFIGURED = "rate_limit=R, burst=B/2"
UNAWARE = "default (no rate of its own)"


@dataclass(frozen=True)
class RateRun:
    """One sync under the server's limit."""

    client: str
    rate: float
    server_burst: int
    workers: int
    conversations: int
    seconds: float
    successful_requests: int
    achieved_per_s: float
    fraction_of_rate: float
    throttled: int
    retries: int
    complete: bool
    conversations_lost: int
    messages_lost: int


def run(config: Config) -> list[RateRun]:
    """The configured client, then (unless its size is 0) the one without a rate."""
    burst = max(1, config.rate_burst // 2)
    runs = [_one(config, CONFIGURED, config.rate_conversations,
                 {"rate_limit": config.rate, "burst": burst})]
    if config.unaware_conversations > 0:
        runs.append(_one(config, UNAWARE, config.unaware_conversations, {}))
    return runs


def _one(config: Config, name: str, conversations: int, options: dict[str, Any]) -> RateRun:
    print(f"benchmarks: rate limit, {name}", file=sys.stderr)
    faults = Faults(bucket_rate=config.rate, bucket_burst=config.rate_burst)
    with (
        FakeCrispProcess(conversations=conversations, messages=30, faults=faults) as fake,
        fake.client(**options) as client,
        tempfile.TemporaryDirectory() as folder,
    ):
        counter = RequestCounter()
        install(counter, client)
        path = Path(folder) / "sync.sqlite3"
        fake.reset_stats()
        started = time.monotonic()
        complete = _sync(client, fake.website_id, path, config.rate_workers)
        elapsed = time.monotonic() - started
        stats, counts = fake.stats, counter.snapshot()
        lost = _lost(path, fake)
    successful = sum(count for status, count in stats.statuses.items() if 200 <= status < 300)
    return RateRun(
        client=name,
        rate=config.rate,
        server_burst=config.rate_burst,
        workers=config.rate_workers,
        conversations=conversations,
        seconds=round(elapsed, 3),
        successful_requests=successful,
        achieved_per_s=successful / elapsed,
        fraction_of_rate=successful / elapsed / config.rate,
        throttled=counts.rate_limited,
        retries=counts.retries,
        complete=complete,
        conversations_lost=lost[0],
        messages_lost=lost[1],
    )


def _sync(client: Crisp, website_id: str, path: Path, workers: int) -> bool:
    """Whether a full sync into ``path`` completed (a listing that fails counts as not)."""
    with SQLiteStore(path) as store:
        try:
            return sync_website(client, website_id, store, workers=workers).complete
        except RouteError:
            return False


def _lost(path: Path, fake: FakeCrispProcess) -> tuple[int, int]:
    """Conversations and messages of the ground truth missing from, or different in, the copy."""
    db = sqlite3.connect(path)
    try:
        conversations = {
            row[0]: json.loads(row[1])
            for row in db.execute("SELECT session_id, data FROM conversations")
        }
        messages = {
            (row[0], row[1]): json.loads(row[2])
            for row in db.execute("SELECT session_id, fingerprint, data FROM messages")
        }
    finally:
        db.close()
    truth = fake.ground_truth()
    lost_conversations = sum(
        conversations.get(session_id) != item.conversation for session_id, item in truth.items()
    )
    lost_messages = sum(
        messages.get((session_id, message["fingerprint"])) != message
        for session_id, item in truth.items()
        for message in item.messages
    )
    return lost_conversations, lost_messages
