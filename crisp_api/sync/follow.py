"""Follow mode: a long-running mirror that applies live events between reconciliations.

`run_follow` is ``crisp-sync --follow``: it opens what the service serves (``/healthz``,
``/metrics``, the web hooks), runs the first sync (`crisp_api.sync.run`) and hands over to a
`Follower`. `Follower.run` keeps these going until its ``stop`` event is set (SIGTERM,
SIGINT):

* the main thread takes Crisp's events off the RTM stream (and, through `Follower.apply`,
  off web hooks) and applies them to the store as they come (`EventApplier`). An event the
  store cannot take now waits and is retried in order (`PendingEvents`);
* a reconciliation thread runs an incremental sync of every website every ``interval``
  seconds, which catches up whatever the events missed (a dropped socket, a restart), then
  reads again every conversation an event touched (`crisp_api.sync.recheck`): events are
  hints, Crisp's REST answers the truth, so a wrong or replayed event lasts one interval;
* a probe thread asks the store (and Redis, when the client shares its rate limit or cache
  through it) for a trivial answer every `PROBE_INTERVAL` seconds (`dependency_probes`), so
  the health check sees an outage (and its end) within seconds, not at the next
  reconciliation.

Without live events (RTM discovery failing, the socket down, the ``events`` extra missing)
the service goes on with its reconciliations: it is degraded, not dead, and the stream keeps
retrying in the background. Crisp's daily quota spent is no outage either: events are still
applied (they cost no request), the profile reads they ask for wait in a bounded queue
(`crisp_api.sync.event_applier.DeferredProfiles`), reconciliation and rechecks pause until
the quota's expected reset, and everything resumes by itself after it; the service is
degraded meanwhile ("quota spent until T"). `Health` is what the operator sees
(``/healthz``, the metrics). Only refused credentials and a store that cannot be written
end the run (`Fatal`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import structlog

from crisp_api.errors import NotFoundError, QuotaExceededError, QuotaSpentError
from crisp_api.events import EventsUnauthorizedError
from crisp_api.sync import fleet, run
from crisp_api.sync.allowance import Allowance, utc
from crisp_api.sync.engine import StopSignal, SyncReport, describe
from crisp_api.sync.event_applier import EventApplier, InvalidEventError
from crisp_api.sync.event_retry import PendingEvents
from crisp_api.sync.exits import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_QUOTA,
    UsageError,
    ended,
)
from crisp_api.sync.health import (
    DATABASE,
    NOT_CONNECTED_YET,
    RECONCILIATION,
    REDIS,
    Health,
)
from crisp_api.sync.logs import LOGGER_NAME
from crisp_api.sync.monitoring import Metrics, serve
from crisp_api.sync.recheck import Touch, Touched, recheck_website
from crisp_api.sync.store import Store, StoreError
from middleware import (
    QuotaBucket,
    RateLimit,
    RedisBucket,
    RedisCache,
    RedisLink,
    ResponseCache,
)

if TYPE_CHECKING:
    from crisp_api.client import Crisp
    from crisp_api.sync.settings import SyncSettings
    from crisp_api.sync.signals import Stop

PROBE_INTERVAL = 2.0
"""Seconds between two probes of the store and Redis."""

logger = structlog.get_logger(LOGGER_NAME)


class EventSource(Protocol):
    """What follow mode reads events from (`crisp_api.events.EventStream` is one)."""

    @property
    def connected(self) -> bool:
        """Whether the socket is up and authenticated."""
        ...

    @property
    def last_failure(self) -> str | None:
        """What the last failed connection attempt met (None before any failure)."""
        ...

    def get(self, timeout: float | None = None) -> Any:
        """The next event (``name`` and ``data`` attributes), or None after ``timeout``."""
        ...

    def close(self) -> None:
        """Disconnect for good."""
        ...


class Recheck(Protocol):
    """Reads again the touched conversations of a report's website, but those its sync read
    after the touches up to generation ``noted_before`` were noted; those confirmed
    (`crisp_api.sync.recheck.recheck_website`, bound to a client and a store)."""

    def __call__(self, report: SyncReport, touches: Mapping[str, Touch], stop: StopSignal, /,
                 *, noted_before: int) -> Mapping[str, Touch]:
        """The touches confirmed."""
        ...


class Fatal(Exception):  # noqa: N818 - a stop reason, not an error class of the API
    """Follow mode cannot go on: the message says why, ``cause`` is what stopped it (refused
    credentials, a store that cannot be written), for the caller to map to an exit status
    (`crisp_api.sync.exits`)."""

    def __init__(self, reason: str, cause: Exception) -> None:
        super().__init__(reason)
        self.cause = cause


def open_events(client: Crisp, logger: Any) -> tuple[EventSource | None, str]:
    """Crisp's live events for ``client``, connecting in the background; or None and why
    there can be none (the ``events`` extra missing, a tier without RTM discovery)."""
    from crisp_api.events import EVENTS, EventStream  # noqa: PLC0415 - the RTM client

    try:
        return EventStream(client, sorted(EVENTS), logger=logger).begin(), ""
    except (ImportError, ValueError) as exc:
        return None, str(exc)


def dependency_probes(store: object, client: Crisp) -> dict[str, Callable[[], object]]:
    """What follow mode depends on, by name, each with a cheap check that raises while it is
    away: the store (its ``ping``, if it has one) and Redis, when the client shares its rate
    limit or cache through it (its backends fall back to local ones meanwhile)."""
    probes: dict[str, Callable[[], object]] = {}
    ping = getattr(store, "ping", None)
    if callable(ping):
        probes[DATABASE] = ping
    link = _redis_link(client)
    if link is not None:
        probes[REDIS] = partial(_ping_redis, link)
    return probes


def _redis_link(client: Crisp) -> RedisLink | None:
    """The Redis link of the client's rate limit or cache, if either is shared through one."""
    for layer in client.middleware:
        backend = layer.backend if isinstance(layer, RateLimit | ResponseCache) else None
        if isinstance(backend, QuotaBucket):
            backend = backend.bucket
        if isinstance(backend, RedisBucket | RedisCache):
            return backend.link
    return None


def _ping_redis(link: RedisLink) -> None:
    if not link.run(lambda: bool(link.redis.ping()), lambda: False):
        raise ConnectionError(f"Redis at {link.address} does not answer")


class Follower:
    """Runs follow mode; see the module docstring.

    ``reconcile(stop)`` runs one incremental sync of every website and returns the reports
    (the first one at once with ``reconcile_at_start``, else after ``interval``);
    ``recheck`` then confirms the conversations events touched. ``probes`` name what the
    service depends on and check it (`dependency_probes`): each raises while its
    dependency is away. ``fatal_errors`` are the exception types
    of the event source that end the run (refused credentials). ``logger`` is a structlog
    logger; ``on_event(name, seconds)`` is told of each event applied.
    """

    def __init__(
        self,
        *,
        applier: EventApplier,
        reconcile: Callable[[threading.Event], list[SyncReport]],
        recheck: Recheck,
        interval: float,
        stop: threading.Event,
        logger: Any,
        fatal_errors: tuple[type[Exception], ...],
        probes: Mapping[str, Callable[[], object]] | None = None,
        health: Health | None = None,
        on_event: Callable[[str, float], None] | None = None,
        reconcile_at_start: bool = False,
    ) -> None:
        self.applier = applier
        self.reconcile = reconcile
        self.recheck = recheck
        self.interval = interval
        self.stop = stop
        self.logger = logger
        self.fatal_errors = fatal_errors
        self.probes = dict(probes or {})
        self.health = health or Health()
        self.on_event = on_event
        self.reconcile_at_start = reconcile_at_start
        self.touched = Touched()
        self.pending = PendingEvents(self._apply_now, self._dropped)
        self._fatal: Fatal | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._announced_off = False

    def run(self, source: EventSource | None, off_reason: str = "") -> Fatal | None:
        """Follow until ``stop`` is set (None) or a fatal condition (returned). Without a
        ``source``, live events are off for good (``off_reason`` says why)."""
        threads = [threading.Thread(target=self._reconcile_forever, daemon=True,
                                    name="crisp-sync-reconcile")]
        if self.probes:
            threads.append(threading.Thread(target=self._probe_forever, daemon=True,
                                            name="crisp-sync-probe"))
        for thread in threads:
            thread.start()
        try:
            while not self.stop.is_set():
                self._note_live_events(source, off_reason)
                event = self._next_event(source)
                if event is not None:
                    self.apply(event.name, event.data)
                self._retry_pending()
        except Fatal as exc:
            self._set_fatal(exc)
        finally:
            self.stop.set()
            self._wake.set()
            if source is not None:
                source.close()
            for thread in threads:
                thread.join()
        return self._fatal

    def apply(self, name: str, data: object) -> None:
        """Apply one event (from the socket or a web hook), or queue it while the store
        fails; remember what it touched, to be confirmed by the next reconciliation. A bad
        event is logged and dropped; a store that cannot be written ends the run."""
        received = time.monotonic()
        target = self.applier.target(name, data)
        try:
            applied = self.pending.submit(name, data)
        except InvalidEventError as exc:
            self.logger.warning("event.invalid", reason=str(exc))
            return
        except StoreError as exc:
            self._store_failed_for_good(exc)
            return
        if target is not None:
            self.touched.note(*target)
        if applied is not None and self.on_event is not None:
            self.on_event(name, time.monotonic() - received)

    def _apply_now(self, name: str, data: object) -> object:
        """Apply one event to the store (now, or when its turn comes after the store
        failed), and note what it touched once more: a sync begun before it changed the
        store cannot then be taken to confirm it."""
        applied = self.applier.apply(name, data)
        target = self.applier.target(name, data)
        if target is not None:
            self.touched.note(*target)
        return applied

    def _next_event(self, source: EventSource | None) -> Any:
        if source is None:
            self.stop.wait(0.5)
            return None
        try:
            return source.get(timeout=0.5)
        except self.fatal_errors as exc:
            raise Fatal(str(exc), exc) from exc

    def _retry_pending(self) -> None:
        pending = self.pending
        if pending.pending:
            try:
                pending.retry()
            except StoreError as exc:
                self._store_failed_for_good(exc)
        health = self.health
        health.events_pending = pending.pending
        health.events_dropped = pending.dropped
        health.touched = len(self.touched)
        health.profiles_deferred = len(self.applier.deferred)
        health.profiles_not_deferred = self.applier.deferred.overflowed

    def _dropped(self, name: str, data: object, reason: str) -> None:
        target = self.applier.target(name, data)
        if target is not None:
            self.touched.note(target.website_id, target.session_id, full=True)
        self.logger.warning("event.dropped", event_name=name, reason=reason)

    def _note_live_events(self, source: EventSource | None, off_reason: str) -> None:
        """Log "live events off: <reason>" once when they go (or never came), and "live
        events on" when they come back."""
        connected = source is not None and source.connected
        health = self.health
        if connected:
            if not health.live_events:
                health.live_events = True
                self._announced_off = False
                self.logger.info("live events on")
            return
        reason = (off_reason or "no event source") if source is None else source.last_failure
        health.live_events = False
        health.events_off_reason = reason or NOT_CONNECTED_YET
        if reason is not None and not self._announced_off:
            self._announced_off = True
            self.logger.warning(f"live events off: {reason}")

    def _probe_forever(self) -> None:
        """Probe every dependency each `PROBE_INTERVAL` until stopped: a first failure starts
        its failing clock, a first success stops it (and wakes the reconciliation, to redo at
        once what the outage made fail)."""
        health = self.health
        while not self.stop.wait(PROBE_INTERVAL):
            for name, probe in self.probes.items():
                try:
                    probe()
                except Exception as exc:  # whatever a probe meets, its dependency is away
                    if health.fail(name, describe(exc)):
                        self.logger.warning("dependency.failing", dependency=name,
                                            reason=describe(exc))
                    continue
                if health.recover(name):
                    self.logger.info("dependency.recovered", dependency=name)
                    if health.failing(RECONCILIATION):
                        self._wake.set()

    def _reconcile_forever(self) -> None:
        """Reconcile every ``interval`` (the first at once if ``reconcile_at_start``) until
        stopped; failures are logged and retried at the next interval (the health check
        reports them if they last)."""
        wait = 0.0 if self.reconcile_at_start else self.interval
        while not self._wait(self._quota_wait(wait)):
            wait = self.interval
            try:
                noted_before = self.touched.generation
                reports = self.reconcile(self.stop)
                for report in reports:
                    self._recheck(report, noted_before)
            except QuotaSpentError as exc:
                self._quota_spent(exc.reset_at)
                continue
            except StoreError as exc:
                if exc.permanent:
                    self._store_failed_for_good(exc)
                    return
                self._failed(describe(exc))
                continue
            except Exception as exc:  # the next interval tries again; the health check sees it
                self._failed(describe(exc))
                continue
            if self.stop.is_set():
                return
            self._quota_back()
            self._reconciled(reports)

    def _quota_wait(self, seconds: float) -> float:
        """``seconds``, or longer while the quota is spent: until its expected reset (when
        the next reconciliation's first request is the one probe)."""
        until = self.health.quota_spent_until
        return seconds if until is None else max(seconds, until - time.time())

    def _quota_spent(self, until: float) -> None:
        """Crisp's daily quota is spent: no outage. Pause reconciliation (and rechecks) until
        ``until``, say so once."""
        health = self.health
        if health.quota_spent_until is None:
            self.logger.warning("quota.spent", reason=f"quota spent until {utc(until)}",
                                until=utc(until))
        health.quota_spent_until = until
        health.ran(RECONCILIATION, "quota spent")

    def _quota_back(self) -> None:
        """A reconciliation got through after the quota was spent: resume, and read the
        profiles events asked for meanwhile."""
        health = self.health
        if health.quota_spent_until is not None:
            health.quota_spent_until = None
            self.logger.info("quota.back")
        try:
            self.applier.deferred.read_all(self.applier)
        except QuotaSpentError as exc:
            self._quota_spent(exc.reset_at)
        except Exception as exc:  # kept queued: read after the next reconciliation
            self.logger.warning("profiles.deferred.failed", reason=describe(exc))

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until woken; whether to stop."""
        self._wake.wait(seconds)
        self._wake.clear()
        return self.stop.is_set()

    def _recheck(self, report: SyncReport, noted_before: int) -> None:
        touches = self.touched.of_website(report.website_id)
        if touches:
            confirmed = self.recheck(report, touches, self.stop, noted_before=noted_before)
            self.touched.confirm(report.website_id, confirmed)

    def _reconciled(self, reports: list[SyncReport]) -> None:
        problems = [error for report in reports for error in report.errors]
        health = self.health
        health.reconciliations += 1
        health.recheck_calls += sum(report.recheck_calls for report in reports)
        self.touched.keep_only(report.website_id for report in reports)
        if problems:
            self._failed(problems[0], "incomplete")
            return
        health.ran(RECONCILIATION, "complete")
        health.last_reconciled = time.monotonic()
        health.recover(RECONCILIATION)
        self.logger.info(
            "reconciliation.complete", reconciliations=health.reconciliations,
            rechecked=sum(report.rechecked for report in reports),
            recheck_calls=sum(report.recheck_calls for report in reports),
            covered=sum(report.recheck_covered for report in reports),
        )

    def _failed(self, reason: str, outcome: str = "failed") -> None:
        self.health.ran(RECONCILIATION, outcome)
        self.health.fail(RECONCILIATION, reason)
        self.logger.warning("reconciliation.failed", reason=reason)

    def _store_failed_for_good(self, exc: StoreError) -> None:
        """A permanent store failure ends the run; a passing one cannot reach here."""
        self._set_fatal(Fatal(f"cannot write the database: {exc}", exc))
        self.stop.set()

    def _set_fatal(self, fatal: Fatal) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = fatal


def run_follow(settings: SyncSettings, client: Crisp, store: Store, stop: Stop, *,
               out: TextIO) -> int:
    """``crisp-sync --follow``: a first run, then live events and a reconciliation every
    ``--interval`` until ``stop`` (a signal: the CLI says what a stop means), or until
    something fatal (its exit status). ``/healthz``, the metrics and the web hooks are served
    from the start, the first run included; without live events the service goes on,
    degraded (see the module docstring).

    In a fleet (``--all-websites`` with a `fleet.FleetStore`) there is no separate first
    run: the first reconciliation, at once, claims this worker's share of the websites and
    syncs them, and each one after rebalances the share (`fleet.reconcile_share`); events
    are applied for the websites held.
    """
    share = (fleet.Share(store.leases)
             if settings.all_websites and isinstance(store, fleet.FleetStore) else None)
    synced = _Websites()  # none until the first run is done (in a fleet: those held)
    health = Health()
    with ExitStack() as servers, _own_allowance(settings, client, store) as allowance:
        metrics = _metrics(settings, client, health, allowance)
        applier = EventApplier(store, synced if share is None else share.holds,
                               _profile_reader(client))

        def reconcile(stopping: threading.Event) -> list[SyncReport]:
            try:
                if share is not None:
                    listed = list(run.websites(settings, client))
                    reports = fleet.reconcile_share(
                        share, listed, lambda website_id, stops: run.sync_one(
                            settings, client, website_id, store, stops,
                            allowance=allowance),
                        stop=stopping)
                    logger.info("fleet.share", websites=len(share.held), listed=len(listed))
                else:
                    reports = run.sync_websites(settings, client, store, stopping,
                                                allowance=allowance)
                    synced.add(report.website_id for report in reports)  # connected since
            except QuotaSpentError as exc:  # kept for the next run; the follower waits
                if allowance is not None:
                    allowance.spent(exc.reset_at, server=not isinstance(exc, QuotaExceededError))
                raise
            if metrics is not None:
                metrics.count_quarantined(reports)
            return reports

        follower = Follower(
            applier=applier, reconcile=reconcile, interval=settings.interval, stop=stop,
            recheck=partial(recheck_website, client, store, workers=settings.workers),
            logger=logger, fatal_errors=(EventsUnauthorizedError,),
            probes=dependency_probes(store, client), health=health,
            reconcile_at_start=share is not None,
        )
        _serve_ports(settings, servers, metrics, health, follower.apply)
        if metrics is not None:
            follower.on_event = metrics.event_applied
        if share is None:
            status = run.run_once(settings, client, store, stop, out=out, allowance=allowance)
            if status == EXIT_QUOTA:  # no outage: events go on, reconciliation waits
                health.ran("first", "quota spent")
                health.quota_spent_until = (None if allowance is None
                                            else allowance.spent_until())
            else:
                health.first_sync_ended(status == EXIT_OK)
            if status not in (EXIT_OK, EXIT_INCOMPLETE, EXIT_QUOTA):
                return status
            synced.add(run.websites(settings, client))
        source, off = open_events(client, logger)
        logger.info("follow.started", websites=len(synced.ids), interval=settings.interval)
        fatal = follower.run(source, off)
    if fatal is not None:
        return ended(fatal.cause)
    logger.info("follow.stopped")
    return EXIT_OK


class _Websites:
    """The websites whose events apply outside a fleet: those synced since the service
    started (replaced whole: read from any thread)."""

    def __init__(self) -> None:
        self.ids: frozenset[str] = frozenset()

    def __call__(self, website_id: str) -> bool:
        return website_id in self.ids

    def add(self, website_ids: Iterable[str]) -> None:
        self.ids = self.ids.union(website_ids)


@contextmanager
def _own_allowance(settings: SyncSettings, client: Crisp, store: Store
                   ) -> Iterator[Allowance | None]:
    """The service's allowance for the block, closed after it (what was counted and learnt
    kept). The service's outcome is decided by then (a stop, or a fatal reason already said):
    a database that cannot take the last figures is logged, not said as a second outcome."""
    allowance = run.open_allowance(settings, client, store)
    try:
        yield allowance
    finally:
        if allowance is not None:
            try:
                allowance.close()
            except StoreError as exc:
                logger.warning("allowance.not_kept", reason=str(exc))


def _metrics(settings: SyncSettings, client: Crisp, health: Health,
             allowance: Allowance | None) -> Metrics | None:
    """The Prometheus metrics of ``--metrics-port``, counting the client's requests from now
    on (the first run's included) and showing the quota ledger; None without the flag."""
    if not settings.metrics_port:
        return None
    metrics = Metrics(client, health, settings.health_threshold,
                      ledger=None if allowance is None else allowance.figures)
    client.use(metrics.layer, before=client.middleware[0].name)  # outermost: a listener
    return metrics


def _serve_ports(settings: SyncSettings, servers: ExitStack, metrics: Metrics | None,
                 health: Health, hook: Callable[[str, Any], None]) -> None:
    """Serve ``/metrics`` and ``/healthz``, and the web hooks (each handed to ``hook``), on
    the ports asked for, until ``servers`` closes."""
    threshold = settings.health_threshold
    try:
        if settings.metrics_port:
            servers.callback(serve(settings.bind, settings.metrics_port, health=health,
                                   threshold=threshold, metrics=metrics).shutdown)
        if settings.hooks_port:
            servers.callback(serve(settings.bind, settings.hooks_port, health=health,
                                   threshold=threshold,
                                   hooks=(settings.hooks_secret, hook)).shutdown)
    except OSError as exc:
        raise UsageError(f"cannot listen on {settings.bind}: {exc}") from None


def _profile_reader(client: Crisp) -> Callable[[str, str], Any]:
    """Reads a people profile for the event applier; None once it is gone."""

    def read(website_id: str, people_id: str) -> Any:
        try:
            return client.website.get_people_profile(website_id, people_id, use_cache=False)
        except NotFoundError:
            return None

    return read
