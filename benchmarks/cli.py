"""The command line: pick a preset and sections, run them, write and print the report."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import (
    cpu,
    dlt_source,
    fleet,
    follow,
    machine,
    memory,
    plot,
    quota_days,
    rate_limit,
    report,
    soak,
    sync_cpu,
    targets,
    throughput,
)
from benchmarks.config import FULL, QUICK, SECTIONS, Config
from benchmarks.results import Results


def build_parser() -> argparse.ArgumentParser:
    """The options; every size has a default from the preset (full, or ``--quick``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure crisp-api against bare urllib3, httpx and the original client "
        "(a fake Crisp server in another process), print a markdown report and write it, "
        "its raw figures and a plot to benchmarks/results/ (--quick: .../results/quick/).",
    )
    parser.add_argument("--quick", action="store_true",
                        help="a short run (a few minutes) with fewer rounds and requests")
    parser.add_argument("--sections", type=_sections, default=None,
                        help=f"comma-separated, from {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--no-original", action="store_true",
                        help="leave out the original client (no virtual environment is made)")
    parser.add_argument("--output", type=Path, default=None, help="where to write the results")
    parser.add_argument("--postgres-url", type=_postgres_url, default=None,
                        help="fleet: a PostgreSQL server to create (and drop) the section's "
                        "databases on, as postgresql://user:password@host:port/dbname of a "
                        "database we may connect to (default: a private server, if PostgreSQL "
                        "is installed)")
    sizes = parser.add_argument_group("sizes (each overrides the preset)")
    sizes.add_argument("--rounds", type=int, help="CPU: interleaved rounds")
    sizes.add_argument("--batch", type=int, help="CPU: requests per contender per round")
    sizes.add_argument("--warmup", type=int, help="CPU: warm-up requests per contender")
    sizes.add_argument("--sync-conversations", type=int, help="sync: conversations in the fake")
    sizes.add_argument("--sync-workers", type=_integers, help="sync: e.g. 1,4,16,32")
    sizes.add_argument("--sync-latencies", type=_numbers, dest="sync_latencies_ms",
                       help="sync: added latencies in ms, e.g. 0,50")
    sizes.add_argument("--sync-seconds", type=float, help="sync: time box per configuration")
    sizes.add_argument("--rate", type=float, help="rate limit: R, requests/s")
    sizes.add_argument("--rate-burst", type=int, help="rate limit: the server's burst")
    sizes.add_argument("--rate-conversations", type=int,
                       help="rate limit: conversations synced by the configured client")
    sizes.add_argument("--default-conversations", type=int,
                       help="rate limit: conversations synced by the default (adaptive) "
                       "client (0 leaves that run out)")
    sizes.add_argument("--changing-rates", type=_numbers,
                       help="rate limit: the unknown limit's phases in requests/s, e.g. 40,20")
    sizes.add_argument("--changing-seconds", type=float,
                       help="rate limit: seconds per phase of the unknown limit "
                       "(0 leaves that run out)")
    sizes.add_argument("--retry-after-calls", type=int,
                       help="rate limit: calls against incidental 429s, then a real limit, "
                       "both with Retry-After (0 leaves them out)")
    sizes.add_argument("--retry-after-limit", type=float,
                       help="rate limit: the real limit of those calls, requests/s")
    sizes.add_argument("--spent-quota", type=int,
                       help="rate limit: a daily quota that runs out, requests (0 leaves "
                       "it out)")
    sizes.add_argument("--quota-days-conversations", type=int,
                       help="rate limit: conversations crisp-sync copies over several days "
                       "of a daily quota (0 leaves it out)")
    sizes.add_argument("--memory-requests", type=int, help="memory: requests in the client")
    sizes.add_argument("--follow-conversations", type=int,
                       help="follow: conversations in the fake")
    sizes.add_argument("--follow-rate", type=float, help="follow: messages/s for the latency")
    sizes.add_argument("--follow-seconds", type=float, help="follow: seconds of messages")
    sizes.add_argument("--drop-seconds", type=float, help="follow: seconds of socket drops")
    sizes.add_argument("--drop-every", type=float, help="follow: seconds between drops")
    sizes.add_argument("--drop-interval", type=float,
                       help="follow: reconciliation interval during the drops, s")
    sizes.add_argument("--quiet-seconds", type=float, help="follow: the quiet period, s")
    sizes.add_argument("--quiet-interval", type=float,
                       help="follow: reconciliation interval while quiet, s")
    sizes.add_argument("--repair-touched", type=int,
                       help="follow: conversations touched by live events per kind of touch")
    sizes.add_argument("--repair-interval", type=float,
                       help="follow: reconciliation interval while repairing, s")
    sizes.add_argument("--store-conversations", type=int,
                       help="fleet: conversations saved into each store")
    sizes.add_argument("--store-messages", type=int, help="fleet: messages per conversation")
    sizes.add_argument("--store-threads", type=int, help="fleet: threads saving them")
    sizes.add_argument("--store-rounds", type=int,
                       help="fleet: rounds of store throughput, on fresh stores")
    sizes.add_argument("--fleet-websites", type=int, help="fleet: websites in the fake")
    sizes.add_argument("--fleet-processes", type=int,
                       help="fleet: crisp-sync processes against one")
    sizes.add_argument("--fleet-latency", type=float, dest="fleet_latency_ms",
                       help="fleet: added latency in ms (the takeover's too)")
    sizes.add_argument("--fleet-conversations", type=int,
                       help="fleet: conversations per website")
    sizes.add_argument("--fleet-messages", type=int,
                       help="fleet: messages per conversation")
    sizes.add_argument("--fleet-slow-latency", type=float, dest="fleet_slow_latency_ms",
                       help="fleet: the latency-dominated run's latency in ms (0 leaves it out)")
    sizes.add_argument("--fleet-slow-conversations", type=int,
                       help="fleet: conversations per website of the latency-dominated run")
    sizes.add_argument("--fleet-slow-messages", type=int,
                       help="fleet: messages per conversation of the latency-dominated run")
    sizes.add_argument("--lease-ttl", type=float, dest="fleet_lease_ttl",
                       help="fleet: the takeover's --lease-ttl, s (at least 3)")
    sizes.add_argument("--takeover-conversations", type=int,
                       help="fleet: conversations per website of the takeover's two")
    sizes.add_argument("--soak-seconds", type=float,
                       help="soak: seconds of messages (default 300; 1800 for the 30-minute "
                       "soak)")
    sizes.add_argument("--soak-rate", type=float, help="soak: messages (RTM events) per second")
    sizes.add_argument("--soak-interval", type=float,
                       help="soak: crisp-sync's reconciliation interval, s")
    sizes.add_argument("--soak-conversations", type=int, help="soak: conversations in the fake")
    sizes.add_argument("--floor-conversations", type=int,
                       help="floor: conversations in the fake (about 30 messages each)")
    sizes.add_argument("--floor-rounds", type=int, help="floor: rounds of both copies")
    sizes.add_argument("--dlt-conversations", type=int, help="dlt: conversations in the fake")
    sizes.add_argument("--dlt-latency", type=float, dest="dlt_latency_ms",
                       help="dlt: the fake's latency per answer, ms")
    sizes.add_argument("--dlt-touched", type=int,
                       help="dlt: conversations given a message before the incremental runs")
    return parser


def configure(args: argparse.Namespace) -> Config:
    """The preset with the options given on the command line."""
    preset = QUICK if args.quick else FULL
    names = {field.name for field in dataclasses.fields(Config)}
    changes = {name: value for name, value in vars(args).items()
               if name in names and value is not None}
    if args.no_original:
        changes["original"] = False
    return dataclasses.replace(preset, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; 0 whatever the targets say (they are reported, not enforced)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    config = configure(build_parser().parse_args(arguments))
    # The figures are those of the in-process defaults, whatever this shell shares via Redis.
    os.environ.pop("CRISP_REDIS_URL", None)
    results = Results(
        config=config,
        machine=machine.describe(),
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join(["python -m benchmarks", *map(_redacted, arguments)]),
    )
    started = time.monotonic()
    if "cpu" in config.sections:
        results.cpu = cpu.run(config)
    if "sync" in config.sections:
        results.sync = throughput.run(config)
    if "ratelimit" in config.sections:
        results.rate_limit = rate_limit.run(config)
        results.changing_limit = rate_limit.changing(config)
        results.retry_after = rate_limit.retry_after(config)
        results.quota_spent = rate_limit.quota_spent(config)
        results.quota_days = quota_days.run(config)
    if "memory" in config.sections:
        results.memory = memory.run(config)
    if "follow" in config.sections:
        results.follow = follow.run(config)
    if "fleet" in config.sections:
        results.fleet = fleet.run(config)
    if "soak" in config.sections:
        results.soak = soak.run(config)
    if "floor" in config.sections:
        results.floor = sync_cpu.run(config)
    if "dlt" in config.sections:
        results.dlt = dlt_source.run(config)
    results.seconds = time.monotonic() - started
    text = report.render(results, targets.evaluate(results))
    config.output.mkdir(parents=True, exist_ok=True)
    (config.output / "results.md").write_text(text, encoding="utf-8")
    (config.output / "results.json").write_text(results.to_json(), encoding="utf-8")
    plot.draw(results, config.output / "plot.png")
    print(text)
    print(f"benchmarks: wrote results.md, results.json and plot.png to {config.output}",
          file=sys.stderr)
    return 0


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(SECTIONS)}"
        )
    return chosen


def _integers(text: str) -> tuple[int, ...]:
    return tuple(int(item) for item in text.split(",") if item.strip())


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(item) for item in text.split(",") if item.strip())


def _postgres_url(text: str) -> str:
    if not text.startswith(fleet.SCHEMES):
        raise argparse.ArgumentTypeError(
            "a URL such as postgresql://user:password@host:5432/postgres"
        )
    return text


def _redacted(argument: str) -> str:
    """An argument as the report shows it: a PostgreSQL URL without its password."""
    if argument.startswith(fleet.SCHEMES):
        return fleet.redact(argument)
    name, equals, value = argument.partition("=")
    if equals and value.startswith(fleet.SCHEMES):
        return f"{name}={fleet.redact(value)}"
    return argument
