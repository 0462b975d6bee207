"""``crisp-sync``: mirror Crisp conversations and messages into SQLite or PostgreSQL.

With ``--all-websites`` on PostgreSQL, workers started on several machines share the websites
through leases in the database (`fleet`).

Every way a run can end has its exit status and a one-line reason on stderr (`EXIT_CODES`);
only 0 means the copy is complete, and only 1 asks for a plain rerun. SIGTERM, SIGINT and SIGHUP
stop it in every phase (`signals`): a one-shot run ends incomplete (130), a service as asked (0).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from crisp_api import defaults
from crisp_api.client import Crisp
from crisp_api.errors import (
    ForbiddenError,
    NetworkError,
    NotFoundError,
    QuotaExceededError,
    QuotaSpentError,
    RateLimitedError,
    RouteError,
    UnauthorizedError,
)
from crisp_api.extras import install_hint, installed
from crisp_api.pagination import paginate
from crisp_api.sync import fleet, progress, sharding
from crisp_api.sync.allowance import (
    Allowance,
    AllowanceStore,
    confirm_spent,
    status_ledger,
    utc,
)
from crisp_api.sync.engine import (
    DEFAULT_PEOPLE_INTERVAL,
    StopSignal,
    SyncReport,
    describe,
    sync_website,
)
from crisp_api.sync.event_applier import EventApplier
from crisp_api.sync.follow import (
    DEFAULT_HEALTH_THRESHOLD,
    DEFAULT_INTERVAL,
    Follower,
    Health,
    dependency_probes,
    open_events,
)
from crisp_api.sync.logs import FORMATS, LEVELS, configure, level_from, outcome
from crisp_api.sync.metrics import RequestCounter, install
from crisp_api.sync.postgres_leases import DEFAULT_LEASE_TTL, MIN_LEASE_TTL
from crisp_api.sync.recheck import recheck_website
from crisp_api.sync.report import status_table, summary, summary_fields
from crisp_api.sync.signals import GRACE, Stop, stop_on_signals
from crisp_api.sync.sqlite_store import SQLiteStore
from crisp_api.sync.store import Store, StoreError, WebsiteLockedError

if TYPE_CHECKING:
    from crisp_api.sync.monitoring import Metrics
    from crisp_api.sync.postgres_leases import Leases
    from crisp_api.sync.postgres_store import PostgresStore

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
EXIT_STORE, EXIT_LOCKED, EXIT_QUOTA, EXIT_INTERRUPTED = 5, 6, 7, 130
EXIT_CODES = {
    EXIT_OK: "the copy is complete",
    EXIT_INCOMPLETE: "something is left to do (a conversation or the network failed): rerun",
    EXIT_USAGE: "bad arguments or configuration, or a website or API host that does not exist",
    EXIT_AUTH: "the credentials were refused, or the token may not do this",
    EXIT_UNREACHABLE: "the API cannot be reached",
    EXIT_STORE: "the database cannot be used (read-only, disk full, not a database; "
    "PostgreSQL: credentials refused or no such database)",
    EXIT_LOCKED: "another run is syncing the same website into the same database",
    EXIT_QUOTA: "Crisp's daily request quota is spent: progress is kept; run again after the "
    "time given (the next reset)",
    EXIT_INTERRUPTED: "interrupted (SIGTERM, SIGINT or SIGHUP); committed work is kept",
}
"""What each exit status means (listed by ``--help``)."""
DB_ENV = "CRISP_SYNC_DB"
DEFAULT_DB = "crisp.sqlite3"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
HOOKS_SECRET_ENV = "CRISP_HOOKS_SECRET"  # noqa: S105 - the name of a variable, not a secret
DAILY_QUOTA_ENV = "CRISP_DAILY_QUOTA"
ENVIRONMENT = {
    "CRISP_IDENTIFIER": "token identifier (required)",
    "CRISP_KEY": "token key (required)",
    "CRISP_TIER": "token tier: plugin (default), website or user",
    "CRISP_REST_HOST": "API host, if not --rest-host",
    defaults.REDIS_URL_ENV: "Redis URL, if not --redis-url",
    DB_ENV: "the database (file or PostgreSQL URL), if not --db",
    DAILY_QUOTA_ENV: "the token's daily request quota, if not --daily-quota",
    HOOKS_SECRET_ENV: "web hooks secret (with --hooks-port)",
}
"""The environment variables read (listed by ``--help``)."""
SIGNALS_HELP = (
    "SIGTERM, SIGINT and SIGHUP stop crisp-sync in every phase: no new conversation is "
    "started, those in flight are committed, the checkpoint moves only if the run was "
    f"complete; whatever is still in flight {GRACE:g} s after the signal (or at a second "
    "signal) is abandoned. A one-shot run stopped so ends with status 130, a --follow "
    "service with 0. Logs go to stderr: SIGHUP has nothing to reopen and stops, like SIGTERM."
)
"""What the signals do (shown by ``--help``)."""
DEMO_DB = "crisp-demo.sqlite3"
DEMO_CONVERSATIONS = 500


@dataclass(frozen=True)
class Target:
    """Where and as whom to sync."""

    rest_host: str | None
    identifier: str
    key: str
    tier: str


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring for exit statuses)."""
    parser = argparse.ArgumentParser(
        prog="crisp-sync",
        description="Mirror Crisp conversations, messages, people and operators into SQLite "
        "(one machine) or PostgreSQL (a fleet of workers sharing the websites).",
        epilog="environment:\n"
        + "\n".join(f"  {name:<18} {meaning}" for name, meaning in ENVIRONMENT.items())
        + "\n\nexit status:\n"
        + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
        + "\n\nsignals:\n"
        + "\n".join(textwrap.wrap(SIGNALS_HELP, 88, initial_indent="  ",
                                   subsequent_indent="  ")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        type=_duration,
        default=None,
        metavar="DURATION",
        help="with a PostgreSQL --db: how long a website stays held by a worker that stopped "
        f"renewing its lease (died) before another takes it over (default {DEFAULT_LEASE_TTL:g}s)",
    )
    parser.add_argument("--redis-url", help="share the rate limit through Redis")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
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
        type=_positive_int,
        metavar="N",
        help=f"requests the token may send per day (default ${DAILY_QUOTA_ENV}, else "
        "unknown: the quota is then known spent from Crisp's refusals)",
    )
    quota.add_argument(
        "--quota-reserve",
        type=_share,
        default=defaults.QUOTA_RESERVE,
        metavar="SHARE",
        help="with a known quota: the share never spent by a run, kept for live work and the "
        "token's other users (e.g. 10%% or 0.1; default 10%%)",
    )
    quota.add_argument(
        "--quota-reset",
        type=_duration,
        default=defaults.QUOTA_RESET,
        metavar="DURATION",
        help="when the quota resets, after UTC midnight (e.g. 6h; default 0: midnight UTC, "
        "assumed since Crisp does not document it)",
    )
    parser.add_argument(
        "--people-interval",
        type=_duration,
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
        type=_duration,
        default=DEFAULT_INTERVAL,
        metavar="DURATION",
        help="with --follow: time between reconciliation runs (default 5m)",
    )
    service.add_argument(
        "--hooks-port",
        type=_port,
        metavar="PORT",
        help="with --follow: also take Crisp's web hooks on this port, verified with "
        f"${HOOKS_SECRET_ENV}",
    )
    service.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="with --follow: serve Prometheus /metrics and /healthz on this port",
    )
    service.add_argument(
        "--bind", default="0.0.0.0", metavar="ADDRESS",  # noqa: S104 - a service's ports
        help="address the hooks and metrics ports listen on (default 0.0.0.0)",
    )
    service.add_argument(
        "--health-threshold",
        type=_duration,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``crisp-sync``; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        stop = Stop()
        with stop_on_signals(stop, lambda name: _abandon(args, name)):
            status = _main(args, stop)
            if stop.signal_name is not None and status in (EXIT_OK, EXIT_INTERRUPTED):
                status = _stopped_by(args, stop.signal_name)
            return status
    except BrokenPipeError:
        # The reader went away (crisp-sync | head): nothing more to say, and no traceback
        # when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INCOMPLETE


def _main(args: argparse.Namespace, stop: Stop) -> int:
    """The run, once the signals are handled: each phase ends early once ``stop`` is set
    (`_run` then answers `EXIT_INTERRUPTED`, which `main` turns into what a stop means)."""
    try:
        args.logger = configure(level_from(args.verbose, args.log_level), args.log_format)
        _check(args)
        if args.status:
            return _status(args, sys.stdout)
        if args.demo:
            return _demo(args, stop)
        _choose_database(args)
        _check_extras(args)
        target = _target_from_environment(args)
        if _is_postgres(args.db):
            with _postgres_store(args) as store:
                return (_follow if args.follow else _run)(args, target, store, sys.stdout, stop)
        path = Path(args.db)
        existed = path.exists()
        with SQLiteStore(path) as sqlite:
            status = (_follow if args.follow else _run)(args, target, sqlite, sys.stdout, stop)
            empty = not existed and sqlite.is_empty()
        if empty and status in (EXIT_USAGE, EXIT_AUTH, EXIT_UNREACHABLE):
            _remove_database(path)  # a run that could not start leaves no empty file behind
        return status
    except _UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        return _store_failed(exc)


def _stopped_by(args: argparse.Namespace, name: str, abandoned: str = "") -> int:
    """Say that signal ``name`` stopped the run; its exit status: a service stopped as asked
    (0), a one-shot run incomplete (`EXIT_INTERRUPTED`)."""
    if args.follow:
        reason = f"stopped by {name}{abandoned}"
        outcome("sync.stopped", f"crisp-sync: {reason}", level="warning", reason=reason,
                signal=name, exit_status=EXIT_OK)
        return EXIT_OK
    return _fail(f"interrupted by {name}{abandoned}; committed work is kept, rerun to finish",
                 EXIT_INTERRUPTED, signal=name)


def _abandon(args: argparse.Namespace, name: str) -> None:
    """The run did not end within `GRACE` seconds of the signal (or a second one came): a
    database or a request that does not answer holds it. End the process now, as the stop
    would have ended it; what was in flight is abandoned, nothing half-written."""
    status = _stopped_by(args, name, f" (what was still in flight after {GRACE:g} s is "
                                     "abandoned)")
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _remove_database(path: Path) -> None:
    for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        part.unlink(missing_ok=True)


class _UsageError(Exception):
    """Bad arguments or configuration: reported in one line, exit status 2."""


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``1d`` (argparse type)."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    try:
        seconds = float(value[: len(value) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 24h)") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"a duration must be >= 0, got {text!r}")
    return seconds


def _check(args: argparse.Namespace) -> None:
    if args.status:
        if args.demo or args.follow:
            raise _UsageError("--status only reads the database: drop --demo and --follow")
        return
    if args.workers < 1 or args.workers > 256:
        raise _UsageError(f"--workers must be between 1 and 256, got {args.workers}")
    if not args.demo and not args.all_websites and not args.website_id:
        raise _UsageError("give --website-id, --all-websites or --demo")
    if args.website_id and args.all_websites:
        raise _UsageError("--website-id and --all-websites exclude each other")
    if args.shard and not args.all_websites:
        raise _UsageError("--shard goes with --all-websites")
    if args.shard:
        try:
            sharding.parse_shard(args.shard)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
    if not args.follow:
        for given, flag in ((args.hooks_port, "--hooks-port"),
                            (args.metrics_port, "--metrics-port")):
            if given:
                raise _UsageError(f"{flag} goes with --follow")
    if args.follow and not args.interval > 0:
        raise _UsageError("--interval must be longer than 0 with --follow")
    if args.daily_quota is None and os.environ.get(DAILY_QUOTA_ENV):
        try:
            args.daily_quota = _positive_int(os.environ[DAILY_QUOTA_ENV])
        except argparse.ArgumentTypeError as exc:
            raise _UsageError(f"${DAILY_QUOTA_ENV}: {exc}") from None
    if not args.quota_reset < 86400:
        raise _UsageError(f"--quota-reset must be less than a day, got {args.quota_reset:g}s")
    if args.demo:
        ignored = [flag for flag, given in (
            ("--website-id", args.website_id), ("--all-websites", args.all_websites),
            ("--shard", args.shard), ("--rest-host", args.rest_host),
            ("--redis-url", args.redis_url), ("--follow", args.follow),
            ("--lease-ttl", args.lease_ttl),
        ) if given]
        if ignored:
            raise _UsageError(f"--demo runs against its own fake Crisp: drop {', '.join(ignored)}")


def _check_extras(args: argparse.Namespace) -> None:
    """Refuse, before any work, the flags whose extra is not installed. ``--follow`` needs
    none: without the ``events`` extra it runs degraded, reconciling every ``--interval``."""
    redis_url = args.redis_url or os.environ.get(defaults.REDIS_URL_ENV)
    for given, what, extra in (
        (_is_postgres(args.db), "a PostgreSQL --db", "postgres"),
        (redis_url, "--redis-url", "redis"),
        (args.metrics_port, "--metrics-port", "metrics"),
    ):
        if given and not installed(extra):
            raise _UsageError(f"{what} needs the '{extra}' extra: {install_hint(extra)}")


def _rate_limit(value: str) -> float | str:
    """``--rate-limit``: ``adaptive`` or a positive number of requests per second."""
    if value == defaults.ADAPTIVE:
        return value
    try:
        rate = float(value)
    except ValueError:
        rate = math.nan
    if not 0 < rate < math.inf:
        raise argparse.ArgumentTypeError(
            f"must be {defaults.ADAPTIVE!r} or a positive number of requests/s, got {value!r}"
        )
    return rate


def _positive_int(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _share(text: str) -> float:
    """A share from 0 to below 1, as ``10%`` or ``0.1`` (argparse type)."""
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        share = math.nan
    if not 0 <= share < 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to below 1 (e.g. 10%), "
                                         f"got {text!r}")
    return share


def _target_from_environment(args: argparse.Namespace) -> Target:
    identifier = os.environ.get("CRISP_IDENTIFIER", "")
    key = os.environ.get("CRISP_KEY", "")
    if not identifier or not key:
        raise _UsageError("set CRISP_IDENTIFIER and CRISP_KEY (your token keypair)")
    tier = os.environ.get("CRISP_TIER", "plugin")
    if tier not in defaults.TIERS:
        raise _UsageError(f"CRISP_TIER must be one of {sorted(defaults.TIERS)}, got {tier!r}")
    return Target(args.rest_host or os.environ.get("CRISP_REST_HOST"), identifier, key, tier)


def _choose_database(args: argparse.Namespace) -> None:
    """``--db``, else ``$CRISP_SYNC_DB``, else the default SQLite file; and the flags that
    only one kind of database takes."""
    args.db = args.db or os.environ.get(DB_ENV) or DEFAULT_DB
    if args.lease_ttl is not None and not _is_postgres(args.db):
        raise _UsageError("--lease-ttl goes with a PostgreSQL database (--db postgresql://...)")
    if args.lease_ttl is not None and args.lease_ttl < MIN_LEASE_TTL:
        raise _UsageError(f"--lease-ttl must be at least {MIN_LEASE_TTL:g}s")


def _is_postgres(db: str | None) -> bool:
    return db is not None and db.startswith(POSTGRES_SCHEMES)


@contextmanager
def _postgres_store(args: argparse.Namespace) -> Iterator[PostgresStore]:
    """The PostgreSQL store of ``--db``; a usage error without the ``[postgres]`` extra."""
    try:
        from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise _UsageError(str(exc)) from None
    try:
        store = PostgresStore(
            args.db,
            pool_size=max(16, args.workers + 4),
            lease_ttl=args.lease_ttl or DEFAULT_LEASE_TTL,
        )
    except ValueError as exc:
        raise _UsageError(f"--db: {exc}") from None
    with store:
        yield store


def _port(text: str) -> int:
    """A TCP port number (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return port


def _client(args: argparse.Namespace, target: Target) -> Crisp:
    """The worker's client. No response cache: every read of a sync is a fresh one
    (``use_cache=False``), so a cache would only keep each answer, unread, and a follow
    process would hold up to its bound for nothing. A known daily quota is spent as fast as
    the rate allows (not spread over the day): a run stops at the reserve, and the next day's
    run resumes where it stopped."""
    options: dict[str, Any] = {
        "cache_ttl": 0,
        "pool_size": max(defaults.POOL_SIZE, args.workers),
        "rate_limit": args.rate_limit,
        "logger": getattr(args, "logger", None),
        "daily_quota": args.daily_quota,
        "quota_reserve": args.quota_reserve,
        "quota_reset": args.quota_reset,
        "quota_pace": False,
    }
    if args.redis_url:
        options["redis_url"] = args.redis_url
    try:
        client = Crisp(**options)
        client.set_tier(target.tier)
        if target.rest_host:
            client.set_rest_host(target.rest_host)
        client.authenticate(target.identifier, target.key)
    except (ValueError, TypeError) as exc:
        raise _UsageError(str(exc)) from None
    return client


def _status(args: argparse.Namespace, out: TextIO) -> int:
    """``--status``: what the database holds of each website (and the ledger of the
    credential its last complete run used), read without a request."""
    _choose_database(args)
    with ExitStack() as stack:
        store: SQLiteStore | PostgresStore
        if _is_postgres(args.db):
            store = stack.enter_context(_postgres_store(args))
        else:
            path = Path(args.db)
            if not path.exists():  # opening it would create it
                raise _UsageError(f"no database at {path} (give --db or ${DB_ENV})")
            store = stack.enter_context(SQLiteStore(path))
        now = time.time()
        rows = [
            (status, None if status.credential is None
             else status_ledger(store, status.credential, now))
            for status in store.statuses()
        ]
    print(status_table(rows), file=out)
    return EXIT_OK


def _allowance(args: argparse.Namespace, target: Target, client: Crisp, store: Store
               ) -> Allowance | None:
    """The credential's allowance, opened (`crisp_api.sync.allowance`); None for a store
    that keeps none (one of the user's own)."""
    if not isinstance(store, AllowanceStore):
        return None
    allowance = Allowance(store, client, target.identifier, daily_quota=args.daily_quota,
                          quota_reset=args.quota_reset)
    allowance.open()
    return allowance


@contextmanager
def _own_allowance(args: argparse.Namespace, target: Target, client: Crisp, store: Store
                   ) -> Iterator[Allowance | None]:
    """Follow mode's allowance for the block, closed after it (what was counted and learnt
    kept). The service's outcome is decided by then (a stop, or a fatal reason already said):
    a database that cannot take the last figures is logged, not said as a second outcome."""
    allowance = _allowance(args, target, client, store)
    try:
        yield allowance
    finally:
        if allowance is not None:
            try:
                allowance.close()
            except StoreError as exc:
                args.logger.warning("allowance.not_kept", reason=str(exc))


def _quota_spent(exc: QuotaSpentError, allowance: Allowance | None,
                 website_id: str | None) -> int:
    """The run (of ``website_id``, if one) met a spent daily quota: say which, that progress
    is kept and when to run again (the quota's expected reset); `EXIT_QUOTA`."""
    configured = isinstance(exc, QuotaExceededError)
    if allowance is not None and website_id:
        allowance.began(website_id)  # --status shows its ledger before a run completed
    until = exc.reset_at if allowance is None else allowance.spent(exc.reset_at,
                                                                   server=not configured)
    figures = None if allowance is None else allowance.figures()
    which = ("the configured daily quota (--daily-quota, less --quota-reserve)" if configured
             else "Crisp's daily request quota")
    spent = "" if figures is None else f" ({figures.line().split(';')[0]})"
    return _fail(f"{which} is spent{spent}: progress is kept; run again after {utc(until)}",
                 EXIT_QUOTA, quota_reset_at=utc(until))


def _run(
    args: argparse.Namespace, target: Target, store: Store, out: TextIO, stop: Stop, *,
    given: Crisp | None = None, given_allowance: Allowance | None = None,
) -> int:
    """Sync every chosen website once (through the ``given`` client and its allowance,
    if any) and give the summary; returns the exit status (`EXIT_INTERRUPTED`, unsaid, when
    a signal stopped it: see `main`)."""
    with _own_client(args, target, given) as client:
        allowance = (given_allowance if given_allowance is not None
                     else _allowance(args, target, client, store))
        status = _run_with(args, client, store, out, stop, allowance=allowance)
        if given_allowance is None and allowance is not None:
            status = _keep_allowance(allowance, status, args.logger)
    return status


def _keep_allowance(allowance: Allowance, status: int, logger: Any) -> int:
    """Close the run's allowance (the last requests counted, the learnt rate and the spent
    mark kept). A database that cannot take them fails a run that was fine; a run that
    already failed keeps its status and its one line (the same database failing again is
    logged at info, not said twice)."""
    try:
        allowance.close()
    except StoreError as exc:
        if status == EXIT_OK:
            return _store_failed(exc)
        logger.info("allowance.not_kept", reason=str(exc))
    return status


def _run_with(args: argparse.Namespace, client: Crisp, store: Store, out: TextIO, stop: Stop,
              *, allowance: Allowance | None) -> int:
    """`_run`'s work through ``client`` and ``allowance``: the sync, the summary, the status."""
    counter = RequestCounter()
    install(counter, client)
    started = time.monotonic()
    reports: list[SyncReport] = []
    try:
        bars = progress.shown(not args.no_progress) and args.log_format == "console"
        reports = _sync_all(args, client, store, stop, bars=bars)
    except WebsiteLockedError as exc:
        return _fail(f"{exc}; not starting a second one", EXIT_LOCKED)
    except _LeaseLostError as exc:
        return _fail(f"{exc}; rerun to finish", EXIT_INCOMPLETE)
    except StoreError as exc:
        return _store_failed(exc)
    except (UnauthorizedError, ForbiddenError) as exc:
        return _fail(f"bad credentials or not allowed ({exc})", EXIT_AUTH)
    except QuotaSpentError as exc:
        return _quota_spent(exc, allowance, args.website_id)
    except NotFoundError as exc:
        return _fail(
            f"not found at {client.get_rest_host()}{client.get_rest_base_path()} ({exc}): "
            "check the website id, and that --rest-host is the API's root "
            f"(e.g. {defaults.REST_HOST}, without {defaults.REST_BASE_PATH})",
            EXIT_USAGE,
        )
    except NetworkError as exc:
        return _fail(f"cannot reach {client.get_rest_host()} ({exc})", EXIT_UNREACHABLE)
    except RouteError as exc:
        refused = isinstance(exc, RateLimitedError)
        spent = _spent_after_refusals(args, client) if refused else None
        if spent is not None:
            return _quota_spent(spent, allowance, args.website_id)
        return _fail(f"sync failed ({exc}); rerun to finish", EXIT_INCOMPLETE)
    except Exception as exc:  # anything else (an odd row, a bug): one line, checkpoint kept
        return _fail(f"sync failed ({describe(exc)}); rerun to finish", EXIT_INCOMPLETE)
    elapsed, counts = time.monotonic() - started, counter.snapshot()
    ledger = None
    if allowance is not None:
        allowance.completed(reports)
        ledger = allowance.figures()
    outcome("sync.summary", summary(reports, counts, elapsed, ledger), stream=out,
            **summary_fields(reports, counts, elapsed, ledger))
    if not all(r.complete for r in reports) and stop.signal_name is None:
        spent = _spent_after_refusals(args, client)  # were the failures a spent quota?
        if spent is not None:
            return _quota_spent(spent, allowance, args.website_id)
    failures = [r.store_error for r in reports if r.store_error is not None]
    if any(failure.permanent for failure in failures):
        return _store_failed(next(f for f in failures if f.permanent))
    if stop.signal_name is not None:
        return EXIT_INTERRUPTED
    if not all(r.complete for r in reports):
        return _fail("some conversations could not be synced (listed above); rerun to finish",
                     EXIT_INCOMPLETE)
    return EXIT_OK


def _spent_after_refusals(args: argparse.Namespace, client: Crisp) -> QuotaSpentError | None:
    """A run ended by refusals (a call out of retries): were they Crisp's quota spent?
    Asked with the website's operators, a call of one request (`confirm_spent`)."""
    if not args.website_id:
        return None
    return confirm_spent(client, partial(client.website.list_website_operators,
                                         args.website_id, use_cache=False))


@contextmanager
def _own_client(args: argparse.Namespace, target: Target, given: Crisp | None
                ) -> Iterator[Crisp]:
    """``given``, left open; else a client of its own for the block."""
    if given is not None:
        yield given
        return
    with _client(args, target) as client:
        yield client


def _sync_all(
    args: argparse.Namespace,
    client: Crisp,
    store: Store,
    stop: threading.Event | None = None,
    *,
    bars: bool = False,
) -> list[SyncReport]:
    """One run over every chosen website, until ``stop`` is set; raises what ends a run (see
    `_run`). With a PostgreSQL store and ``--all-websites``, the websites are shared with the
    other workers (`fleet.sync_once`). ``bars``: draw progress bars (see `progress.shown`)."""
    websites = list(_websites(args, client))
    leases = _fleet_leases(args, store)
    if leases is not None:
        run = fleet.sync_once(
            leases, websites,
            lambda website_id, stopping: _sync_one(
                args, client, website_id, store, stopping, bars=bars),
            stop=stop,
        )
        if run.lost:
            raise _LeaseLostError(run.lost)
        return run.reports
    reports = []
    with progress.websites_bar(len(websites), bars and args.all_websites) as tick:
        for website_id in websites:
            if stop is not None and stop.is_set():
                break
            report = _sync_one(args, client, website_id, store, stop, bars=bars)
            if report is not None:
                reports.append(report)
            tick()
    return reports


class _LeaseLostError(Exception):
    """Websites this worker synced while another took their lease over (it stalled)."""

    def __init__(self, websites: list[str]) -> None:
        super().__init__(
            f"lost the lease of {len(websites)} website(s) ({', '.join(websites[:3])}) while "
            "syncing them: this worker stalled for longer than --lease-ttl"
        )


def _fleet_leases(args: argparse.Namespace, store: Store) -> Leases | None:
    """The leases a fleet shares the websites through: with ``--all-websites`` on
    PostgreSQL."""
    if not (args.all_websites and _is_postgres(args.db)):
        return None
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    assert isinstance(store, PostgresStore)
    return store.leases


def _sync_one(
    args: argparse.Namespace,
    client: Crisp,
    website_id: str,
    store: Store,
    stop: StopSignal | None,
    *,
    bars: bool,
) -> SyncReport | None:
    """One website's sync; None for a website of ``--all-websites`` that is gone."""
    logger = args.logger
    logger.info("website.sync.started", website_id=website_id)
    with progress.website_bar(website_id, bars, nested=args.all_websites) as report:
        try:
            done = sync_website(
                client,
                website_id,
                store,
                workers=args.workers,
                people_interval=args.people_interval,
                on_progress=report,
                stop=stop,
            )
        except NotFoundError:
            if not args.all_websites:
                raise
        else:
            logger.info("website.sync.ended", website_id=website_id, complete=done.complete)
            return done
    outcome("website.gone", f"crisp-sync: website {website_id} is gone (disconnected?); skipped",
            level="warning", website_id=website_id)
    return None


def _follow(
    args: argparse.Namespace, target: Target, store: Store, out: TextIO, stop: Stop
) -> int:
    """A first run, then live events and a reconciliation every ``--interval`` until ``stop``
    (a signal: exit 0, see `main`), or until something fatal (its exit status). ``/healthz``,
    the metrics and the web hooks are served from the start, the first run included; without
    live events the service goes on, degraded (`crisp_api.sync.follow`).

    In a fleet (``--all-websites`` on PostgreSQL) there is no separate first run: the first
    reconciliation, at once, claims this worker's share of the websites and syncs them, and
    each one after rebalances the share (`fleet.Share`); events are applied for the websites
    held.
    """
    from crisp_api.events import EventsUnauthorizedError  # noqa: PLC0415 - follow mode only

    secret = os.environ.get(HOOKS_SECRET_ENV, "")
    if args.hooks_port and not secret:
        raise _UsageError(f"--hooks-port needs the web hooks secret in ${HOOKS_SECRET_ENV}")
    leases = _fleet_leases(args, store)
    health = Health()
    with (_client(args, target) as client, ExitStack() as servers,
          _own_allowance(args, target, client, store) as allowance):
        metrics = _metrics(args, client, health, allowance)
        website_ids: set[str] = set()  # none until the first run is done (or, in a fleet, held)
        applier = EventApplier(store, website_ids, _profile_reader(client))

        def reconcile(stopping: threading.Event) -> list[SyncReport]:
            if leases is not None:
                reports = _reconcile_share(args, client, store, fleet.Share(leases), applier,
                                           stop=stopping)
            else:
                try:
                    reports = _sync_all(args, client, store, stopping)
                except QuotaSpentError as exc:  # kept for the next run; the follower waits
                    if allowance is not None:
                        allowance.spent(exc.reset_at,
                                        server=not isinstance(exc, QuotaExceededError))
                    raise
                website_ids.update(report.website_id for report in reports)
                applier.website_ids = frozenset(website_ids)  # websites connected since start
            if allowance is not None:
                allowance.completed(reports)
            if metrics is not None:
                metrics.count_quarantined(reports)
            return reports

        follower = Follower(
            applier=applier, reconcile=reconcile, interval=args.interval, stop=stop,
            recheck=partial(recheck_website, client, store, workers=args.workers),
            logger=args.logger,
            fatal_errors=(EventsUnauthorizedError,), probes=dependency_probes(store, client),
            health=health, reconcile_at_start=leases is not None,
        )
        _serve_ports(args, servers, metrics, health, (secret, follower.apply))
        if metrics is not None:
            follower.on_event = metrics.event_applied
        status = (EXIT_OK if leases is not None
                  else _run(args, target, store, out, stop, given=client,
                            given_allowance=allowance))
        if leases is None:
            if status == EXIT_QUOTA:  # no outage: events go on, reconciliation waits
                health.ran("first", "quota spent")
                health.quota_spent_until = (None if allowance is None
                                            else allowance.spent_until())
            else:
                health.first_sync_ended(status == EXIT_OK)
            if status not in (EXIT_OK, EXIT_INCOMPLETE, EXIT_QUOTA):
                return status
            website_ids.update(_websites(args, client))
            applier.website_ids = frozenset(website_ids)
        source, off = open_events(client, args.logger)
        args.logger.info("follow.started", websites=len(website_ids), interval=args.interval)
        fatal = follower.run(source, off)
    if fatal is not None and isinstance(fatal.cause, EventsUnauthorizedError):
        return _fail(f"the event socket refused the credentials ({fatal})", EXIT_AUTH)
    if fatal is not None:
        return _fail(str(fatal), EXIT_STORE)
    args.logger.info("follow.stopped")
    return EXIT_OK


def _metrics(args: argparse.Namespace, client: Crisp, health: Health,
             allowance: Allowance | None) -> Metrics | None:
    """The Prometheus metrics of ``--metrics-port``, counting the client's requests from now
    on (the first run's included) and showing the quota ledger; None without the flag."""
    from crisp_api.sync.monitoring import Metrics  # noqa: PLC0415 - follow mode only

    if not args.metrics_port:
        return None
    metrics = Metrics(client, health, args.health_threshold,
                      ledger=None if allowance is None else allowance.figures)
    client.use(metrics.layer, before=client.middleware[0].name)  # outermost: a listener
    return metrics


def _serve_ports(
    args: argparse.Namespace,
    servers: ExitStack,
    metrics: Metrics | None,
    health: Health,
    hooks: tuple[str, Callable[[str, Any], None]],
) -> None:
    """Serve ``/metrics`` and ``/healthz``, and the web hooks (``hooks``: the secret and the
    handler), on the ports asked for, until ``servers`` closes."""
    from crisp_api.sync.monitoring import serve  # noqa: PLC0415 - follow mode only

    try:
        if args.metrics_port:
            servers.callback(serve(args.bind, args.metrics_port, health=health,
                                   threshold=args.health_threshold, metrics=metrics).shutdown)
        if args.hooks_port:
            servers.callback(serve(args.bind, args.hooks_port, health=health,
                                   threshold=args.health_threshold, hooks=hooks).shutdown)
    except OSError as exc:
        raise _UsageError(f"cannot listen on {args.bind}: {exc}") from None


def _reconcile_share(
    args: argparse.Namespace,
    client: Crisp,
    store: Store,
    share: fleet.Share,
    applier: EventApplier,
    *,
    stop: threading.Event,
) -> list[SyncReport]:
    """A fleet worker's reconciliation: rebalance its share of the websites, sync those it
    holds, then claim and sync more while it holds less than its share. The event filter
    follows the websites held, each added before its sync so no event of it is missed."""
    listed = list(_websites(args, client))
    held = share.rebalance(listed)
    todo = list(held)
    reports = []
    while not stop.is_set():
        if not todo:
            claimed = share.claim_one(listed)
            if claimed is None:
                break
            held.append(claimed)
            todo.append(claimed)
        website_id = todo.pop(0)
        applier.website_ids = frozenset(held)
        lost = share.leases.lost(website_id)
        report = _sync_one(args, client, website_id, store, fleet.either(stop, lost), bars=False)
        if report is not None:
            reports.append(report)
    args.logger.info("fleet.share", websites=len(held), listed=len(listed))
    return reports


def _profile_reader(client: Crisp) -> Callable[[str, str], Any]:
    """Reads a people profile for the event applier; None once it is gone."""

    def read(website_id: str, people_id: str) -> Any:
        try:
            return client.website.get_people_profile(website_id, people_id, use_cache=False)
        except NotFoundError:
            return None

    return read


def _fail(reason: str, status: int, **fields: Any) -> int:
    """Say why the run ends with ``status`` (one line); returns ``status``."""
    outcome("sync.failed", f"crisp-sync: {reason}", level="error", reason=reason,
            exit_status=status, **fields)
    return status


def _store_failed(exc: StoreError) -> int:
    if exc.permanent:
        return _fail(f"cannot write the database: {exc}", EXIT_STORE)
    return _fail(f"the database failed: {exc}; rerun to finish", EXIT_INCOMPLETE)


def _websites(args: argparse.Namespace, client: Crisp) -> Iterator[str]:
    if not args.all_websites:
        yield args.website_id
        return
    shard = sharding.parse_shard(args.shard) if args.shard else (1, 1)
    for connected in paginate(client.plugin.list_all_connect_websites, use_cache=False):
        website_id = connected.get("website_id") if isinstance(connected, dict) else None
        if isinstance(website_id, str) and sharding.in_shard(website_id, *shard):
            yield website_id


def _demo(args: argparse.Namespace, stop: Stop) -> int:
    """Sync a seeded fake Crisp (with a few faults), then change it and sync incrementally.
    The demo does not follow, so its fake serves no RTM: a plain install (without the
    ``testing`` extra, which RTM needs) runs it."""
    from crisp_api.testing import FakeCrisp, Faults  # noqa: PLC0415 - demo only

    if _is_postgres(args.db):
        raise _UsageError("--demo writes a new SQLite file: give a file name to --db, or none")
    path = Path(args.db or DEMO_DB)
    if args.db and path.exists():
        raise _UsageError(f"--demo wants a new database file; {path} exists")
    _remove_database(path)
    faults = Faults(error_rate=0.02, throttle_rate=0.003, drop_before_rate=0.005, seed=7)
    with ExitStack() as stack:
        fake = stack.enter_context(
            FakeCrisp(conversations=DEMO_CONVERSATIONS, messages=30, seed=7, faults=faults,
                      rtm=False)
        )
        store = stack.enter_context(SQLiteStore(path))
        args.website_id = fake.website_id
        target = Target(fake.url, fake.identifier, fake.key, "plugin")
        print(
            f"demo: a fake Crisp at {fake.url} with {DEMO_CONVERSATIONS} conversations, "
            f"2% 5xx, 0.3% 429/420, 0.5% dropped connections; syncing into {path}"
        )
        status = _run(args, target, store, sys.stdout, stop)
        if status != EXIT_OK:
            return status
        fake.touch_conversations(25)
        fake.create_conversations(5, messages=3)
        print("demo: 25 conversations got a new message and 5 were created; syncing again")
        return _run(args, target, store, sys.stdout, stop)


if __name__ == "__main__":
    raise SystemExit(main())
