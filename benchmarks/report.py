"""The markdown report (``results.md``): machine, targets, then one table per section."""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks import contenders, original
from benchmarks.cpu import CpuResult
from benchmarks.follow import FollowResult
from benchmarks.memory import MemoryResult
from benchmarks.rate_limit import ADAPTIVE, CONFIGURED, ChangingLimit, RateRun
from benchmarks.results import Results
from benchmarks.targets import Check
from benchmarks.throughput import SyncResult


def render(results: Results, checks: Sequence[Check]) -> str:
    """The whole report."""
    parts = [_header(results), _machine(results.machine), _targets(checks)]
    if results.cpu is not None:
        parts.append(_cpu(results.cpu))
    if results.sync is not None:
        parts.append(_sync(results.sync))
    if results.rate_limit or results.changing_limit is not None:
        parts.append(_rate(results.rate_limit, results.changing_limit))
    if results.memory is not None:
        parts.append(_memory(results.memory))
    if results.follow is not None:
        parts.append(_follow(results.follow))
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
        "requests per contender after a warm-up, the contenders' order rotating each round. "
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
            f"(`benchmarks/{original.VENV.name}/`), timed the same way."
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
    return [
        "### An unknown limit that changes",
        f"A default client (`cache_ttl=0`, a pool of {changing.threads}), {changing.threads} "
        "threads calling `website.get_conversation` as fast as they can, against a fake whose "
        f"bucket (burst {changing.server_burst}) allows the first rate, then the next, and "
        "answers the excess 429 *without* `Retry-After`, as Crisp documents none: the client "
        "is told no rate and has only the 429s to learn from. Each phase's figures are its "
        f"steady state: the first {settle:g} s after the limit changes, while the client "
        "finds it, are left out. Achieved = successful answers/s; 429 share = attempts "
        "(retries included) answered 429; failed calls = calls that ran out of retries "
        "(`RouteError`), over the whole phase. The last row is the whole run, transitions "
        f"included ({changing.attempts:,} attempts).",
        table(["phase", "allowed", "seconds", "achieved req/s (steady)",
               "of allowed (steady)", "429 share (steady)", "failed calls"], rows),
    ]


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
    latency, drops, quiet = follow.latency, follow.drops, follow.quiet
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
    ])
