"""The markdown report (``results.md``): machine, targets, then one table per section."""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks import contenders, original, pg_methods
from benchmarks.cpu import CHUNKS, CpuResult
from benchmarks.dlt_source import DltResult
from benchmarks.fleet import FIRST_RUN, KNOWN, FleetResult, FleetRun, SpeedUp, Takeover
from benchmarks.follow import FollowResult
from benchmarks.memory import MemoryResult
from benchmarks.pg_methods import MethodRun
from benchmarks.quota_days import QuotaDays
from benchmarks.rate_limit import (
    ADAPTIVE,
    CONFIGURED,
    PAUSING,
    ChangingLimit,
    RateRun,
    RetryAfterRun,
    SpentRun,
)
from benchmarks.results import Results
from benchmarks.soak import WARMUP_SHARE, SoakResult
from benchmarks.sync_cpu import FLOOR, INCREMENTAL_SAMPLES, SYNC, SYNC_STDLIB, FloorResult
from benchmarks.targets import Check, fleet_goal
from benchmarks.throughput import SyncResult
from crisp_api.sync.fleet import WAIT_SECONDS


def render(results: Results, checks: Sequence[Check]) -> str:
    """The whole report."""
    parts = [_header(results), _machine(results.machine), _targets(checks)]
    if results.cpu is not None:
        parts.append(_cpu(results.cpu))
    if results.sync is not None:
        parts.append(_sync(results.sync))
    if (results.rate_limit or results.changing_limit is not None or results.retry_after
            or results.quota_spent is not None):
        parts.append(_rate(results.rate_limit, results.changing_limit))
        if results.retry_after:
            parts.append(_retry_after(results.retry_after))
        if results.quota_spent is not None:
            parts.append(_spent(results.quota_spent))
        if results.quota_days is not None:
            parts.append(_quota_days(results.quota_days))
    if results.memory is not None:
        parts.append(_memory(results.memory))
    if results.follow is not None:
        parts.append(_follow(results.follow))
    if results.fleet is not None:
        parts.append(_fleet(results.fleet))
    if results.soak is not None:
        parts.append(_soak(results.soak))
    if results.floor is not None:
        parts.append(_floor(results.floor))
    if results.dlt is not None:
        parts.append(_dlt(results.dlt))
    return "\n\n".join(parts) + "\n"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; columns after the first are right-aligned."""
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- |" + " ---: |" * (len(header) - 1),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines)


def _number(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _header(results: Results) -> str:
    kind = (
        "**Quick run**: fewer rounds and requests than the full run; see each section."
        if results.config.quick
        else "Full run."
    )
    return (
        f"# crisp-api benchmarks\n\n`{results.command}`, started {results.started}, "
        f"took {results.seconds / 60:.1f} min. {kind}"
    )


def _machine(machine: dict[str, str]) -> str:
    return "## Machine\n\n" + table(["", ""], [[key, value] for key, value in machine.items()])


def _targets(checks: Sequence[Check]) -> str:
    rows = [[check.target, check.measured, f"**{check.verdict}**"] for check in checks]
    return "## Targets\n\n" + table(["target", "measured", "result"], rows)


def _cpu(cpu: CpuResult) -> str:
    rows = [
        [row.name, _number(row.cpu_us, 1), f"{_number(row.vs_urllib3, 2)}x",
         _number(row.requests_per_s)]
        for row in cpu.rows
    ]
    layers = [
        [layer, _number(cost, 1), _number(cpu.layer_cost_offline_us[layer], 1)]
        for layer, cost in cpu.layer_cost_us.items()
    ]
    whole = cpu.offline_us.get(contenders.DEFAULT, float("nan"))
    text = [
        "## 1. Client CPU per request",
        f"`GET /v1/website/{{id}}?n=<n>` (an answer of about 150 bytes), decoded to the "
        "envelope's `data`. "
        f"One client thread; server: {cpu.server}. {cpu.rounds} rounds of {cpu.batch} "
        "requests per contender after a warm-up, the contenders' order rotating each round "
        f"and each sending its batch in {CHUNKS} turns within a round. "
        "CPU is the client thread's (`time.thread_time`), median over rounds; "
        "\"x urllib3\" is the median of the per-round ratios. Cache-miss contenders send a "
        f"new `n` every request; the cache hit asks {contenders.HIT_MULTIPLE}x the batch "
        "for the same URL, so that its batches last long enough to time.",
        table(["client", "CPU µs/request", "x urllib3", "requests/s"], rows),
        "Marginal CPU of each default layer: the default stack less the stack without it, "
        "median of the per-round differences. On the wire they are within the noise (which "
        "can make them negative), so the stacks were also raced without the network, an "
        "innermost layer answering every request with a copy of a real answer: there the "
        f"whole client (method, URL, pipeline, JSON decoding) costs {_number(whole, 1)} µs "
        "per request.",
        table(["layer", "on the wire, µs/request", "without the network, µs/request"],
              layers),
    ]
    if cpu.original_vs_default is not None:
        versions = ", ".join(f"{name} {version}" for name, version in
                             cpu.original_versions.items())
        text.append(
            f"The original client ({versions}) spends {cpu.original_vs_default:.2f}x our "
            "default stack's CPU per request (median of per-round ratios). It calls "
            "`requests.request` without a session, so every request opens and closes a new "
            "connection; it runs in its own process and virtual environment "
            f"(`benchmarks/{original.VENV.name}/`), timed the same way, in a race of its own "
            "beside bare urllib3 and our default stack (its row's ratio is to that race's "
            "urllib3): the closed connections it leaves slowed the contenders raced after it."
        )
    return "\n\n".join(text)


def _sync(sync: SyncResult) -> str:
    rows = []
    for run in sync.runs:
        single = sync.run(run.latency_ms, 1)
        scale = (
            f"{run.conversations_per_s / single.conversations_per_s:.1f}x"
            if single and single.conversations_per_s else "-"
        )
        rows.append([
            f"{run.latency_ms:g} ms", str(run.workers), f"{run.conversations:,}",
            f"{run.messages:,}", f"{run.seconds:.1f}", _number(run.conversations_per_s, 1),
            _number(run.messages_per_s), scale,
            "time-boxed" if run.time_boxed else "all",
        ])
    return "\n\n".join([
        "## 2. Sync throughput",
        "`sync_website` in this process into a fresh SQLite database (conversations and "
        "messages), against a fake Crisp in another process holding "
        f"{sync.conversations:,} conversations of about {sync.messages_per_conversation} "
        "messages, with the added latency shown on every request. Each configuration runs "
        f"for at most {sync.time_box_s:g} s: then it stops taking conversations and lets "
        "those in flight finish (\"time-boxed\"; \"all\" means it copied every conversation "
        "first). Rates are what was committed divided by the time from the start to the last "
        "commit.",
        table(["latency", "workers", "conversations", "messages", "seconds",
               "conversations/s", "messages/s", "x 1 worker", "copied"], rows),
    ])


def _rate(runs: Sequence[RateRun], changing: ChangingLimit | None) -> str:
    parts = ["## 3. Under a server rate limit"]
    if runs:
        rows = [
            [run.client, f"{run.rate:g}/s", str(run.server_burst), str(run.workers),
             f"{run.conversations:,}", f"{run.seconds:.1f}", _number(run.achieved_per_s, 1),
             f"{run.fraction_of_rate:.1%}", str(run.throttled), f"{run.throttled_share:.1%}",
             str(run.retries), "yes" if run.complete else "no", str(run.conversations_lost),
             str(run.messages_lost)]
            for run in runs
        ]
        parts += [
            "A full `sync_website` (conversations, messages, people, operators) against a fake "
            "Crisp whose per-token bucket allows R requests/s (burst shown) and answers 429 "
            "with `Retry-After` (whole seconds, at least 1) beyond. "
            f"`{CONFIGURED}` is configured with the server's rate, as the README advises for "
            f"a known limit. `{ADAPTIVE}` is `Crisp()` as it comes: it has no rate configured "
            "and learns the limit from the share of its requests answered 429, so its run "
            "includes the time it takes to find it. Achieved = successful requests counted by "
            "the server / elapsed time, the first burst included; 429 share = the server's "
            "429 answers / all its answers. Lost = conversations and messages of the fake's "
            "ground truth missing from (or different in) the synced database after the run; "
            "a run that is not complete leaves its checkpoint where it was, so a rerun would "
            "copy them.",
            table(["client", "R", "server burst", "workers", "conversations", "seconds",
                   "achieved req/s", "of R", "429s", "429 share", "retries", "complete",
                   "conversations lost", "messages lost"], rows),
        ]
    if changing is not None:
        parts += _changing(changing)
    return "\n\n".join(parts)


def _changing(changing: ChangingLimit) -> list[str]:
    rows = [
        [f"phase {number}", f"{phase.allowed_per_s:g}/s", f"{phase.seconds:.1f}",
         _number(phase.achieved_per_s, 1), f"{phase.fraction_of_allowed:.1%}",
         f"{phase.throttled_share:.1%}", str(phase.failed_calls)]
        for number, phase in enumerate(changing.phases, 1)
    ]
    seconds = sum(phase.seconds for phase in changing.phases)
    rows.append(["whole run", "-", f"{seconds:.1f}", _number(changing.successful / seconds, 1),
                 "-", f"{changing.throttled_share:.1%}", str(changing.failed_calls)])
    settle = changing.phases[0].steady_after_s
    steady = changing.phases[0].seconds - settle
    return [
        "### An unknown limit that changes",
        f"A default client (`cache_ttl=0`, a pool of {changing.threads}), {changing.threads} "
        "threads calling `website.get_conversation` as fast as they can, against a fake whose "
        f"bucket (burst {changing.server_burst}) allows the first rate, then the next, and "
        "answers the excess 429 *without* `Retry-After`, as Crisp documents none: the client "
        "is told no rate and has only the 429s to learn from. Each phase's figures are its "
        f"steady state, its last {steady:.0f} s: the first {settle:.0f} s after the limit "
        "changes, while the client finds it, are left out. Achieved = successful answers/s; "
        "429 share = attempts (retries included) answered 429; failed calls = calls that ran "
        "out of retries (`RouteError`), over the whole phase. The last row is the whole run, "
        f"start and transitions included ({changing.attempts:,} attempts). The start: "
        f"{changing.first_second_throttled} of the {changing.first_second_attempts} attempts "
        "answered in the first second were 429 (the rate starts at 8/s and doubles every "
        "second until the first cut).",
        table(["phase", "allowed", "seconds", "achieved req/s (steady)",
               "of allowed (steady)", "429 share (steady)", "failed calls"], rows),
    ]


def _retry_after(runs: Sequence[RetryAfterRun]) -> str:
    rows = [[run.case, run.client, f"{run.calls:,}", f"{run.seconds:.1f}", str(run.throttled),
             str(run.pauses), str(run.failed_calls)] for run in runs]
    return "\n\n".join([
        "### Incidental 429s against a real limit, both with `Retry-After`",
        "16 threads make a fixed number of `website.get_conversation` calls. "
        "Incidental: every 10th request is faulted at random, a third of the faults a 429 with "
        "`Retry-After: 1` (the rest 5xx), and there is no real limit. A real limit: the fake's "
        "bucket answers its excess 429 with `Retry-After`. "
        f"`{ADAPTIVE}` pauses every caller for a `Retry-After` only when the share of 429s says "
        f"the limit is shared (its law cuts); otherwise only the refused call waits. "
        f"`{PAUSING}` (`rate_limit=1e6`: a fixed rate far above the limit) pauses every caller "
        "for every `Retry-After`, as the default did before. 429s: answered by the server; "
        "pauses: times every caller was held back; failed: calls out of retries.",
        table(["case", "client", "calls", "seconds", "429s", "pauses", "failed calls"], rows),
    ])


def _spent(run: SpentRun) -> str:
    return "\n\n".join([
        "### A spent daily quota",
        f"A default client, {run.threads} threads calling `website.get_conversation` until a "
        f"call fails with `QuotaSpentError`, against a fake whose daily quota of {run.quota} "
        "requests runs out, after which it answers every request with a plain 429 (no "
        "`Retry-After`, as Crisp does). Sent after: requests the fake refused once the quota "
        "was spent. Stopped: seconds from the first refusal to the last caller stopped. A "
        "later call: requests sent by one more call after the stop.",
        table(["quota", "sent after it was spent", "stopped after, s",
               "callers stopped by QuotaSpentError", "expected reset", "a later call sent"],
              [[f"{run.quota:,}", str(run.sent_after_spent), f"{run.seconds_to_stop:.1f}",
                f"{run.stopped_by_quota_error} of {run.threads}", run.reset_at,
                str(run.later_call_sent)]]),
    ])


def _quota_days(run: QuotaDays) -> str:
    return "\n\n".join([
        "### crisp-sync under a daily quota",
        f"A first copy of a website of {run.conversations:,} conversations by crisp-sync, run "
        f"once a day, told a daily quota of {run.quota:,} requests (a third of what one "
        "unconstrained run sends), against a fake that refuses everything with a plain 429 "
        "once it is spent. Then a run not told the quota (it finds it spent from the "
        "refusals, and exits 7), and a rerun the same day.",
        table(["unconstrained run", "days", "requests over the days", "vs unconstrained",
               "copy exact", "sent after the quota was spent", "stopped after, s",
               "exit status", "same-day rerun sent", "its exit status"],
              [[f"{run.unconstrained_requests:,}", str(run.days), f"{run.total_requests:,}",
                f"{run.ratio:.2f}x", "yes" if run.exact else "NO", str(run.sent_after_spent),
                f"{run.seconds_to_stop:.1f}", str(run.stop_status), str(run.rerun_requests),
                str(run.rerun_status)]]),
    ])


def _memory(memory: MemoryResult) -> str:
    row = [
        f"{memory.requests:,}", _number(memory.requests_per_s), f"{memory.warmup_requests:,}",
        f"{memory.rss_start_mb:.1f}", f"{memory.rss_warm_mb:.1f}", f"{memory.rss_end_mb:.1f}",
        f"{memory.rss_peak_mb:.1f}", f"{memory.growth_mb:+.1f}",
    ]
    return "\n\n".join([
        "## 4. Memory",
        "One client (default stack, cache on) in a process of its own: of every 4 calls, 3 "
        "ask for a new URL (cache miss, store, eviction once full) and 1 for the same URL "
        "(hit); every 1000th is a write that invalidates the website's cache. RSS from "
        "`/proc/self/status` in MB (10^6 bytes); growth = highest RSS after the warm-up less "
        "the RSS at its end.",
        table(["requests", "requests/s", "warm-up requests", "RSS start", "after warm-up",
               "end", "peak after warm-up", "growth"], [row]),
    ])


def _follow(follow: FollowResult) -> str:
    latency, drops, quiet, repair = follow.latency, follow.drops, follow.quiet, follow.repair
    return "\n\n".join([
        "## 5. Follow mode",
        "`crisp-sync --follow` as a child process (JSON logs, metrics on a local port) "
        "against a fake Crisp in another process serving REST and Socket.IO RTM, "
        f"{latency.conversations} conversations. **Event-to-store latency**: this process "
        "adds messages through the fake's admin helpers (a batch per 20 ms tick, round-robin "
        "over the conversations) and reads the CLI's database (read-only) every 10 ms; a "
        "message's latency runs from its add call returning to its first sight in the "
        "database (reconciliation every hour: only events can store them).",
        table(["messages/s", "seconds", "sent", "seen", "median s", "p95 s", "max s"],
              [[f"{latency.rate:g}", f"{latency.seconds:g}", f"{latency.sent:,}",
                f"{latency.seen:,}", _number(latency.median_s, 3), _number(latency.p95_s, 3),
                _number(latency.max_s, 3)]]),
        f"**Socket kills**: the fake drops the CLI's socket every {drops.every_s:g} s for "
        f"{drops.seconds:g} s while messages come (one per call, round-robin); the CLI "
        f"reconciles every {drops.interval_s:g} s. After two more reconciliations it gets "
        "SIGTERM, and its database is compared with the fake's ground truth: every "
        "conversation and message, byte for byte.",
        table(["drops", "messages sent", "reconciliations after", "exit status", "exact copy",
               "conversations missing", "messages missing", "messages different"],
              [[str(drops.drops), f"{drops.sent:,}", str(drops.reconciliations),
                str(drops.exit_status), "yes" if drops.exact else "no",
                str(drops.conversations_missing), str(drops.messages_missing),
                str(drops.messages_different)]]),
        f"**A quiet day**: the CLI follows a website where nothing changes, reconciling every "
        f"{quiet.interval_s:g} s; the fake counts the `/v1` requests of {quiet.seconds:g} s "
        "(from half an interval after the socket connects). One full and one incremental "
        "`sync_website` run on an unchanged website, measured directly on a database of "
        "their own (`cache_ttl=0`), give the costs to compare with. A day = 86,400 s / "
        "interval reconciliations, at the observed cost, or at a full rescan's.",
        table(["seconds", "interval s", "requests", "reconciliations", "per reconciliation",
               "incremental run", "full run", "quiet day", "day of rescans"],
              [[f"{quiet.seconds:g}", f"{quiet.interval_s:g}", str(quiet.requests),
                str(quiet.reconciliations), _number(quiet.per_reconciliation, 1),
                str(quiet.incremental_requests), str(quiet.full_requests),
                _number(quiet.day_requests), _number(quiet.day_rescans)]]),
        f"**Repairs**: every conversation a live event touched is read again through REST "
        f"by the next reconciliation, unless that reconciliation's own sync read it far "
        f"enough (\"covered\"). The CLI reconciles every {repair.interval_s:g} s; one kind at "
        "a time, conversations of 73 messages are touched once each (a new message; an edit "
        "of the message 65 back, past the newest page; the removal of the message 30 back; a "
        "change of state, through the REST API). After two reconciliations per kind, the "
        "requests spent re-reading (`recheck_calls` of the log's `reconciliation.complete`) "
        "are divided by the conversations touched; \"all requests\" are the fake's, the "
        "incremental syncs included. Then SIGTERM, and the copy is compared with the fake's "
        f"ground truth: exact {'yes' if repair.exact else 'no'}, exit status "
        f"{repair.exit_status}.",
        table(["touch", "conversations", "reconciliations", "re-read", "covered",
               "repair requests", "per touched", "all requests"],
              [[kind.kind, str(kind.touched), str(kind.reconciliations), str(kind.rechecked),
                str(kind.covered), str(kind.recheck_requests), _number(kind.per_touched, 1),
                str(kind.requests)] for kind in repair.kinds]
              + [["all kinds", str(sum(kind.touched for kind in repair.kinds)), "",
                  str(sum(kind.rechecked for kind in repair.kinds)),
                  str(sum(kind.covered for kind in repair.kinds)),
                  str(sum(kind.recheck_requests for kind in repair.kinds)),
                  _number(repair.per_touched, 1),
                  str(sum(kind.requests for kind in repair.kinds))]]),
    ])


def _fleet(fleet: FleetResult) -> str:
    parts = [
        "## 6. PostgreSQL and the fleet",
        f"PostgreSQL: {fleet.postgres}." if fleet.postgres_missing is None else
        f"**PostgreSQL is not available** ({fleet.postgres_missing}): only SQLite was "
        "measured; give `--postgres-url` or install PostgreSQL for the rest.",
    ]
    if fleet.stores:
        parts += _stores(fleet)
    if fleet.speedups:
        parts += _speedups(fleet.speedups, fleet.cores)
    if fleet.takeover is not None:
        parts += _takeover(fleet.takeover)
    return "\n\n".join(parts)


def _stores(fleet: FleetResult) -> list[str]:
    first = fleet.stores[0]
    rows = [
        [run.store, f"{run.conversations:,}", f"{run.rows:,}", str(run.threads),
         str(len(run.inserts)), _number(run.insert_rows_per_s),
         _number(run.unchanged_rows_per_s),
         f"{run.unchanged_rows_per_s / run.insert_rows_per_s:.1f}x",
         "/".join(f"{p.written:,}" for p in run.inserts),
         "/".join(f"{p.written:,}" for p in run.unchanged)]
        for run in fleet.stores
    ]
    text = [
        "**Store throughput**: conversations of "
        f"{first.rows // max(1, first.conversations)} messages (shaped like Crisp's answers), "
        f"each saved with all its messages in one `save_conversation` call, from {first.threads} "
        "threads as the sync engine's workers do, into a fresh store (SQLite: a WAL file in a "
        "temporary directory; PostgreSQL: a fresh database, a pool of 16 connections); then "
        "the very same rows again, which the stores compare and do not write (what every "
        "rerun over an overlap costs). Rows/s = message rows / the pass's wall time, median "
        "over rounds (SQLite then PostgreSQL in each round, fresh stores every round); "
        "\"written\" counts, per round, the message rows added, changed or removed, as the "
        "store reports them.",
        table(["store", "conversations", "message rows", "threads", "rounds",
               "insert rows/s", "unchanged rows/s", "unchanged vs insert",
               "written (insert)", "written (unchanged)"], rows),
    ]
    if len(fleet.stores) > 1:
        text.append(
            "PostgreSQL / SQLite (median of the per-round ratios): "
            f"{_number(fleet.postgres_vs_sqlite_insert, 2)}x for first inserts, "
            f"{_number(fleet.postgres_vs_sqlite_unchanged, 2)}x for unchanged rows."
        )
    if fleet.methods:
        text += _methods(fleet.methods)
    return text


def _methods(methods: Sequence[MethodRun]) -> list[str]:
    """psycopg 3's ways of writing a conversation, and which won."""
    rows = [
        [run.method, _number(run.insert_rows_per_s), _number(run.unchanged_rows_per_s),
         f"{run.insert_vs_store:.2f}x", f"{run.unchanged_vs_store:.2f}x",
         "/".join(f"{first:,}+{again:,}" for first, again in run.written)]
        for run in methods
    ]
    text = [
        "**PostgreSQL write methods** (psycopg 3's ways of bulk work, each saving the same "
        "conversations from the same threads with what the store promises of a save, through "
        "a pool made as the store's; rounds rotating the order, fresh databases; "
        "`benchmarks/pg_methods.py` says what each does):",
        table(["method", "insert rows/s", "unchanged rows/s", "insert vs the store's",
               "unchanged vs the store's", "written (insert+unchanged)"], rows),
    ]
    ranked = pg_methods.winner(methods)
    if ranked is not None:
        best, second = ranked
        text.append(
            f"Fastest for first inserts: **{best.method}**, "
            f"{best.insert_rows_per_s / second.insert_rows_per_s:.2f}x the next "
            f"({second.method}); for unchanged rows: **"
            + max(methods, key=lambda run: run.unchanged_rows_per_s).method + "**."
        )
    return text


def _speedups(speedups: Sequence[SpeedUp], cores: int) -> list[str]:
    rows, cpu_rows = [], []
    for speedup in speedups:
        for run in (speedup.single, speedup.fleet):
            single = run is speedup.single
            rows.append([
                speedup.label, f"{speedup.latency_ms:g} ms", speedup.start, str(run.processes),
                f"{run.seconds:.1f}", "1.0x" if single else f"**{speedup.speedup:.2f}x**",
                _number(run.startup_s, 1), _number(run.syncing_s, 1), _number(run.tail_s, 1),
                "1.0x" if single else f"{_number(speedup.syncing_speedup, 2)}x",
                f"{run.requests:,}", "1.00x" if single else f"{speedup.request_ratio:.2f}x",
                str(run.website_syncs), "yes" if run.complete else f"**no** {run.statuses}",
            ])
            cpu_rows.append([
                speedup.label, speedup.start, str(run.processes), _cpu_list(run),
                _number(run.fake_cpu_s, 1),
                _number(run.postgres_cpu_s, 1), _number(run.cpu_s / run.seconds, 2),
                _number(run.machine_busy_s / run.seconds, 2),
                _others(run),
                _number(run.machine_steal_s / run.seconds, 2),
            ])
    first = speedups[0]
    text = [
        f"**Fleet speed-up**: `crisp-sync --all-websites --db postgresql://... --no-progress "
        f"--workers {first.workers} -v --log-format json` (the CLI's default threads per "
        "process; the logs time the phases) as child processes against a fake Crisp in another "
        f"process holding {first.websites} websites, the latency shown added to every request: "
        f"one process, then {first.fleet.processes} started at once, each run on a fresh "
        "database and a fresh fake of the same seed, so all are a first full sync of the "
        f"websites. They run twice: as the credential's *{FIRST_RUN}* (empty databases: each "
        "process's adaptive rate opens with its slow start, 8 requests/s doubling every second, "
        f"some 2 s of a run at 50 ms), then with the *{KNOWN}* (each database holding the "
        "allowance its first run left, as every run after a credential's first does: the slow "
        "start resumes from the rate reached without a refusal). Seconds run "
        "from starting the processes to the last one's exit; they split into start-up (to the "
        "first `website.sync.started`: the interpreter, imports, schema, the website list's "
        "first page), "
        "syncing (to the last `website.sync.ended`) and tail (to the last exit: a worker with "
        "nothing left to claim waits while another still holds a website, in case it dies, "
        "woken when a lease is given back or at the latest every "
        f"{WAIT_SECONDS:g} s). The processes run with their bytecode "
        "compiled and cached beforehand (as an installed package has it). Requests are those "
        "the fake received; "
        "website syncs are those the logs show: one per website, plus a second sync "
        "(incremental, a few requests) of any website another worker claimed before this one "
        "began, since a worker's run promises every website synced since it began; complete = "
        "every process exited 0 and the database holds every conversation and message of the "
        "fake.",
        table(["configuration", "latency", "start", "processes", "seconds", "speed-up",
               "start-up s", "syncing s", "tail s", "syncing speed-up", "requests", "x 1 process's",
               "website syncs", "complete"], rows),
        "CPU (user + system seconds): crisp-sync per process, the fake, PostgreSQL's processes "
        "(`-` for a server not started here, whose CPU then counts among the others' when it "
        "runs on this machine); then in cores on average over the run: all "
        f"three together, the whole machine busy ({cores} cores), the rest of the machine "
        "(busy less the three: anything else that ran meanwhile) and the time the hypervisor "
        "stole.",
        table(["configuration", "start", "processes", "crisp-sync CPU s", "fake CPU s",
               "PostgreSQL CPU s", "sync cores", "busy cores", "others' cores",
               "steal cores"], cpu_rows),
    ]
    for speedup in speedups:
        per_site = f"{speedup.conversations} conversations of {speedup.messages} messages"
        goal = fleet_goal(speedup.latency_ms)
        verdict = "met" if speedup.speedup >= goal else "missed"
        text.append(
            f"*{speedup.label}* ({speedup.websites} websites of {per_site}, "
            f"{speedup.latency_ms:g} ms, {speedup.start}): {speedup.fleet.processes} processes are "
            f"{speedup.speedup:.2f}x faster than 1 (goal >= {goal:g}x: {verdict}; "
            f"{_number(speedup.syncing_speedup, 2)}x over the syncing phase), for "
            f"{speedup.request_ratio:.2f}x its requests. The sync cost "
            f"{speedup.single.cpu_s:.1f} CPU s in one process and {speedup.fleet.cpu_s:.1f} in "
            f"the fleet: spread evenly over {cores} cores, the fleet's CPU alone takes "
            f"{speedup.fleet.cpu_s / cores:.1f} s, so this machine allows at most "
            f"{speedup.cpu_ceiling:.1f}x here"
            + (" (CPU-bound: the cores, not the design, cap the speed-up)"
               if speedup.cpu_ceiling < goal * 1.25 else "")
            + f"; other programs kept {_others(speedup.fleet)} cores busy meanwhile."
            + _modelled(speedup)
        )
    return text


def _modelled(speedup: SpeedUp) -> str:
    """What the schedule model gives the configuration, as a sentence (nothing without it)."""
    found = speedup.model
    if found is None:
        return ""
    return (
        f" The schedule model (`benchmarks.fleet_model`: these runs' start-ups and tails, each "
        f"answer {speedup.latency_ms:g} ms; no CPU and no slow start) gives "
        f"{found.balanced:.2f}x with perfect "
        f"balance, {found.whole:.2f}x for whole websites on average over {found.orders} claim "
        f"orders ({found.whole_worst:.2f}x to {found.whole_best:.2f}x) and {found.helpers:.2f}x "
        "with workers that run out of websites helping with another's conversations."
    )


def _others(run: FleetRun) -> str:
    """Cores kept busy by anything but the sync, on average (never below 0: both sides are
    sampled at slightly different moments)."""
    return _number(max(0.0, (run.machine_busy_s - run.cpu_s) / run.seconds), 2)


def _cpu_list(run: FleetRun) -> str:
    return " + ".join(f"{cpu:.1f}" for cpu in run.cli_cpu_s)


def _takeover(takeover: Takeover) -> list[str]:
    ttl = takeover.ttl_s
    poll = min(WAIT_SECONDS, ttl / 3)
    low, high = 2 * ttl / 3, ttl + poll
    row = [f"{ttl:g}", f"{takeover.latency_ms:g} ms", takeover.website_id or "-",
           _number(takeover.seconds, 2), f"{low:.1f} to {high:.1f}",
           _number(takeover.b_free_s, 2), str(takeover.b_status),
           "yes" if takeover.complete else "no"]
    text = [
        "**Takeover**: two processes (`--lease-ttl "
        f"{ttl:g} -v --log-format json`) against a fake of two websites of "
        f"{takeover.conversations} conversations ({takeover.latency_ms:g} ms per request), "
        "so each worker holds one. Once worker A has logged `website.sync.started` for a "
        "website it has not ended (and B has begun its own), A gets SIGKILL; the figure runs "
        "from the kill to the `website.sync.started` of that website in B's log (same clock). "
        "A lease is renewed every third of its time to live, so at the kill it has between "
        f"2/3 of the TTL and the whole TTL left ({low:.1f} to {ttl:g} s), and a waiting worker "
        f"looks again every {poll:g} s: expected {low:.1f} to {high:.1f} s once B "
        "is free (\"B free after\": B's last website ended that long after the kill; "
        "negative: it was already waiting). Complete: B exited 0 with both websites copied.",
        table(["lease TTL s", "latency", "website", "kill to takeover s", "expected s",
               "B free after s", "B exit", "complete"], [row]),
    ]
    if takeover.note:
        text.append(f"Not measured: {takeover.note}.")
    return text


def _soak(soak: SoakResult) -> str:
    row = [
        f"{soak.seconds / 60:g} min", f"{soak.achieved_rate:.1f}", f"{soak.sent:,}",
        f"{soak.interval_s:g} s", str(soak.reconciliations), f"{soak.rss_start_mb:.1f}",
        f"{soak.rss_warm_mb:.1f}", f"{soak.rss_end_mb:.1f}", f"{soak.rss_peak_mb:.1f}",
        f"{soak.growth_mb:+.1f}", _number(soak.growth_per_hour_mb, 1),
        "yes" if soak.exact else "no", str(soak.exit_status),
    ]
    return "\n\n".join([
        "## 7. Follow soak",
        "`crisp-sync --follow` as a child process (SQLite store) against a fake Crisp in "
        f"another process serving REST and Socket.IO RTM, {soak.conversations} conversations. "
        "This process adds messages through the fake's admin helpers, one per call, "
        "round-robin: each is an RTM event the CLI applies, and every reconciliation re-reads "
        "the conversations that changed. RSS from `/proc/<pid>/status` every few seconds, in "
        f"MB (10^6 bytes); the first {WARMUP_SHARE:.0%} of the run is warm-up; growth = RSS at "
        "the end less RSS after warm-up; per hour = the least-squares slope after warm-up. "
        "Then two more reconciliations, SIGTERM, and the copy is compared with the fake's "
        "ground truth, byte for byte.",
        table(["run", "messages/s", "messages", "interval", "reconciliations", "RSS start",
               "after warm-up", "end", "peak after warm-up", "growth", "MB per hour",
               "exact copy", "exit status"], [row]),
    ])


def _floor(floor: FloorResult) -> str:
    per = 1e6 / max(1, floor.messages)
    rows = [
        [SYNC, f"{floor.sync_us_per_message:.1f}", f"{floor.sync_vs_floor:.2f}x",
         " / ".join(f"{cpu * per:.1f}" for cpu in floor.sync_cpu_s)],
        [SYNC_STDLIB, f"{floor.stdlib_us_per_message:.1f}", f"{floor.stdlib_vs_floor:.2f}x",
         " / ".join(f"{cpu * per:.1f}" for cpu in floor.stdlib_cpu_s)],
        [FLOOR, f"{floor.floor_us_per_message:.1f}", "1.00x",
         " / ".join(f"{cpu * per:.1f}" for cpu in floor.floor_cpu_s)],
    ]
    return "\n\n".join([
        "## 8. crisp-sync's CPU against the floor",
        f"A fake Crisp in its own process, {floor.conversations:,} conversations, "
        f"{floor.messages:,} messages. `crisp-sync --workers {floor.workers}` into a fresh "
        "SQLite file, and the floor (`benchmarks/floor.py`: urllib3 + json + sqlite3, "
        f"{floor.workers} threads, one connection under a lock, one transaction per "
        "conversation, no retries or checks), each copying the whole website as a child "
        "process, in alternating order; CPU = user + system time of the child (`wait4`, "
        "imports included), per message copied; the ratio is the median of the per-round "
        "ratios. crisp-sync parses and writes JSON with "
        + ("orjson (the `fast` extra" if floor.fast_json else
           "the standard library (the `fast` extra is not installed")
        + "); the second copy is crisp-sync with the standard library's JSON alone. Every "
        "copy complete: " + ("yes" if floor.complete else "**no**") + ".",
        table(["copy", "CPU µs per message (median)", "vs the floor", "rounds"], rows),
        "**Incremental runs**: crisp-sync again on its copy with the checkpoint cleared (every "
        "conversation listed again, found unchanged), the floor listing every conversation and "
        "nothing else, then crisp-sync as it left it (nothing new), "
        f"{INCREMENTAL_SAMPLES} such triples a round; crisp-sync's CPU is its `main`'s "
        "(imports left out), the floor's its listing loop's. "
        f"{_number(floor.unchanged_us, 1)} µs of CPU per unchanged conversation (the "
        "difference of the two runs, per conversation; median), against "
        f"{_number(floor.listing_entry_us, 1)} µs per listing entry (median): the median of "
        f"the triples' ratios is {_number(floor.unchanged_vs_entry, 2)}x. CPU s per run, "
        "relisted / quiet (each round's triple of median ratio): "
        + ", ".join(f"{again:.3f} / {quiet:.3f}"
                    for again, quiet in zip(floor.relisted_cpu_s, floor.quiet_cpu_s,
                                            strict=True)) + ".",
    ])


def _dlt(result: DltResult) -> str:
    rows = [[f"{run.contender}, {run.run}", f"{run.requests:,}", f"{run.wall_s:.2f}",
             f"{run.cpu_s:.2f}", "yes" if run.complete else "**no**"] for run in result.runs]
    return "\n\n".join([
        "## 9. The dlt source against crisp-sync",
        f"A fake Crisp in its own process, {result.conversations:,} conversations, "
        f"{result.messages:,} messages, {result.latency_ms:g} ms per answer. `crisp-sync "
        f"--workers {result.workers}` into a fresh SQLite file and `crisp_api.dlt.crisp_source` "
        f"(`workers={result.workers}`) in a dlt pipeline into a fresh DuckDB file "
        "(`benchmarks/dlt_child.py`) copy the website, then run again after "
        f"{result.touched} conversations got a new message; each run a child process, CPU = "
        "user + system time (`wait4`, imports included).",
        table(["run", "requests", "wall s", "CPU s", "exact"], rows),
    ])
