"""What Crisp lets a sync spend, kept between runs: the quota ledger and each credential's
allowance (the "spent until T" mark, the learnt rate, the rate reached without a refusal).

A plugin token has a daily quota of requests (5,000 by default, configurable per plugin);
requests refused after it is spent are waste. The client judges the quota spent from Crisp's
refusals, or counts a known one (`crisp_api.Crisp`'s ``daily_quota``); this module keeps what
one run learns of it for the next, in the store, so that cron runs and a PostgreSQL fleet
share it:

- the **ledger** (`Ledger`): the requests sent per credential (the token identifier, never
  the key) and quota day (days since the epoch, counted from the quota's reset: UTC midnight
  unless ``quota_reset`` says otherwise), counted by an outermost layer of the client that
  listens to every attempt reaching the network (`middleware.attempts`), and added to the
  store in batches of `LEDGER_BATCH` and at the end of a run. At the start of the next run
  the day's count seeds the client's own count of a known quota, so a second run the same day
  knows what was spent; and after each batch, what every worker sharing the store spent, so
  that a fleet stays within one known quota. With ``--redis-url`` and a known quota, the
  Redis bucket counts the fleet's requests itself (that count is the one the client obeys,
  live); the ledger keeps the record, in the store;
- the **allowance** (`Allowance`): when Crisp's quota was seen spent (its expected reset) and
  the adaptive rate the last run ended at. A run restores both into the client's rate-limit
  bucket: the rate, so the run starts where the last one ended; the mark, at the time the
  run starts, so that exactly one probe request tells whether the quota was reset (Crisp may
  reset early, or the quota be raised) before anything else is sent. While Crisp has never
  refused a request there is no learnt rate, but the highest rate a run's slow start reached
  is kept, and the next run's slow start begins there (`middleware.adaptive`'s ``resume``; a
  bucket without it, like the Redis bucket whose law the fleet shares, starts as it would).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from crisp_api.errors import QuotaSpentError, RateLimitedError, RouteError
from crisp_api.sync.store import CredentialAllowance, StoreError
from middleware import Handler, Outcome, QuotaBucket, RateLimit, Request, Response, listen

if TYPE_CHECKING:
    from crisp_api.client import Crisp
    from crisp_api.sync.engine import SyncReport

DAY = 86400.0
LEDGER_BATCH = 100
"""Requests counted before the ledger adds them to the store: one write per hundred requests,
not one per request."""

logger = logging.getLogger(__name__)


def quota_day(now: float, reset: float = 0.0) -> int:
    """The quota day of the epoch time ``now``, for a quota reset ``reset`` seconds after UTC
    midnight: days since the epoch, each starting at a reset."""
    return math.floor((now - reset) / DAY)


def utc(epoch: float) -> str:
    """An epoch time (seconds) as UTC ISO time to the second."""
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%dT%H:%M:%SZ}"


@runtime_checkable
class AllowanceStore(Protocol):
    """The store's side of the allowance (both built-in stores have it: `sql_store.SqlStore`)."""

    def count_requests(self, credential: str, day: int, requests: int) -> None: ...

    def requests_on(self, credential: str, day: int) -> int: ...

    def allowance(self, credential: str) -> CredentialAllowance: ...

    def set_allowance(self, credential: str, allowance: CredentialAllowance) -> None: ...

    def set_last_run(self, website_id: str, at_ms: int | None, credential: str) -> None: ...


class Ledger:
    """Counts the requests one client sends, per quota day, and adds them to the store in
    batches; thread-safe. An outermost layer of the client, listening to each call's
    attempts."""

    name = "sync_ledger"

    def __init__(
        self,
        store: AllowanceStore,
        credential: str,
        *,
        reset: float = 0.0,
        batch: int = LEDGER_BATCH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.credential = credential
        self.reset = reset
        self.batch = batch
        self._clock = clock
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._pending: dict[int, int] = {}
        self._known: dict[int, int] = {}
        """Each day's count as the store last told (every worker's requests included)."""
        self.on_flush: Callable[[int, int], None] | None = None
        """Told, after each flush, the requests of the current day it added and the day's
        count in the store."""
        self.sent = 0
        """Requests this ledger counted (this run's)."""
        self._counted = self._count  # bound once, not per request

    def __call__(self, request: Request, call_next: Handler) -> Response:
        listen(request, self._counted)
        return call_next(request)

    def today(self) -> int:
        """Requests counted under the credential on the current quota day: the store's count
        as last read, and what this ledger has not added yet."""
        day = self.day()
        with self._lock:
            return self._known.get(day, 0) + self._pending.get(day, 0)

    def day(self) -> int:
        """The current quota day."""
        return quota_day(self._clock(), self.reset)

    def read(self) -> int:
        """Read the current day's count from the store (what earlier runs and other workers
        spent); returns it."""
        day = self.day()
        count = self.store.requests_on(self.credential, day)
        with self._lock:
            self._known[day] = count
        return count

    def flush(self) -> None:
        """Add what was counted to the store (`StoreError` if it cannot: nothing counted is
        dropped, the next flush tries again)."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, {}
            try:
                for day, count in sorted(pending.items()):
                    self.store.count_requests(self.credential, day, count)
                    del pending[day]
                    total = self.store.requests_on(self.credential, day)
                    with self._lock:
                        self._known[day] = total
                    if day == self.day() and self.on_flush is not None:
                        self.on_flush(count, total)
            finally:
                if pending:
                    with self._lock:
                        for day, count in pending.items():
                            self._pending[day] = self._pending.get(day, 0) + count

    def _count(self, _request: Request, _outcome: Outcome) -> None:
        """An attempt listener: one request sent."""
        day = self.day()
        with self._lock:
            self._pending[day] = self._pending.get(day, 0) + 1
            self.sent += 1
            due = sum(self._pending.values()) >= self.batch
        if due and not self._flushing.locked():
            try:
                self.flush()
            except StoreError as exc:  # kept pending: the run's last flush says it if it lasts
                logger.warning("the quota ledger could not be written (%s); kept for later", exc)


@dataclass(frozen=True, slots=True)
class Figures:
    """The ledger as a run ends: what the summary, the metrics and ``--status`` show."""

    requests_today: int
    daily_quota: int | None
    spent_until: float | None
    """When Crisp's quota is expected to reset, while it is seen spent (epoch seconds)."""

    def line(self) -> str:
        """``requests today 4,210 of 5,000`` (or ``of an unknown quota``), and the spent
        mark if any."""
        quota = "an unknown quota" if self.daily_quota is None else f"{self.daily_quota:,}"
        text = f"requests today {self.requests_today:,} of {quota}"
        if self.spent_until is not None:
            text += f"; quota spent until {utc(self.spent_until)}"
        return text

    def fields(self) -> dict[str, Any]:
        return {"requests_today": self.requests_today, "daily_quota": self.daily_quota,
                "quota_spent_until": None if self.spent_until is None
                else utc(self.spent_until)}


class Allowance:
    """One credential's allowance for the time a client is used by the sync: `open` restores
    what earlier runs kept and starts counting, `close` keeps what this run learnt.

    ``daily_quota`` and ``quota_reset`` are what the client was given (None: unknown)."""

    def __init__(
        self,
        store: AllowanceStore,
        client: Crisp,
        credential: str,
        *,
        daily_quota: int | None,
        quota_reset: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client = client
        self.credential = credential
        self.daily_quota = daily_quota
        self.quota_reset = quota_reset
        self._clock = clock
        self.ledger = Ledger(store, credential, reset=quota_reset, clock=clock)
        self._kept = CredentialAllowance()
        self._spent_until: float | None = None

    def open(self) -> None:
        """Restore what earlier runs kept into the client and count its requests from now."""
        self._kept = self.store.allowance(self.credential)
        used = self.ledger.read()
        bucket = rate_limit_bucket(self.client)
        now = self._clock()
        if isinstance(bucket, QuotaBucket):
            if used:
                bucket.adopt(bucket.quota.period_of(now)[0], used)
            self.ledger.on_flush = functools.partial(_share_count, bucket)
        restore = getattr(bucket, "restore", None)
        resume = getattr(bucket, "resume", None)
        if self._kept.learnt_rate is not None and callable(restore):
            restore(self._kept.learnt_rate)
        elif self._kept.reached_rate is not None and callable(resume):
            resume(self._kept.reached_rate)
        if self._kept.spent_until_ms is not None and bucket is not None:
            # A time already past lets one probe through: was the quota reset, or raised?
            bucket.mark_spent(min(self._kept.spent_until_ms / 1000, now))
        stack = self.client.middleware
        if stack:
            self.client.use(self.ledger, before=stack[0].name)
        else:
            self.client.use(self.ledger)

    def spent(self, reset_at: float, *, server: bool = True) -> float:
        """Note that the quota is spent until ``reset_at`` (a `QuotaSpentError`'s); returns
        when to run again: the later of it and a reset kept by an earlier run (a refused
        probe retries sooner than the expected reset, the reset itself is later). Only
        Crisp's quota (``server``) is kept as spent: the configured one is known from the
        ledger's count, at no request."""
        kept = self._kept.spent_until_ms
        now = self._clock()
        until = reset_at if kept is None or kept / 1000 <= now else max(reset_at, kept / 1000)
        if server:
            self._spent_until = until
            self._keep(int(until * 1000), self._kept.learnt_rate,  # now: a cron run may look
                       self._kept.reached_rate)
        return until

    def spent_until(self) -> float | None:
        """When the quota is expected to reset, while it is known spent; None otherwise (a
        request got through since: the client's mark is cleared)."""
        bucket = rate_limit_bucket(self.client)
        mark = None if bucket is None else bucket.spent_until()
        if mark is None:
            return None
        if self._spent_until is not None:
            return self._spent_until
        return mark if mark > self._clock() else None

    def began(self, website_id: str) -> None:
        """Record that ``website_id`` is synced under this credential (``--status`` then shows
        its ledger, before any run completed)."""
        self.store.set_last_run(website_id, None, self.credential)

    def completed(self, reports: Sequence[SyncReport]) -> None:
        """Record the end of each complete run of a website, and under which credential."""
        at_ms = int(self._clock() * 1000)
        for report in reports:
            self.store.set_last_run(report.website_id, at_ms if report.complete else None,
                                    self.credential)

    def figures(self) -> Figures:
        return Figures(self.ledger.today(), self.daily_quota, self.spent_until())

    def close(self) -> None:
        """Add the last requests to the ledger and keep the allowance: the learnt rate, the
        rate reached without a refusal (the highest of this run's and the kept one), and the
        spent mark (cleared once a request got through after it)."""
        self.ledger.flush()
        bucket = rate_limit_bucket(self.client)
        learnt = getattr(bucket, "learnt", None)
        rate = learnt() if callable(learnt) else None
        reached_now = getattr(bucket, "reached", None)
        reached = reached_now() if callable(reached_now) else None
        kept = self._kept
        until_ms = kept.spent_until_ms
        mark = None if bucket is None else bucket.spent_until()
        now = self._clock()
        if mark is not None and self._spent_until is not None:
            until_ms = int(self._spent_until * 1000)
        elif mark is None:
            until_ms = None  # the probe got through (or nothing was ever refused)
        elif mark > now:
            until_ms = int(max(mark * 1000, until_ms or 0))
        # else: a restored mark no request claimed: what was kept stays
        if rate is None or mark is not None:
            # A rate learnt from the refusals of a spent quota is the quota's, not a limit's
            # (the law cuts to its floor as nothing gets through): the next run would crawl.
            rate = kept.learnt_rate
        highest = max((r for r in (reached, kept.reached_rate) if r is not None), default=None)
        self._keep(until_ms, rate, highest)

    def _keep(self, spent_until_ms: int | None, learnt_rate: float | None,
              reached_rate: float | None) -> None:
        self.store.set_allowance(self.credential, CredentialAllowance(
            spent_until_ms, learnt_rate, self.daily_quota, self.quota_reset, reached_rate))


CONFIRM_SECONDS = 90.0
"""How long `confirm_spent` may take: the quota is judged spent some 30 s after the first
refusal of a streak (`middleware.spent`), with room for answers that take their time."""


def confirm_spent(client: Crisp, probe: Callable[[], object]) -> QuotaSpentError | None:
    """After a run gave up on refusals (a call out of retries): whether they were Crisp's
    quota spent. While the client's refusals are still a streak, ``probe`` (a cheap call) is
    made again, spaced by the client (1, 2, 4, then 8 s apart), until the streak ends (an
    answer got through: a rate limit, None) or the quota is judged spent (its
    `QuotaSpentError`), for `CONFIRM_SECONDS` at most: a few requests that tell a spent
    quota (its own exit status, a mark that spares the next runs) from a passing limit."""
    watch = next((layer.watch for layer in client.middleware
                  if isinstance(layer, RateLimit)), None)
    deadline = time.monotonic() + CONFIRM_SECONDS
    while watch is not None and watch.streak and time.monotonic() < deadline:
        try:
            probe()
        except QuotaSpentError as exc:
            return exc
        except RateLimitedError:
            continue
        except RouteError:
            return None
    return None


def _share_count(bucket: QuotaBucket, flushed: int, total: int) -> None:
    """After a flush, count in ``bucket`` what every worker sharing the store spent: a fleet
    on one PostgreSQL database stays within one known quota (to a batch per worker)."""
    period, _, _ = bucket.pending()
    bucket.handed_over(period, flushed)
    bucket.adopt(period, total)


def rate_limit_bucket(client: Crisp) -> Any:
    """The bucket of the client's rate-limit layer (None without one)."""
    for layer in client.middleware:
        if isinstance(layer, RateLimit):
            return layer.backend
    return None


def status_ledger(store: AllowanceStore, credential: str, now: float) -> Figures:
    """A credential's ledger as the store holds it (for ``--status``: no request)."""
    kept = store.allowance(credential)
    spent = kept.spent_until_ms
    return Figures(
        store.requests_on(credential, quota_day(now, kept.quota_reset)), kept.daily_quota,
        None if spent is None or spent / 1000 <= now else spent / 1000,
    )
