"""crisp-sync's settings: its arguments, environment and file, checked once, as one frozen value.

`SyncSettings.parse` reads the flags and credentials gathered from the command line
(`crisp_api.sync.cli.build_parser`), the environment and the TOML file
(`crisp_api.sync.config`), applies the defaults that depend on several (the database),
checks every rule that ties flags together, whatever their source, and refuses, before any
work, a flag whose extra is not installed. Everything after it reads the settings and changes
none (a variant, such as the demo's website, is a new value: `dataclasses.replace`). The
argparse types below check each flag's own value (a duration, a share, a port, ...), on the
command line and from the environment or the file alike.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from crisp_api import defaults
from crisp_api.extras import install_hint, installed
from crisp_api.sync import sharding
from crisp_api.sync.config import HOOKS_SECRET_ENV, Config
from crisp_api.sync.exits import UsageError
from crisp_api.sync.logs import level_from
from crisp_api.sync.postgres_leases import MIN_LEASE_TTL

DB_ENV = "CRISP_SYNC_DB"
DEFAULT_DB = "crisp.sqlite3"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
MAX_WORKERS = 256
DEFAULT_INTERVAL = 300.0
"""Seconds between follow mode's reconciliations (``--interval``)."""


@dataclass(frozen=True)
class Target:
    """Where and as whom to sync (the key never shown)."""

    rest_host: str | None
    identifier: str
    key: str = field(repr=False)
    tier: str


@dataclass(frozen=True)
class SyncSettings:
    """One run's settings (see the module docstring; each flag's meaning is in its help).
    No credential is shown (the database and Redis URLs, the key, the hooks secret)."""

    website_id: str | None
    all_websites: bool
    shard: tuple[int, int]
    """This worker's slice of ``--all-websites``: (i, N), (1, 1) for all of them."""
    db: str | None = field(repr=False)  # a PostgreSQL URL may hold a password
    """The database: ``--db`` (or ``$CRISP_SYNC_DB``, or the file's), else `DEFAULT_DB`; for
    the demo, the command line's ``--db`` only (None: its own file), so that it never writes
    into the database of a service's environment."""
    lease_ttl: float | None
    workers: int
    redis_url: str | None = field(repr=False)  # may hold a password
    rate_limit: float | str
    daily_quota: int | None
    """``--daily-quota`` (or its variables, or the file's), else unknown."""
    quota_reserve: float
    quota_reset: float
    quota_spent_after: float
    people_interval: float
    demo: bool
    status: bool
    progress: bool
    """Whether progress bars may be drawn (on a terminal, under the console log format)."""
    follow: bool
    interval: float
    hooks_port: int | None
    metrics_port: int | None
    bind: str
    health_threshold: float
    log_level: str
    log_format: str
    target: Target | None
    """The credentials and API host of the environment; None for ``--status`` and
    ``--demo``, which read none."""
    hooks_secret: str = field(default="", repr=False)

    @property
    def postgres(self) -> bool:
        """Whether the database is PostgreSQL (else a SQLite file)."""
        return self.db is not None and self.db.startswith(POSTGRES_SCHEMES)

    @classmethod
    def parse(cls, config: Config) -> SyncSettings:
        """The settings of ``config`` (the command line, environment and file, gathered by
        `crisp_api.sync.config.read_config`); `UsageError` for the first rule they break."""
        if config.args.demo:
            config = _for_demo(config)
        args = config.args
        _check(config)
        settings = cls(
            website_id=args.website_id, all_websites=args.all_websites,
            shard=sharding.parse_shard(args.shard) if args.shard else (1, 1),
            db=args.db if args.demo else args.db or DEFAULT_DB,
            lease_ttl=args.lease_ttl, workers=args.workers, redis_url=args.redis_url,
            rate_limit=args.rate_limit, daily_quota=args.daily_quota,
            quota_reserve=args.quota_reserve, quota_reset=args.quota_reset,
            quota_spent_after=args.quota_spent_after,
            people_interval=args.people_interval, demo=args.demo, status=args.status,
            progress=not args.no_progress and args.log_format == "console",
            follow=args.follow, interval=args.interval, hooks_port=args.hooks_port,
            metrics_port=args.metrics_port, bind=args.bind,
            health_threshold=args.health_threshold,
            log_level=level_from(args.verbose, args.log_level), log_format=args.log_format,
            target=None, hooks_secret=config.credentials.get(HOOKS_SECRET_ENV, ""),
        )
        if args.demo:
            if settings.postgres:
                raise UsageError("--demo writes a new SQLite file: give a file name to --db, "
                                 "or none")
            return settings
        settings._check_database(config)
        if args.status:
            return settings
        settings._check_extras(config)
        target = _target(args.rest_host, config.credentials)
        if settings.hooks_port and not settings.hooks_secret:
            raise UsageError(f"{config.named('hooks_port', '--hooks-port')} needs the web hooks "
                             f"secret in ${HOOKS_SECRET_ENV} (or hooks-secret in the file)")
        return replace(settings, target=target)

    def _check_database(self, config: Config) -> None:
        """The flags that only one kind of database takes."""
        if self.lease_ttl is not None and not self.postgres:
            raise UsageError(f"{config.named('lease_ttl', '--lease-ttl')} goes with a "
                             "PostgreSQL database (--db postgresql://...)")
        if self.lease_ttl is not None and self.lease_ttl < MIN_LEASE_TTL:
            raise UsageError(f"{config.named('lease_ttl', '--lease-ttl')} must be at least "
                             f"{MIN_LEASE_TTL:g}s")

    def _check_extras(self, config: Config) -> None:
        """Refuse the flags whose extra is not installed. ``--follow`` needs none: without
        the ``events`` extra it runs degraded, reconciling every ``--interval``."""
        for given, what, extra in (
            (self.postgres, f"a PostgreSQL {config.named('db', '--db')}", "postgres"),
            (self.redis_url, config.named("redis_url", "--redis-url"), "redis"),
            (self.metrics_port, config.named("metrics_port", "--metrics-port"), "metrics"),
        ):
            if given and not installed(extra):
                raise UsageError(f"{what} needs the '{extra}' extra: {install_hint(extra)}")


DEMO_REPLACES = ("db", "rest_host", "redis_url", "lease_ttl")
"""What the demo brings its own of: taken from the command line only (where it is refused,
but for ``--db``), never from the environment or the file, so that the demo run in a
service's environment never writes into its database nor spends its Redis."""


def _for_demo(config: Config) -> Config:
    """``config`` without the values of `DEMO_REPLACES` that are not the command line's."""
    dropped = {dest: None for dest in DEMO_REPLACES if dest in config.origins}
    return replace(config, args=argparse.Namespace(**{**vars(config.args), **dropped}),
                   origins={dest: origin for dest, origin in config.origins.items()
                            if dest not in dropped})


def _check(config: Config) -> None:
    """The rules that tie the flags together, whatever their source (``--status`` takes
    only the database's)."""
    args, named = config.args, config.named
    if args.status:
        if args.demo or args.follow:
            modes = [named(dest, f"--{dest}") for dest in ("demo", "follow") if vars(args)[dest]]
            raise UsageError(f"{named('status', '--status')} only reads the database: drop "
                             f"{' and '.join(modes)}")
        return
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"{named('workers', '--workers')} must be between 1 and {MAX_WORKERS}, "
                         f"got {args.workers}")
    if not args.demo and not args.all_websites and not args.website_id:
        raise UsageError("give --website-id, --all-websites or --demo")
    if args.website_id and args.all_websites:
        raise UsageError(f"{named('website_id', '--website-id')} and "
                         f"{named('all_websites', '--all-websites')} exclude each other")
    if args.shard and not args.all_websites:
        raise UsageError(f"{named('shard', '--shard')} goes with --all-websites")
    if args.shard:
        try:
            sharding.parse_shard(args.shard)
        except ValueError as exc:
            raise UsageError(named("shard", str(exc))) from None
    if not args.follow:
        for dest, flag in (("hooks_port", "--hooks-port"), ("metrics_port", "--metrics-port")):
            if vars(args)[dest]:
                raise UsageError(f"{named(dest, flag)} goes with --follow")
    if args.follow and not args.interval > 0:
        raise UsageError(f"{named('interval', '--interval')} must be longer than 0 with "
                         f"{named('follow', '--follow')}")
    if not args.quota_reset < 86400:
        raise UsageError(f"{named('quota_reset', '--quota-reset')} must be less than a day, "
                         f"got {args.quota_reset:g}s")
    if not args.quota_spent_after > 0:
        raise UsageError(f"{named('quota_spent_after', '--quota-spent-after')} must be longer "
                         "than 0")
    if args.demo:
        ignored = [named(dest, flag) for dest, flag in (
            ("website_id", "--website-id"), ("all_websites", "--all-websites"),
            ("shard", "--shard"), ("rest_host", "--rest-host"), ("redis_url", "--redis-url"),
            ("follow", "--follow"), ("lease_ttl", "--lease-ttl"),
        ) if vars(args)[dest]]
        if ignored:
            raise UsageError(f"{named('demo', '--demo')} runs against its own fake Crisp: "
                             f"drop {', '.join(ignored)}")


def _target(rest_host: str | None, credentials: Mapping[str, str]) -> Target:
    """The credentials and API host (gathered by `crisp_api.sync.config`)."""
    identifier = credentials.get("CRISP_IDENTIFIER", "")
    key = credentials.get("CRISP_KEY", "")
    if not identifier or not key:
        raise UsageError("set CRISP_IDENTIFIER and CRISP_KEY (your token keypair), or "
                         "identifier and key in the --config file")
    return Target(rest_host, identifier, key, credentials.get("CRISP_TIER", "plugin"))


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
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


def rate_limit(value: str) -> float | str:
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


def positive_int(text: str) -> int:
    """A whole number of at least 1 (argparse type)."""
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def share(text: str) -> float:
    """A share from 0 to below 1, as ``10%`` or ``0.1`` (argparse type)."""
    value = text.strip()
    try:
        fraction = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        fraction = math.nan
    if not 0 <= fraction < 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to below 1 (e.g. 10%), "
                                         f"got {text!r}")
    return fraction


def port(text: str) -> int:
    """A TCP port number (argparse type)."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return number
