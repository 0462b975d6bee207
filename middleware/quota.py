"""A request quota per period (a day by default), spread over the period instead of burnt early.

Some APIs grant a token a fixed number of requests per day. Spending them as fast as the rate
limit allows would empty the quota by mid-morning and leave the afternoon with nothing, so the
quota paces itself: the requests still allowed are spread evenly over the time left in the
period, with a small ``burst`` allowed ahead of that schedule. Idle hours are not lost: the
fewer requests were spent, the shorter the interval between the next ones.

The schedule is a GCRA (generic cell rate algorithm) whose interval is recomputed at every
reservation as ``(period end - next free slot) / requests left``. Every reservation advances
the next free slot by one interval, so callers queued in debt are spread over the remaining
time and the last allowed request is never scheduled past the end of the period. Once the
quota is spent, reservations fail at once with `QuotaExhaustedError`: no request is sent.

Periods are aligned on the Unix epoch, so with the default ``period=86400`` a period is a UTC
day; ``offset`` moves their start (a quota that resets at 06:00 UTC has ``offset=21600``).
`QuotaBucket` is the in-process implementation, wrapped around any `BucketBackend`;
`middleware.redis_bucket.RedisBucket` runs the same schedule in Redis for a whole fleet.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from middleware.errors import PipelineError
from middleware.ratelimit import BucketBackend

DAY = 86400.0


class QuotaExhaustedError(PipelineError):
    """The quota of the current period is spent; the request was not sent.

    ``limit`` is the requests that could be spent in the period, ``reset_in`` the number of
    seconds until the next period starts, ``reset_at`` when it starts (epoch seconds).
    """

    def __init__(self, limit: int, reset_in: float, reset_at: float) -> None:
        super().__init__(f"quota of {limit} requests spent; it resets in {reset_in:.0f}s")
        self.limit = limit
        self.reset_in = reset_in
        self.reset_at = reset_at


@dataclass(frozen=True, slots=True)
class DailyQuota:
    """A quota of ``limit`` requests per ``period`` seconds (aligned on the epoch: UTC days by
    default; each starting ``offset`` seconds later), of which ``burst`` may go ahead of the
    even schedule; ``reserve`` (a share of ``limit``) is never spent, kept for the token's
    other users (live work, other tools): at most `spendable` requests are sent."""

    limit: int
    period: float = DAY
    burst: int = 10
    reserve: float = 0.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"the quota limit must be a whole number >= 1, got {self.limit!r}")
        if not 0 < self.period < math.inf:
            raise ValueError(f"the quota period must be a positive number of seconds, "
                             f"got {self.period!r}")
        if self.burst < 1:
            raise ValueError(f"the quota burst must be at least 1, got {self.burst!r}")
        if not 0.0 <= self.reserve < 1.0:
            raise ValueError(f"the quota reserve must be a share from 0 to below 1, "
                             f"got {self.reserve!r}")
        if not 0.0 <= self.offset < self.period:
            raise ValueError(f"the quota offset must be from 0 to below the period, "
                             f"got {self.offset!r}")

    @property
    def spendable(self) -> int:
        """The requests that may be sent per period: ``limit`` less the reserve (at least 1)."""
        return max(1, self.limit - math.ceil(self.limit * self.reserve))

    def period_of(self, now: float) -> tuple[int, float]:
        """``(index, end)``: which period the epoch time ``now`` falls in, and when it ends."""
        index = math.floor((now - self.offset) / self.period)
        return index, (index + 1) * self.period + self.offset


class QuotaBucket:
    """A `BucketBackend` that adds a `DailyQuota` to another bucket, for one process.

    A reservation waits for both the quota's schedule and ``bucket``'s token, and takes
    neither if either would make it wait longer than ``max_wait``. ``clock`` is the wall
    clock (epoch seconds), since periods follow the calendar.

    `adopt`, `pending` and `handed_over` let a shared backend keep this bucket as its
    fallback: it adopts the fleet's count while the shared store answers, counts alone while
    it does not, and hands what it counted alone over once the store is back.
    """

    def __init__(
        self,
        bucket: BucketBackend,
        quota: DailyQuota,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bucket = bucket
        self.quota = quota
        self.throttled: Callable[[], bool] | None = getattr(bucket, "throttled", None)
        self.learnt: Callable[[], float | None] | None = getattr(bucket, "learnt", None)
        self.restore: Callable[[float], None] | None = getattr(bucket, "restore", None)
        """The wrapped bucket's, when it learns its rate: what a run learnt, kept for the
        next (see `middleware.adaptive.AdaptiveBucket`)."""
        self.marks_spent_on_reserve: bool = getattr(bucket, "marks_spent_on_reserve", True)
        """The wrapped bucket's (see `middleware.ratelimit.RateLimit`)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._period = -1
        self._used = 0
        self._next_slot = 0.0
        self._unsynced = 0

    def reserve(self, max_wait: float | None) -> float:
        quota = self.quota
        now = self._clock()
        with self._lock:
            period, end = quota.period_of(now)
            if period != self._period:
                self._period, self._used, self._next_slot, self._unsynced = period, 0, 0.0, 0
            remaining = quota.spendable - self._used
            if remaining <= 0:
                raise QuotaExhaustedError(quota.spendable, end - now, end)
            start = max(now, self._next_slot)
            interval = (end - start) / remaining
            quota_wait = max(0.0, start - (quota.burst - 1) * interval - now)
            if max_wait is not None and quota_wait > max_wait:
                return -quota_wait
            wait = self.bucket.reserve(max_wait)
            if wait < 0:
                return wait
            self._used += 1
            self._unsynced += 1
            self._next_slot = start + interval
            return max(wait, quota_wait)

    def left(self) -> int:
        """Requests left of the current period's spendable quota (as counted here)."""
        period, _ = self.quota.period_of(self._clock())
        with self._lock:
            spendable = self.quota.spendable
            return spendable if period != self._period else spendable - self._used

    def pause(self, seconds: float) -> None:
        self.bucket.pause(seconds)

    def pause_left(self) -> float:
        return self.bucket.pause_left()

    @property
    def pauses(self) -> int:
        return self.bucket.pauses

    def spent_until(self) -> float | None:
        return self.bucket.spent_until()

    def mark_spent(self, until: float | None) -> None:
        self.bucket.mark_spent(until)

    def claim_probe(self, seen: float, hold_until: float) -> bool:
        return self.bucket.claim_probe(seen, hold_until)

    def adopt(self, period: int, used: int) -> None:
        """Take ``used``, counted by the shared store, as the count of ``period``; what this
        bucket counted alone and has not handed back yet (see `pending`) comes on top."""
        with self._lock:
            if period < self._period:
                return
            if period > self._period:
                self._period, self._next_slot, self._unsynced = period, 0.0, 0
            self._used = used + self._unsynced

    def pending(self) -> tuple[int, int, int]:
        """``(period, shared count, counted alone)``: the current period, the count last
        adopted for it, and the reservations made here alone since (see `handed_over`)."""
        with self._lock:
            return self._period, self._used - self._unsynced, self._unsynced

    def handed_over(self, period: int, counted: int) -> None:
        """``counted`` reservations of `pending` are now in the shared count."""
        with self._lock:
            if period == self._period:
                self._unsynced = max(0, self._unsynced - counted)

    def __repr__(self) -> str:
        return (f"<QuotaBucket {self.quota.spendable}/{self.quota.period:g}s "
                f"burst={self.quota.burst} over {self.bucket!r}>")
