"""What one run of the harness measures, and how much of it: the full and quick presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

SECTIONS = ("cpu", "sync", "ratelimit", "memory", "follow", "fleet", "soak", "floor", "dlt")
"""Every section, in the order they run."""

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Config:
    """The sizes of every section. ``quick`` marks the short preset in the report."""

    quick: bool
    sections: tuple[str, ...]
    output: Path
    # 1. CPU per request: interleaved rounds of `batch` requests per contender.
    rounds: int
    batch: int
    warmup: int
    original: bool
    # 2. Sync throughput, time-boxed per configuration.
    sync_conversations: int
    sync_messages: int
    sync_workers: tuple[int, ...]
    sync_latencies_ms: tuple[float, ...]
    sync_seconds: float
    # 3. Under a server-side rate limit of `rate` requests/s (a sync by a configured client,
    # then by a default one), then a limit the client is not told that changes: each of
    # `changing_rates` for `changing_seconds`; `retry_after_calls` calls against incidental
    # 429s with Retry-After, then against a real limit of `retry_after_limit`/s; a daily
    # quota of `spent_quota` requests that runs out (0 leaves either out); crisp-sync copying a
    # website of `quota_days_conversations` at a daily quota of a third of what it needs
    # (`benchmarks.quota_days`; 0 leaves it out).
    rate: float
    rate_burst: int
    rate_workers: int
    rate_conversations: int
    default_conversations: int
    changing_rates: tuple[float, ...]
    changing_seconds: float
    retry_after_calls: int
    retry_after_limit: float
    spent_quota: int
    quota_days_conversations: int
    # 4. Memory.
    memory_requests: int
    # 5. Follow mode (crisp-sync --follow): event-to-store latency of messages added at
    # `follow_rate`/s for `follow_seconds`; sockets dropped every `drop_every` s for
    # `drop_seconds` (messages at `drop_rate`/s, reconciling every `drop_interval` s); a quiet
    # website followed for `quiet_seconds`, reconciling every `quiet_interval` s;
    # `repair_touched` conversations touched by live events per kind of touch, reconciling
    # every `repair_interval` s.
    follow_conversations: int
    follow_rate: float
    follow_seconds: float
    drop_seconds: float
    drop_every: float
    drop_rate: float
    drop_interval: float
    quiet_seconds: float
    quiet_interval: float
    repair_touched: int
    repair_interval: float
    # 6. PostgreSQL and the fleet: `store_conversations` conversations of `store_messages`
    # messages saved from `store_threads` threads into each store, twice (inserts, then
    # unchanged), in `store_rounds` rounds on fresh stores; `fleet_websites` websites synced
    # by one crisp-sync process, then by `fleet_processes` at once, at `fleet_latency_ms`
    # (websites of `fleet_conversations` x `fleet_messages`) and at `fleet_slow_latency_ms`
    # with smaller websites, where latency rather than CPU bounds the run (0 leaves it out); a
    # worker killed mid-website with `--lease-ttl fleet_lease_ttl` (websites of
    # `takeover_conversations`). `postgres_url`: a server to create the databases on (None: a
    # private server started for the section).
    postgres_url: str | None
    store_conversations: int
    store_messages: int
    store_threads: int
    store_rounds: int
    fleet_websites: int
    fleet_processes: int
    fleet_latency_ms: float
    fleet_conversations: int
    fleet_messages: int
    fleet_slow_latency_ms: float
    fleet_slow_conversations: int
    fleet_slow_messages: int
    fleet_lease_ttl: float
    takeover_conversations: int
    # 7. The follow soak: messages added at `soak_rate`/s for `soak_seconds` to a website of
    # `soak_conversations` followed by crisp-sync reconciling every `soak_interval` s.
    soak_seconds: float
    soak_rate: float
    soak_interval: float
    soak_conversations: int
    # 8. crisp-sync's CPU per message against the floor (`benchmarks.floor`), and per unchanged
    # conversation of an incremental run: a website of `floor_conversations` x
    # `floor_messages`, `floor_rounds` rounds.
    floor_conversations: int = 2000
    floor_messages: int = 30
    floor_rounds: int = 3
    # 9. The dlt source against crisp-sync into SQLite (`benchmarks.dlt_source`): a website of
    # `dlt_conversations` answering after `dlt_latency_ms`, copied, then `dlt_touched` touched
    # (0 leaves the incremental runs out).
    dlt_conversations: int = 120
    dlt_latency_ms: float = 50.0
    dlt_touched: int = 12


FULL = Config(
    quick=False,
    sections=SECTIONS,
    output=RESULTS,
    rounds=15,
    batch=1000,
    warmup=300,
    original=True,
    sync_conversations=10_000,
    sync_messages=30,
    sync_workers=(1, 4, 16, 32),
    sync_latencies_ms=(0.0, 50.0),
    sync_seconds=30.0,
    rate=200.0,
    rate_burst=20,
    rate_workers=16,
    rate_conversations=2000,
    default_conversations=500,
    changing_rates=(40.0, 20.0),
    changing_seconds=8.0,
    retry_after_calls=1000,
    retry_after_limit=50.0,
    spent_quota=300,
    quota_days_conversations=300,
    memory_requests=1_000_000,
    follow_conversations=50,
    follow_rate=200.0,
    follow_seconds=20.0,
    drop_seconds=60.0,
    drop_every=3.0,
    drop_rate=20.0,
    drop_interval=5.0,
    quiet_seconds=60.0,
    quiet_interval=10.0,
    repair_touched=10,
    repair_interval=2.0,
    postgres_url=None,
    store_conversations=400,
    store_messages=50,
    store_threads=8,
    store_rounds=3,
    fleet_websites=40,
    fleet_processes=4,
    fleet_latency_ms=50.0,
    fleet_conversations=50,
    fleet_messages=10,
    fleet_slow_latency_ms=500.0,
    fleet_slow_conversations=20,
    fleet_slow_messages=5,
    fleet_lease_ttl=5.0,
    takeover_conversations=200,
    soak_seconds=300.0,
    soak_rate=50.0,
    soak_interval=10.0,
    soak_conversations=500,
)

QUICK = replace(
    FULL,
    quick=True,
    output=RESULTS / "quick",
    rounds=5,
    batch=300,
    warmup=100,
    sync_seconds=5.0,
    rate=100.0,
    rate_conversations=300,
    default_conversations=30,
    retry_after_calls=300,
    memory_requests=50_000,
    follow_seconds=5.0,
    drop_seconds=15.0,
    quiet_seconds=20.0,
    quiet_interval=5.0,
    repair_touched=3,
    store_conversations=60,
    store_messages=20,
    fleet_websites=8,
    fleet_conversations=20,
    fleet_messages=5,
    fleet_slow_latency_ms=300.0,
    fleet_slow_conversations=6,
    fleet_slow_messages=3,
    takeover_conversations=100,
    soak_seconds=60.0,
    floor_conversations=400,
    floor_rounds=2,
)
