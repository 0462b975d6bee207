"""One crisp-sync run: what it opens (the client, the store, the allowance), the websites it
syncs, its summary and its exit status (`crisp_api.sync.exits`).

`run_once` syncs every chosen website once; follow mode (`crisp_api.sync.follow.run_follow`)
begins with it and reconciles with `sync_websites`. With ``--all-websites`` and a store
that carries a fleet (`crisp_api.sync.fleet.FleetStore`), the websites are shared with the
other workers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from crisp_api import defaults
from crisp_api.client import Crisp
from crisp_api.errors import (
    NotFoundError,
    QuotaExceededError,
    QuotaSpentError,
    RateLimitedError,
)
from crisp_api.pagination import paginate
from crisp_api.sync import fleet, progress, sharding
from crisp_api.sync.allowance import Allowance, AllowanceStore, confirm_spent, utc
from crisp_api.sync.engine import StopSignal, SyncReport, sync_website
from crisp_api.sync.exits import (
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_QUOTA,
    LeaseLostError,
    UsageError,
    ended,
    fail,
)
from crisp_api.sync.logs import LOGGER_NAME, outcome
from crisp_api.sync.metrics import RequestCounter, install
from crisp_api.sync.postgres_leases import DEFAULT_LEASE_TTL
from crisp_api.sync.report import summary, summary_fields
from crisp_api.sync.settings import SyncSettings
from crisp_api.sync.sqlite_store import SQLiteStore
from crisp_api.sync.store import Store, StoreError
from crisp_api.sync.website_list import WebsiteList

if TYPE_CHECKING:
    from crisp_api.sync.postgres_store import PostgresStore
    from crisp_api.sync.signals import Stop

logger = structlog.get_logger(LOGGER_NAME)


def build_client(settings: SyncSettings) -> Crisp:
    """The worker's client (`sync_client`), for ``settings.target``."""
    target = settings.target
    assert target is not None, "a run reads its target from the environment (or the demo's)"
    options: dict[str, Any] = {
        "rate_limit": settings.rate_limit,
        "logger": logger,
        "daily_quota": settings.daily_quota,
        "quota_reserve": settings.quota_reserve,
        "quota_reset": settings.quota_reset,
        "quota_spent_after": settings.quota_spent_after,
    }
    if settings.redis_url:
        options["redis_url"] = settings.redis_url
    try:
        return sync_client(target.identifier, target.key, target.tier, target.rest_host,
                           workers=settings.workers, **options)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def sync_client(identifier: str, key: str, tier: str, rest_host: str | None, *, workers: int,
                **options: Any) -> Crisp:
    """A client for the sync engine (``options`` are `Crisp`'s). No response cache: every
    read of a sync is a fresh one (``use_cache=False``), so a cache would only keep each
    answer, unread, and a follow process would hold up to its bound for nothing. A pool for
    every worker. A known daily quota is spent as fast as the rate allows (not spread over the
    day): a run stops at the reserve, and the next day's run resumes where it stopped."""
    client = Crisp(cache_ttl=0, pool_size=max(defaults.POOL_SIZE, workers), quota_pace=False,
                   **options)
    client.set_tier(tier)
    if rest_host:
        client.set_rest_host(rest_host)
    client.authenticate(identifier, key)
    return client


@contextmanager
def open_store(
    settings: SyncSettings, *, began: Callable[[], bool] = lambda: True
) -> Iterator[SQLiteStore | PostgresStore]:
    """The store of ``settings.db`` for the block: PostgreSQL (which carries a fleet: it is a
    `fleet.FleetStore`), or a SQLite file. A SQLite file it created is removed again if it
    is still empty and ``began()``, asked at the end, says the run could not begin: a run
    that found no website, host or credentials leaves nothing behind."""
    if settings.postgres:
        with _postgres_store(settings) as postgres:
            yield postgres
        return
    path = Path(settings.db or "")
    existed = path.exists()
    with SQLiteStore(path) as sqlite:
        yield sqlite
        unused = not existed and sqlite.is_empty() and not began()
    if unused:
        remove_database(path)


@contextmanager
def _postgres_store(settings: SyncSettings) -> Iterator[PostgresStore]:
    """The PostgreSQL store of ``--db``; a usage error without the ``[postgres]`` extra."""
    try:
        from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    try:
        store = PostgresStore(
            settings.db or "",
            pool_size=max(16, settings.workers + 4),
            lease_ttl=settings.lease_ttl or DEFAULT_LEASE_TTL,
        )
    except ValueError as exc:
        raise UsageError(f"--db: {exc}") from None
    with store:
        yield store


def remove_database(path: Path) -> None:
    """Remove a SQLite database file and its journal files."""
    for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        part.unlink(missing_ok=True)


def open_allowance(settings: SyncSettings, client: Crisp, store: Store) -> Allowance | None:
    """The credential's allowance, opened (`crisp_api.sync.allowance`); None for a store
    that keeps none (one of the user's own)."""
    if not isinstance(store, AllowanceStore) or settings.target is None:
        return None
    allowance = Allowance(store, client, settings.target.identifier,
                          daily_quota=settings.daily_quota, quota_reset=settings.quota_reset)
    allowance.open()
    return allowance


def run_once(
    settings: SyncSettings, client: Crisp, store: Store, stop: Stop, *,
    out: TextIO, allowance: Allowance | None = None,
) -> int:
    """Sync every chosen website once through ``client`` and give the summary on ``out``;
    returns the exit status (`EXIT_INTERRUPTED`, unsaid, when a signal stopped it: the CLI
    says what a stop means). With no ``allowance`` given, the run opens its own and closes
    it at the end."""
    if allowance is not None:
        return _run(settings, client, store, stop, out=out, allowance=allowance)
    own = open_allowance(settings, client, store)
    status = _run(settings, client, store, stop, out=out, allowance=own)
    if own is not None:
        status = _keep_allowance(own, status)
    return status


def _keep_allowance(allowance: Allowance, status: int) -> int:
    """Close the run's allowance (the last requests counted, the learnt rate and the spent
    mark kept). A database that cannot take them fails a run that was fine; a run that
    already failed keeps its status and its one line (the same database failing again is
    logged at info, not said twice)."""
    try:
        allowance.close()
    except StoreError as exc:
        if status == EXIT_OK:
            return ended(exc)
        logger.info("allowance.not_kept", reason=str(exc))
    return status


def _run(settings: SyncSettings, client: Crisp, store: Store, stop: Stop, *, out: TextIO,
         allowance: Allowance | None) -> int:
    """`run_once`'s work through ``client`` and ``allowance``: the sync, the summary, the
    status."""
    counter = RequestCounter()
    install(counter, client)
    started = time.monotonic()
    try:
        bars = progress.shown(settings.progress)
        reports = sync_websites(settings, client, store, stop, bars=bars,
                                allowance=allowance)
    except QuotaSpentError as exc:
        return quota_spent(exc, allowance)
    except RateLimitedError as exc:  # out of retries: were the refusals a spent quota?
        spent = spent_after_refusals(settings, client)
        if spent is not None:
            return quota_spent(spent, allowance)
        return ended(exc, client)
    except Exception as exc:  # every other ending: its row of exits.ENDINGS
        return ended(exc, client)
    elapsed, counts = time.monotonic() - started, counter.snapshot()
    ledger = None if allowance is None else allowance.figures()
    outcome("sync.summary", summary(reports, counts, elapsed, ledger), stream=out,
            **summary_fields(reports, counts, elapsed, ledger))
    if not all(r.complete for r in reports) and stop.signal_name is None:
        spent = spent_after_refusals(settings, client)  # were the failures a spent quota?
        if spent is not None:
            return quota_spent(spent, allowance)
    failures = [r.store_error for r in reports if r.store_error is not None]
    if any(failure.permanent for failure in failures):
        return ended(next(f for f in failures if f.permanent))
    if stop.signal_name is not None:
        return EXIT_INTERRUPTED
    if not all(r.complete for r in reports):
        return fail("some conversations could not be synced (listed above); rerun to finish",
                    EXIT_INCOMPLETE)
    return EXIT_OK


def quota_spent(exc: QuotaSpentError, allowance: Allowance | None) -> int:
    """The run met a spent daily quota: say which, that progress is kept and when to run
    again (the quota's expected reset); `EXIT_QUOTA`."""
    configured = isinstance(exc, QuotaExceededError)
    until = exc.reset_at if allowance is None else allowance.spent(exc.reset_at,
                                                                   server=not configured)
    figures = None if allowance is None else allowance.figures()
    which = ("the configured daily quota (--daily-quota, less --quota-reserve)" if configured
             else "Crisp's daily request quota")
    spent = "" if figures is None else f" ({figures.line().split(';')[0]})"
    return fail(f"{which} is spent{spent}: progress is kept; run again after {utc(until)}",
                EXIT_QUOTA, quota_reset_at=utc(until))


def spent_after_refusals(settings: SyncSettings, client: Crisp) -> QuotaSpentError | None:
    """A run ended by refusals (a call out of retries): were they Crisp's quota spent?
    Asked with the website's operators, a call of one request (`confirm_spent`)."""
    if not settings.website_id:
        return None
    return confirm_spent(client, partial(client.website.list_website_operators,
                                         settings.website_id, use_cache=False))


def sync_websites(
    settings: SyncSettings, client: Crisp, store: Store, stop: threading.Event | None = None,
    *, bars: bool = False, allowance: Allowance | None = None,
) -> list[SyncReport]:
    """One run over every chosen website, until ``stop`` is set; raises what ends a run (see
    `run_once`). With a fleet's store and ``--all-websites``, the websites are shared with the
    other workers (`fleet.sync_once`). ``bars``: draw progress bars (see `progress.shown`);
    ``allowance``: where each website's end is recorded (see `sync_one`)."""
    shared = store if settings.all_websites and isinstance(store, fleet.FleetStore) else None
    if shared is not None:
        # The run began with this process (what another worker synced since counts, as
        # `--all-websites` promises), and its first websites sync while the list's next
        # pages are fetched.
        began = shared.leases.now() - timedelta(seconds=process_age())
        with WebsiteList(websites(settings, client)) as listed:
            run = fleet.sync_once(
                shared.leases, listed,
                lambda website_id, stopping: sync_one(
                    settings, client, website_id, store, stopping, bars=bars,
                    allowance=allowance),
                stop=stop, began=began,
            )
        if run.lost:
            raise LeaseLostError(run.lost)
        return run.reports
    chosen = list(websites(settings, client))
    reports = []
    with progress.websites_bar(len(chosen), bars and settings.all_websites) as tick:
        for website_id in chosen:
            if stop is not None and stop.is_set():
                break
            report = sync_one(settings, client, website_id, store, stop, bars=bars,
                              allowance=allowance)
            if report is not None:
                reports.append(report)
            tick()
    return reports


def sync_one(
    settings: SyncSettings, client: Crisp, website_id: str, store: Store,
    stop: StopSignal | None, *, bars: bool = False, allowance: Allowance | None = None,
) -> SyncReport | None:
    """One website's sync; None for a website of ``--all-websites`` that is gone.

    Its end is recorded in ``allowance`` at once (`Allowance.completed`), and so is a spent
    quota that stopped it (`Allowance.began`): ``--status`` shows the ledger of every
    website a run reached, even when the quota ended it half-way through the websites. A run
    that could not begin (no credentials, no host) records nothing."""
    logger.info("website.sync.started", website_id=website_id)
    with progress.website_bar(website_id, bars, nested=settings.all_websites) as report:
        try:
            done = sync_website(
                client, website_id, store, workers=settings.workers,
                people_interval=settings.people_interval, on_progress=report, stop=stop,
            )
        except NotFoundError:
            if not settings.all_websites:
                raise
        except QuotaSpentError:
            if allowance is not None:
                allowance.began(website_id)
            raise
        else:
            logger.info("website.sync.ended", website_id=website_id, complete=done.complete)
            if allowance is not None:
                allowance.completed([done])
            return done
    outcome("website.gone", f"crisp-sync: website {website_id} is gone (disconnected?); skipped",
            level="warning", website_id=website_id)
    return None


def websites(settings: SyncSettings, client: Crisp) -> Iterator[str]:
    """The websites to sync: ``--website-id``, or those the plugin token is connected to
    (this worker's ``--shard`` of them)."""
    if not settings.all_websites:
        if settings.website_id:
            yield settings.website_id
        return
    for website_id in connected_websites(client):
        if sharding.in_shard(website_id, *settings.shard):
            yield website_id


def process_age() -> float:
    """Seconds since this process started, from Linux's ``/proc`` (both clocks count from
    the boot); 0 where that cannot be read. A fleet worker's run begins when its process
    did, not once its imports, schema and connections are ready: a website another worker
    synced in between counts (each sync the later worker did again cost 4 requests, and a
    worker started a moment later did one or two of them)."""
    try:
        with open("/proc/self/stat", "rb") as stat, open("/proc/uptime", "rb") as uptime:
            fields = stat.read().rsplit(b")", 1)[1].split()  # after the command's name
            started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
            return max(0.0, float(uptime.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return 0.0


def connected_websites(client: Crisp) -> Iterator[str]:
    """Every website the plugin token of ``client`` is connected to."""
    for connected in paginate(client.plugin.list_all_connect_websites, use_cache=False):
        website_id = connected.get("website_id") if isinstance(connected, dict) else None
        if isinstance(website_id, str):
            yield website_id
