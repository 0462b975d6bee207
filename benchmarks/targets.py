"""The project's performance targets, checked against one run's results (PASS/MISS)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import contenders
from benchmarks.config import FULL
from benchmarks.fleet import FIRST_RUN, KNOWN
from benchmarks.rate_limit import CONFIGURED
from benchmarks.results import Results
from benchmarks.soak import MAX_GROWTH_MB as MAX_SOAK_GROWTH_MB

MAX_DEFAULT_VS_URLLIB3 = 1.05
MAX_HIT_US = 10.0
MIN_ORIGINAL_VS_OURS = 3.0
MIN_SCALING_16_AT_50MS = 12.0
MIN_RATE_FRACTION = 0.95
MIN_ADAPTIVE_FRACTION = 0.90
MAX_ADAPTIVE_429_SHARE = 0.10
MAX_SPENT_SECONDS = 60.0
MAX_SENT_AFTER_SPENT = 30
MAX_GROWTH_MB = 10.0
MAX_EVENT_MEDIAN_S = 1.0
MAX_SYNC_VS_FLOOR = 1.3
MAX_UNCHANGED_VS_ENTRY = 1.0
MIN_POSTGRES_ROWS_PER_S = 25_000
FLEET_GOAL, SLOW_FLEET_GOAL = 3.5, 3.8
"""The fleet at least this many times faster than one process, at 50 ms per answer and when
latency bounds the run (500 ms)."""


def fleet_goal(latency_ms: float) -> float:
    """The speed-up goal of a fleet run at ``latency_ms`` per answer."""
    return SLOW_FLEET_GOAL if latency_ms >= 500 else FLEET_GOAL


@dataclass(frozen=True)
class Check:
    """One target: what it asks, what was measured, and whether it held (None: not run)."""

    target: str
    measured: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        """PASS, MISS or "not run"."""
        return "not run" if self.passed is None else "PASS" if self.passed else "MISS"


def evaluate(results: Results) -> list[Check]:
    """Every target, in the order of the sections."""
    return [*_cpu(results), _scaling(results), _rate(results), _changing(results),
            _spent(results), _memory(results), *_follow(results), _soak(results),
            _postgres(results), *_fleet(results), *_floor(results)]


def _cpu(results: Results) -> list[Check]:
    cpu = results.cpu
    default = cpu.row(contenders.DEFAULT) if cpu else None
    hit = cpu.row(contenders.HIT) if cpu else None
    ratio = cpu.original_vs_default if cpu else None
    return [
        Check(
            f"default stack <= {MAX_DEFAULT_VS_URLLIB3}x bare urllib3 CPU per request",
            "-" if default is None else f"{default.vs_urllib3:.2f}x ({default.cpu_us:.0f} µs)",
            None if default is None else default.vs_urllib3 <= MAX_DEFAULT_VS_URLLIB3,
        ),
        Check(
            f"cache hit <= {MAX_HIT_US:g} µs CPU",
            "-" if hit is None else f"{hit.cpu_us:.1f} µs",
            None if hit is None else hit.cpu_us <= MAX_HIT_US,
        ),
        Check(
            f"original client >= {MIN_ORIGINAL_VS_OURS:g}x our CPU per request",
            "-" if ratio is None else f"{ratio:.2f}x",
            None if ratio is None else ratio >= MIN_ORIGINAL_VS_OURS,
        ),
    ]


def _scaling(results: Results) -> Check:
    sync = results.sync
    one = sync.run(50.0, 1) if sync else None
    sixteen = sync.run(50.0, 16) if sync else None
    name = f"16 workers at 50 ms >= {MIN_SCALING_16_AT_50MS:g}x the throughput of 1 worker"
    if one is None or sixteen is None or not one.conversations_per_s:
        return Check(name, "-", None)
    scale = sixteen.conversations_per_s / one.conversations_per_s
    return Check(
        name,
        f"{scale:.1f}x ({sixteen.conversations_per_s:.0f} vs "
        f"{one.conversations_per_s:.1f} conversations/s)",
        scale >= MIN_SCALING_16_AT_50MS,
    )


def _rate(results: Results) -> Check:
    run = next((r for r in results.rate_limit if r.client == CONFIGURED), None)
    name = f"under a rate limit: >= {MIN_RATE_FRACTION:.0%} of R achieved, no item lost"
    if run is None:
        return Check(name, "-", None)
    lost = run.conversations_lost + run.messages_lost
    return Check(
        name,
        f"{run.fraction_of_rate:.1%} of {run.rate:g}/s, {lost} lost, {run.throttled} 429s",
        run.fraction_of_rate >= MIN_RATE_FRACTION and lost == 0,
    )


def _changing(results: Results) -> Check:
    changing = results.changing_limit
    name = (f"unknown changing limit: default client >= {MIN_ADAPTIVE_FRACTION:.0%} of the "
            "allowed rate in each phase's steady state (its last seconds), and <= "
            f"{MAX_ADAPTIVE_429_SHARE:.0%} of the whole run's requests answered 429")
    if changing is None:
        return Check(name, "-", None)
    measured = "; ".join(
        f"{phase.allowed_per_s:g}/s: {phase.fraction_of_allowed:.1%}, "
        f"{phase.throttled_share:.1%} 429"
        for phase in changing.phases
    )
    return Check(
        name,
        f"{measured} (whole run: {changing.throttled_share:.1%} 429, first second: "
        f"{changing.first_second_throttled} 429, failed calls: {changing.failed_calls})",
        changing.throttled_share <= MAX_ADAPTIVE_429_SHARE
        and all(phase.fraction_of_allowed >= MIN_ADAPTIVE_FRACTION
                for phase in changing.phases),
    )


def _spent(results: Results) -> Check:
    run = results.quota_spent
    name = (f"a spent daily quota: every caller stopped within {MAX_SPENT_SECONDS:g} s of the "
            f"first refusal, after at most {MAX_SENT_AFTER_SPENT} further requests")
    if run is None:
        return Check(name, "-", None)
    return Check(
        name,
        f"{run.sent_after_spent} requests, {run.seconds_to_stop:.1f} s, "
        f"{run.stopped_by_quota_error} of {run.threads} callers stopped by QuotaSpentError",
        run.sent_after_spent <= MAX_SENT_AFTER_SPENT
        and run.seconds_to_stop <= MAX_SPENT_SECONDS
        and run.stopped_by_quota_error == run.threads and run.later_call_sent == 0,
    )


def _memory(results: Results) -> Check:
    memory = results.memory
    name = f"RSS growth < {MAX_GROWTH_MB:g} MB over 1,000,000 requests"
    if memory is None:
        return Check(name, "-", None)
    return Check(
        name,
        f"{memory.growth_mb:+.1f} MB over {memory.requests:,} requests",
        memory.growth_mb < MAX_GROWTH_MB,
    )


def _follow(results: Results) -> list[Check]:
    follow = results.follow
    latency = follow.latency if follow else None
    drops = follow.drops if follow else None
    quiet = follow.quiet if follow else None
    repair = follow.repair if follow else None
    return [
        Check(
            f"follow: event-to-store latency median < {MAX_EVENT_MEDIAN_S:g} s",
            "-" if latency is None else
            f"{latency.median_s:.3f} s (p95 {latency.p95_s:.3f} s, {latency.seen:,} of "
            f"{latency.sent:,} seen)",
            None if latency is None else
            latency.median_s < MAX_EVENT_MEDIAN_S and latency.seen == latency.sent,
        ),
        Check(
            "follow: sockets dropped every few seconds, then an exact copy and exit 0 on "
            "SIGTERM",
            "-" if drops is None else
            f"{drops.drops} drops, {drops.sent:,} messages, exact: "
            f"{'yes' if drops.exact else 'no'}, exit {drops.exit_status}",
            None if drops is None else drops.exact and drops.exit_status == 0,
        ),
        Check(
            "follow: a quiet day costs at most reconciliations x an incremental run's "
            "requests (no rescan)",
            "-" if quiet is None else
            f"{quiet.requests} requests in {quiet.reconciliations} reconciliations "
            f"(incremental run: {quiet.incremental_requests}, full: {quiet.full_requests})",
            None if quiet is None else quiet.reconciliations > 0
            and quiet.requests <= quiet.reconciliations * quiet.incremental_requests,
        ),
        Check(
            "follow: repair requests per touched conversation counted; every touched "
            "conversation confirmed, then an exact copy",
            "-" if repair is None else
            f"{repair.per_touched:.1f} per touched conversation ("
            + ", ".join(f"{kind.kind} {kind.per_touched:.1f}" for kind in repair.kinds)
            + f"), exact: {'yes' if repair.exact else 'no'}",
            None if repair is None else repair.exact and repair.exit_status == 0
            and all(kind.rechecked + kind.covered >= kind.touched for kind in repair.kinds),
        ),
    ]


def _soak(results: Results) -> Check:
    soak = results.soak
    name = f"follow soak: RSS growth after warm-up < {MAX_SOAK_GROWTH_MB:g} MB, then an exact copy"
    if soak is None:
        return Check(name, "-", None)
    return Check(
        name,
        f"{soak.growth_mb:+.1f} MB over {soak.seconds / 60:g} min ({soak.rss_warm_mb:.1f} -> "
        f"{soak.rss_end_mb:.1f} MB, {soak.achieved_rate:.1f} events/s), exact: "
        f"{'yes' if soak.exact else 'no'}",
        soak.growth_mb < MAX_SOAK_GROWTH_MB and soak.exact and soak.exit_status == 0,
    )


def _postgres(results: Results) -> Check:
    stores = {run.store: run for run in results.fleet.stores} if results.fleet else {}
    postgres = stores.get("PostgreSQL")
    name = (f"PostgreSQL store >= {MIN_POSTGRES_ROWS_PER_S:,} message rows/s, first inserts "
            "and unchanged rows")
    if postgres is None:
        return Check(name, "-", None)
    return Check(
        name,
        f"{postgres.insert_rows_per_s:,.0f} and {postgres.unchanged_rows_per_s:,.0f} rows/s",
        min(postgres.insert_rows_per_s, postgres.unchanged_rows_per_s)
        >= MIN_POSTGRES_ROWS_PER_S,
    )


def _fleet(results: Results) -> list[Check]:
    """A fleet's speed-up at each latency measured, judged on the runs of a known credential
    (every run after its first); the credential's first run is shown beside it."""
    speedups = results.fleet.speedups if results.fleet is not None else []
    latencies = sorted({speedup.latency_ms for speedup in speedups})
    checks = []
    for latency in latencies:
        runs = {speedup.start: speedup for speedup in speedups
                if speedup.latency_ms == latency}
        known, first = runs.get(KNOWN), runs.get(FIRST_RUN)
        processes = next(iter(runs.values())).fleet.processes
        goal = fleet_goal(latency)
        checks.append(Check(
            f"fleet: {processes} processes >= {goal:g}x one at {latency:g} ms per answer "
            f"({KNOWN}; the {FIRST_RUN} beside it)",
            ("-" if known is None else f"{known.speedup:.2f}x")
            + ("" if first is None else f" ({FIRST_RUN}: {first.speedup:.2f}x)"),
            None if known is None else
            known.speedup >= goal and known.single.complete and known.fleet.complete,
        ))
    return checks or [Check(
        f"fleet: {FULL.fleet_processes} processes >= {FLEET_GOAL:g}x one at "
        f"{FULL.fleet_latency_ms:g} ms per answer", "-", None)]


def _floor(results: Results) -> list[Check]:
    floor = results.floor
    return [
        Check(
            f"crisp-sync CPU per message into SQLite <= {MAX_SYNC_VS_FLOOR:g}x the floor's",
            "-" if floor is None else
            f"{floor.sync_vs_floor:.2f}x ({floor.sync_us_per_message:.1f} vs "
            f"{floor.floor_us_per_message:.1f} µs)",
            None if floor is None else
            floor.sync_vs_floor <= MAX_SYNC_VS_FLOOR and floor.complete,
        ),
        Check(
            "incremental run: CPU per unchanged conversation <= its listing entry's",
            "-" if floor is None else
            f"{floor.unchanged_vs_entry:.2f}x ({floor.unchanged_us:.1f} vs "
            f"{floor.listing_entry_us:.1f} µs)",
            None if floor is None else floor.unchanged_vs_entry <= MAX_UNCHANGED_VS_ENTRY,
        ),
    ]
