"""Section 2: sync throughput, `sync_website` in this process, the fake Crisp in another.

One fake holds ``sync_conversations`` conversations of about ``sync_messages`` messages. For
each added latency and number of workers, a fresh SQLite database is synced from scratch
(conversations and messages only: people and operators are a few pages, not the workload).

A slow configuration would take many minutes to copy everything, so every run is time-boxed:
once ``sync_seconds`` have passed, the next conversation listing request raises, the sync stops
taking conversations (as on Ctrl-C), and those already handed to workers finish and are
committed. The rates are what was committed divided by the time from the start to the last
conversation committed.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import Config
from crisp_api import defaults
from crisp_api.routing import ROUTES
from crisp_api.sync import SQLiteStore, SyncProgress, sync_website
from crisp_api.testing import FakeCrispProcess, Faults
from middleware import Handler, Request, Response

LISTING = ROUTES["website", "list_conversations"].template


@dataclass(frozen=True)
class SyncRun:
    """One configuration's figures."""

    latency_ms: float
    workers: int
    conversations: int
    messages: int
    failed: int
    seconds: float
    time_boxed: bool
    conversations_per_s: float
    messages_per_s: float


@dataclass(frozen=True)
class SyncResult:
    """What section 2 measured."""

    conversations: int
    messages_per_conversation: int
    time_box_s: float
    runs: list[SyncRun]

    def run(self, latency_ms: float, workers: int) -> SyncRun | None:
        """The run of one configuration, if it was measured."""
        return next(
            (r for r in self.runs if r.latency_ms == latency_ms and r.workers == workers), None
        )


class TimeUpError(Exception):
    """Raised into the sync's conversation listing once the time box is spent."""


class _TimeBox:
    """Outermost middleware: refuses conversation listings after ``deadline``."""

    name = "time_box"

    def __init__(self) -> None:
        self.deadline = float("inf")

    def __call__(self, request: Request, call_next: Handler) -> Response:
        if request.route == LISTING and time.monotonic() >= self.deadline:
            raise TimeUpError
        return call_next(request)


class _Ticks:
    """Counts conversations handled (from any worker) and when the last one was."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.last = 0.0

    def __call__(self, progress: SyncProgress) -> None:
        with self._lock:
            self.count = max(self.count, progress.conversations)
            self.last = time.monotonic()


def run(config: Config) -> SyncResult:
    """Every (latency, workers) configuration, against one fake Crisp process."""
    runs = []
    with FakeCrispProcess(
        conversations=config.sync_conversations, messages=config.sync_messages, rtm=False
    ) as fake:
        for latency in config.sync_latencies_ms:
            fake.set_faults(Faults(latency_ms=latency))
            for workers in config.sync_workers:
                print(f"benchmarks: sync, {latency:g} ms, {workers} workers", file=sys.stderr)
                runs.append(_one(fake, latency, workers, config.sync_seconds))
    return SyncResult(
        config.sync_conversations, config.sync_messages, config.sync_seconds, runs
    )


def _one(fake: FakeCrispProcess, latency: float, workers: int, seconds: float) -> SyncRun:
    box, ticks = _TimeBox(), _Ticks()
    with (
        fake.client(pool_size=max(defaults.POOL_SIZE, workers + 1)) as client,
        tempfile.TemporaryDirectory() as folder,
    ):
        client.use(box, before=client.middleware[0].name)
        path = Path(folder) / "sync.sqlite3"
        with SQLiteStore(path) as store:
            started = time.monotonic()
            box.deadline = started + seconds
            try:
                sync_website(
                    client, fake.website_id, store, workers=workers, people=False,
                    operators=False, on_progress=ticks,
                )
                boxed = False
            except TimeUpError:
                boxed = True
        conversations, messages = _count(path)
    elapsed = max(ticks.last - started, 1e-9)
    return SyncRun(
        latency_ms=latency,
        workers=workers,
        conversations=conversations,
        messages=messages,
        failed=ticks.count - conversations,
        seconds=round(elapsed, 3),
        time_boxed=boxed,
        conversations_per_s=conversations / elapsed,
        messages_per_s=messages / elapsed,
    )


def _count(path: Path) -> tuple[int, int]:
    """Conversations and messages committed to the database at ``path``."""
    db = sqlite3.connect(path)
    try:
        conversations = db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]
        messages = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        db.close()
    return int(conversations), int(messages)
