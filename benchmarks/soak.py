"""Section 7: a follow-mode soak. ``crisp-sync --follow`` mirrors live events for a long run;
its resident memory must stay flat once warmed up, and its copy must end exact.

The CLI runs as a child process (SQLite store, JSON logs, reconciling every ``interval`` s)
against a fake Crisp in another process serving REST and Socket.IO RTM. This process adds
messages through the fake's admin helpers at a steady rate, one per call, round-robin over
the conversations: each one is an RTM event the CLI applies, and each reconciliation re-reads
every conversation that changed since the last. The CLI's RSS is read from
``/proc/<pid>/status`` every `SAMPLE_S` seconds.

The first `WARMUP_SHARE` of the run is warm-up (SQLite's page cache fills, the allocator's
per-thread arenas take their working size, the interpreter's caches settle). Growth is the
RSS at the end less the RSS at the end of the warm-up; the growth per hour is the
least-squares slope of the samples after the warm-up. Then the adder stops, the CLI reconciles
twice more, gets SIGTERM, and its database is compared with the fake's ground truth.

`MAX_GROWTH_MB` is the bound the soak test (``tests/sync/test_soak.py``) and the report's
target hold the growth to.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import Config
from benchmarks.follow import following, stored
from crisp_api.testing import FakeCrispProcess

SAMPLE_S = 2.0
"""Seconds between two RSS samples."""
WARMUP_SHARE = 0.2
"""The share of the run (from the socket's connection) that is warm-up."""
MAX_GROWTH_MB = 4.0
"""The RSS growth allowed after warm-up, in MB: what is left to grow once warm is bounded
(SQLite's page cache, at most 2 MB by its default ``cache_size``, and the allocator's arenas,
at most 8 per core), and a few MB of a 60 MB process is where noise and a real leak part: a
leak of one 20 KB answer per reconciliation of a 10 s interval is 7 MB an hour."""
MB = 1_000_000
HOUR_S = 3600.0


@dataclass
class SoakResult:
    """What the soak measured (sizes in MB of 10^6 bytes, times in seconds)."""

    seconds: float
    """How long messages were added."""
    rate: float
    """The messages per second asked for."""
    achieved_rate: float
    """The messages per second actually added (each one an RTM event)."""
    interval_s: float
    conversations: int
    sent: int
    reconciliations: int
    warmup_s: float
    rss_start_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    growth_mb: float
    growth_per_hour_mb: float
    exit_status: int | None
    exact: bool
    messages: int
    """Messages in the copy at the end."""
    samples: list[list[float]]
    """``[seconds since the socket connected, RSS MB, reconciliations]``."""


def run(config: Config) -> SoakResult:
    """The soak with the configuration's sizes."""
    return soak(seconds=config.soak_seconds, rate=config.soak_rate,
                interval=config.soak_interval, conversations=config.soak_conversations)


def soak(*, seconds: float, rate: float, interval: float, conversations: int) -> SoakResult:
    """Add ``rate`` messages/s for ``seconds`` to a website of ``conversations`` followed by
    ``crisp-sync --follow --interval interval``; see the module docstring."""
    print(f"benchmarks: soak, {seconds:g} s of follow at {rate:g} messages/s", file=sys.stderr)
    samples: list[list[float]] = []
    with tempfile.TemporaryDirectory() as tmp, FakeCrispProcess(
        conversations=conversations, messages=3, seed=17
    ) as fake:
        db = Path(tmp) / "soak.sqlite3"
        with following(fake, db, f"{interval:g}") as cli:
            status = Path(f"/proc/{cli.child.pid}/status")
            sessions = list(fake.ground_truth())
            sent = 0
            started = time.monotonic()
            next_sample = started
            while (now := time.monotonic()) - started < seconds:
                if now >= next_sample:
                    samples.append([round(now - started, 1), _rss_mb(status),
                                    cli.reconciliations()])
                    next_sample += SAMPLE_S
                fake.add_messages(sessions[sent % len(sessions)], 1)
                sent += 1
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
            elapsed = time.monotonic() - started
            samples.append([round(elapsed, 1), _rss_mb(status), cli.reconciliations()])
            before = cli.reconciliations()
            wait_until = time.monotonic() + 3 * interval + 60
            while cli.reconciliations() < before + 2 and time.monotonic() < wait_until:
                time.sleep(0.1)
            reconciliations = cli.reconciliations()
            exit_status = cli.stop()
        copy = stored(db, fake.website_id)
        truth = fake.ground_truth()
    expected = {(sid, m["fingerprint"]): m for sid, t in truth.items() for m in t.messages}
    exact = copy == ({sid: t.conversation for sid, t in truth.items()}, expected)
    return _summarise(
        samples, seconds=seconds, rate=rate, interval=interval, conversations=conversations,
        sent=sent, elapsed=elapsed, reconciliations=reconciliations, exit_status=exit_status,
        exact=exact, messages=len(copy[1]),
    )


def _summarise(samples: list[list[float]], *, seconds: float, rate: float, interval: float,
               conversations: int, sent: int, elapsed: float, reconciliations: int,
               exit_status: int | None, exact: bool, messages: int) -> SoakResult:
    warmup = seconds * WARMUP_SHARE
    warm_at = next(i for i, s in enumerate(samples) if s[0] >= warmup or i == len(samples) - 1)
    after = samples[warm_at:]
    rss = [s[1] for s in samples]
    return SoakResult(
        seconds=seconds, rate=rate, achieved_rate=sent / elapsed, interval_s=interval,
        conversations=conversations, sent=sent, reconciliations=reconciliations,
        warmup_s=samples[warm_at][0], rss_start_mb=rss[0], rss_warm_mb=rss[warm_at],
        rss_end_mb=rss[-1], rss_peak_mb=max(rss[warm_at:]),
        growth_mb=rss[-1] - rss[warm_at],
        growth_per_hour_mb=_slope([s[0] for s in after], [s[1] for s in after]) * HOUR_S,
        exit_status=exit_status, exact=exact, messages=messages, samples=samples,
    )


def _slope(xs: list[float], ys: list[float]) -> float:
    """The least-squares slope of ``ys`` over ``xs`` (NaN with fewer than two points)."""
    if len(xs) < 2:
        return float("nan")
    return statistics.linear_regression(xs, ys).slope


def _rss_mb(status: Path) -> float:
    """A process's resident set size in MB, from its ``/proc/<pid>/status``."""
    for line in status.read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) * 1024 / MB, 2)
    raise RuntimeError(f"no VmRSS in {status}")
