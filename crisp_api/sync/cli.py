"""``crisp-sync``: mirror Crisp conversations and messages into SQLite or PostgreSQL.

A thin shell: the command line, the environment and the optional TOML file
(`crisp_api.sync.config`) become one `SyncSettings` (`crisp_api.sync.settings`); the run
is one of `--status` (here), the demo (`crisp_api.sync.demo`), a one-shot run
(`crisp_api.sync.run`) or a service (`crisp_api.sync.follow.run_follow`); what ends it maps
to its exit status in one table (`crisp_api.sync.exits`). With ``--all-websites`` on
PostgreSQL, workers started on several machines share the websites through leases in the
database (`crisp_api.sync.fleet`).
SIGTERM, SIGINT and SIGHUP stop it in every phase (`crisp_api.sync.signals`): a one-shot run
ends incomplete (130), a service as asked (0).
"""

from __future__ import annotations

# First: structlog without the console extras crisp-sync never uses (see the module).
from crisp_api.sync import plain_structlog  # noqa: F401

# isort: split

import argparse
import gc
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TextIO

from crisp_api import defaults
from crisp_api._version import __version__
from crisp_api.sync.allowance import status_ledger
from crisp_api.sync.config import (
    DAILY_QUOTA_ENV,
    ENVIRONMENT,
    HOOKS_SECRET_ENV,
    PRECEDENCE_HELP,
    Config,
    read_config,
)
from crisp_api.sync.engine import DEFAULT_PEOPLE_INTERVAL
from crisp_api.sync.exits import (
    EXIT_CODES,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    NOT_STARTED,
    UsageError,
    ended,
    fail,
)
from crisp_api.sync.export import main as export_main
from crisp_api.sync.health import DEFAULT_HEALTH_THRESHOLD
from crisp_api.sync.logs import FORMATS, LEVELS, configure, level_from, outcome
from crisp_api.sync.postgres_leases import DEFAULT_LEASE_TTL
from crisp_api.sync.report import status_table
from crisp_api.sync.run import build_client, open_store, run_once
from crisp_api.sync.settings import (
    DB_ENV,
    DEFAULT_INTERVAL,
    SyncSettings,
    duration,
    port,
    positive_int,
    rate_limit,
    share,
)
from crisp_api.sync.signals import GRACE, Stop, stop_on_signals
from crisp_api.sync.store import StoreError

SIGNALS_HELP = (
    "SIGTERM, SIGINT and SIGHUP stop crisp-sync in every phase: no new conversation is "
    "started, those in flight are committed, the checkpoint moves only if the run was "
    f"complete; whatever is still in flight {GRACE:g} s after the signal (or at a second "
    "signal) is abandoned. A one-shot run stopped so ends with status 130, a --follow "
    "service with 0. Logs go to stderr: SIGHUP has nothing to reopen and stops, like SIGTERM."
)
"""What the signals do (shown by ``--help``)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line; its help lists the environment, the exit statuses and the signals."""
    parser = argparse.ArgumentParser(
        prog="crisp-sync",
        description="Mirror Crisp conversations, messages, people and operators into SQLite "
        "(one machine) or PostgreSQL (a fleet of workers sharing the websites). "
        "'crisp-sync export --help': write the mirror's views to CSV or Parquet files.",
        epilog="configuration:\n"
        + "\n".join(textwrap.wrap(PRECEDENCE_HELP, 88, initial_indent="  ",
                                   subsequent_indent="  "))
        + "\n\nenvironment:\n"
        + "\n".join(f"  {name:<18} {meaning}" for name, meaning in ENVIRONMENT.items())
        + "\n\nexit status:\n"
        + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
        + "\n\nsignals:\n"
        + "\n".join(textwrap.wrap(SIGNALS_HELP, 88, initial_indent="  ",
                                   subsequent_indent="  ")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config", metavar="PATH",
        help="read settings from this TOML file (flags and the environment win over it)",
    )
    parser.add_argument("--website-id", help="the website to sync")
    parser.add_argument(
        "--db",
        help="SQLite database file (default crisp.sqlite3), or a PostgreSQL URL "
        "postgresql://user:password@host:port/dbname (shared by a fleet of workers)",
    )
    parser.add_argument("--rest-host", help="API host (default $CRISP_REST_HOST or Crisp's)")
    parser.add_argument("--workers", type=int, default=8, help="parallel fetchers (default 8)")
    parser.add_argument(
        "--all-websites",
        action="store_true",
        help="sync every website the plugin token is connected to",
    )
    parser.add_argument("--shard", help="with --all-websites: take the i-th of N slices (i/N)")
    parser.add_argument(
        "--lease-ttl",
        type=duration,
        default=None,
        metavar="DURATION",
        help="with a PostgreSQL --db: how long a website stays held by a worker that stopped "
        f"renewing its lease (died) before another takes it over (default {DEFAULT_LEASE_TTL:g}s)",
    )
    parser.add_argument("--redis-url", help="share the rate limit through Redis")
    parser.add_argument(
        "--rate-limit",
        type=rate_limit,
        default=defaults.ADAPTIVE,
        metavar="RATE",
        help="requests per second of our own, or 'adaptive' (the default): a rate learnt "
        "from Crisp's 429/420 answers",
    )
    quota = parser.add_argument_group(
        "daily quota (a plugin token's: 5,000 requests a day unless raised for the plugin)"
    )
    quota.add_argument(
        "--daily-quota",
        type=positive_int,
        metavar="N",
        help=f"requests the token may send per day (default ${DAILY_QUOTA_ENV}, else "
        "unknown: the quota is then known spent from Crisp's refusals)",
    )
    quota.add_argument(
        "--quota-reserve",
        type=share,
        default=defaults.QUOTA_RESERVE,
        metavar="SHARE",
        help="with a known quota: the share never spent by a run, kept for live work and the "
        "token's other users (e.g. 10%% or 0.1; default 10%%)",
    )
    quota.add_argument(
        "--quota-reset",
        type=duration,
        default=defaults.QUOTA_RESET,
        metavar="DURATION",
        help="when the quota resets, after UTC midnight (e.g. 6h; default 0: midnight UTC, "
        "assumed since Crisp does not document it)",
    )
    quota.add_argument(
        "--quota-spent-after",
        type=duration,
        default=defaults.QUOTA_SPENT_AFTER,
        metavar="DURATION",
        help="how long refusals, with nothing answered between them, must last before "
        f"the quota is taken as spent (default {defaults.QUOTA_SPENT_AFTER:g}s; shorter "
        "tells sooner, from tighter rate limits only)",
    )
    parser.add_argument(
        "--people-interval",
        type=duration,
        default=DEFAULT_PEOPLE_INTERVAL,
        metavar="DURATION",
        help="list every people profile again only after this long (e.g. 30m, 24h; default "
        "24h; 0 = every run): Crisp cannot list only the profiles that changed",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="sync a seeded local fake Crisp (no account needed), then an incremental run",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--status",
        action="store_true",
        help="print what the database holds of each website (checkpoint, people listed, "
        "rows quarantined) and exit: no request, no credentials needed",
    )
    service = parser.add_argument_group("follow mode (a long-running service)")
    service.add_argument(
        "--follow",
        action="store_true",
        help="after the first run, apply Crisp's live events as they come and reconcile "
        "every --interval, until SIGTERM, SIGINT or SIGHUP (exit 0)",
    )
    service.add_argument(
        "--interval",
        type=duration,
        default=DEFAULT_INTERVAL,
        metavar="DURATION",
        help="with --follow: time between reconciliation runs (default 5m)",
    )
    service.add_argument(
        "--hooks-port",
        type=port,
        metavar="PORT",
        help="with --follow: also take Crisp's web hooks on this port, verified with "
        f"${HOOKS_SECRET_ENV}",
    )
    service.add_argument(
        "--metrics-port",
        type=port,
        metavar="PORT",
        help="with --follow: serve Prometheus /metrics and /healthz on this port",
    )
    service.add_argument(
        "--bind", default="0.0.0.0", metavar="ADDRESS",  # noqa: S104 - a service's ports
        help="address the hooks and metrics ports listen on (default 0.0.0.0)",
    )
    service.add_argument(
        "--health-threshold",
        type=duration,
        default=DEFAULT_HEALTH_THRESHOLD,
        metavar="DURATION",
        help="/healthz fails (503) once reconciliation, or the database, has failed this "
        "long; live events away only degrade it (default 15m)",
    )
    logs = parser.add_argument_group("logs (structlog, on stderr)")
    logs.add_argument("-v", "--verbose", action="count", default=0,
                      help="more logs: -v info, -vv debug (default: warnings)")
    logs.add_argument("--log-level", choices=sorted(LEVELS), help="overrides -v")
    logs.add_argument("--log-format", choices=FORMATS, default="console",
                      help="console lines (default) or one JSON object per line")
    return parser


YOUNG_OBJECTS = 20_000
"""Container objects allocated between two collections of the youngest generation (Python's
default is 700): see `tune_collector`."""


def tune_collector() -> None:
    """Set the garbage collector for a sync, the process being crisp-sync's own.

    What exists once the modules are loaded (some 40,000 objects) lives as long as the
    process: frozen (`gc.freeze`), a full collection walks only what the run makes (a
    fifth of the CPU of relisting unchanged conversations went to walking them). A listing
    page parses into some 2,500 containers that live until the page is handled: at Python's
    default of a collection every 700 allocations, each page was walked several times
    mid-parse and promoted towards the old generation, about 5% of a relisting's CPU
    (1.3 µs an unchanged conversation). `YOUNG_OBJECTS` lets a page die young. The data of
    a sync holds no reference cycles, so garbage is not kept longer: only the rare cycles
    (an exception and its traceback) wait up to that many allocations."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, oldest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``crisp-sync``; returns the exit status."""
    given = sys.argv[1:] if argv is None else list(argv)
    if given[:1] == ["export"]:  # its own command line (crisp_api.sync.export)
        return export_main(given[1:])
    try:
        try:
            config = read_config(build_parser(), argv, os.environ)
        except UsageError as exc:
            return ended(exc)
        args = config.args
        tune_collector()
        stop = Stop()
        with stop_on_signals(stop, lambda name: _abandon(args.follow, name)):
            status = _main(config, stop, sys.stdout)
            if stop.signal_name is not None and status in (EXIT_OK, EXIT_INTERRUPTED):
                status = _stopped_by(args.follow, stop.signal_name)
            return status
    except BrokenPipeError:
        # The reader went away (crisp-sync | head): nothing more to say, and no traceback
        # when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INCOMPLETE


def _main(config: Config, stop: Stop, out: TextIO) -> int:
    """The run, once the signals are handled: each phase ends early once ``stop`` is set
    (the run then answers `EXIT_INTERRUPTED`, which `main` turns into what a stop means)."""
    args = config.args
    try:
        log = configure(level_from(args.verbose, args.log_level), args.log_format)
        for warning in config.warnings:
            log.warning("config.warning", warning=warning)
        settings = SyncSettings.parse(config)
        if settings.status:
            return _status(settings, out)
        # The demo's and follow mode's modules (the fake Crisp; events, the HTTP server) load
        # for them alone: a one-shot run starts without them.
        if settings.demo:
            from crisp_api.sync.demo import run_demo  # noqa: PLC0415

            return run_demo(settings, stop, out=out)
        status: int | None = None
        with (open_store(settings, began=lambda: status not in NOT_STARTED) as store,
              build_client(settings) as client):
            if settings.follow:
                from crisp_api.sync.follow import run_follow  # noqa: PLC0415

                status = run_follow(settings, client, store, stop, out=out)
            else:
                status = run_once(settings, client, store, stop, out=out)
        return status
    except (UsageError, StoreError) as exc:
        return ended(exc)


def _stopped_by(follows: bool, name: str, abandoned: str = "") -> int:
    """Say that signal ``name`` stopped the run; its exit status: a service (``follows``)
    stopped as asked (0), a one-shot run incomplete (`EXIT_INTERRUPTED`)."""
    if follows:
        reason = f"stopped by {name}{abandoned}"
        outcome("sync.stopped", f"crisp-sync: {reason}", level="warning", reason=reason,
                signal=name, exit_status=EXIT_OK)
        return EXIT_OK
    return fail(f"interrupted by {name}{abandoned}; committed work is kept, rerun to finish",
                EXIT_INTERRUPTED, signal=name)


def _abandon(follows: bool, name: str) -> None:
    """The run did not end within `GRACE` seconds of the signal (or a second one came): a
    database or a request that does not answer holds it. End the process now, as the stop
    would have ended it; what was in flight is abandoned, nothing half-written."""
    status = _stopped_by(follows, name, f" (what was still in flight after {GRACE:g} s is "
                                        "abandoned)")
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _status(settings: SyncSettings, out: TextIO) -> int:
    """``--status``: what the database holds of each website (and the ledger of the
    credential its last complete run used), read without a request."""
    if not settings.postgres and not Path(settings.db or "").exists():  # opening creates it
        raise UsageError(f"no database at {settings.db} (give --db or ${DB_ENV})")
    with open_store(settings) as store:
        now = time.time()
        rows = [
            (status, None if status.credential is None
             else status_ledger(store, status.credential, now))
            for status in store.statuses()
        ]
    print(status_table(rows), file=out)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
