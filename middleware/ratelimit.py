"""Client-side rate limiting: a token bucket shared by every caller, paused by 429 answers.

The bucket hands out reservations: taking a token may put the bucket into debt, and the
caller sleeps until its token matures. Callers are thus served in arrival order and never
stampede, and the bucket needs one short critical section per request. When the server says
"too many requests" with a ``Retry-After``, a bucket whose rate is fixed pauses for it, so
every thread sharing it stops, not just the one that was refused. One that learns its rate
(`middleware.adaptive`) is told instead, and pauses everyone only when its law says the limit
is shared (it cut on that answer): one refusal among many successes is no evidence of that,
and only the refused request waits (the retry layer honours its ``Retry-After``).

The bucket also keeps the "spent until T" mark of a daily quota that the server's refusals
showed spent (`middleware.spent`): while it holds, calls fail fast without sending.

State lives behind `BucketBackend` so that several processes can share one bucket (Redis).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from middleware.contract import Handler
from middleware.errors import RateLimitWaitError
from middleware.message import NOTE_RATE_LIMIT_WAIT, Request, Response
from middleware.spent import ServerQuotaSpentError, SpentMark, SpentQuotaWatch, SpentRule


class BucketBackend(Protocol):
    """Where the bucket's state lives."""

    def reserve(self, max_wait: float | None) -> float:
        """Take a token; return how long the caller must wait before using it.

        If that wait would exceed ``max_wait`` the token is not taken and the (positive) wait
        is returned with a negative sign, so the caller can report it.
        """
        ...

    def pause(self, seconds: float) -> None:
        """Hold every reservation back for ``seconds`` from now."""
        ...

    def pause_left(self) -> float:
        """Seconds left of the current pause (0 if none)."""
        ...

    @property
    def pauses(self) -> int:
        """How many pauses were asked of this bucket so far: a caller that reserved before
        a pause can tell that one began while it waited for its turn."""
        ...

    def spent_until(self) -> float | None:
        """When the server's quota is expected to reset (epoch seconds), if it is marked
        spent (`middleware.spent`); None if not."""
        ...

    def mark_spent(self, until: float | None) -> None:
        """Mark the quota spent until ``until`` (None: clear the mark). A time already past
        lets one probe through (`claim_probe`)."""
        ...

    def claim_probe(self, seen: float, hold_until: float) -> bool:
        """Move the mark from ``seen`` (a time past) to ``hold_until`` if no other caller
        did: True for the one caller that may send the probe."""
        ...


class InMemoryBucket:
    """A token bucket for the threads of one process.

    ``rate`` tokens per second up to ``burst``; ``rate=None`` means no limit of our own, only
    the pauses the server asks for.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be a positive number of requests/s or None, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated = clock()
        self._paused_until = 0.0
        self.pauses = 0
        """How many pauses were asked of this bucket so far."""
        self._spent = SpentMark()

    marks_spent_on_reserve = False
    """A spent mark is set only by `mark_spent`, never learnt by a reservation (see
    `RateLimit`)."""

    def reserve(self, max_wait: float | None) -> float:
        now = self._clock()
        if self.rate is None:
            paused = self._paused_until - now
            return _within(paused, max_wait) if paused > 0 else 0.0
        with self._lock:
            return self.reserve_at(now, max_wait)

    def reserve_at(self, now: float, max_wait: float | None) -> float:
        """`reserve` at ``now`` (read by the caller), for an owner that serialises every
        call to this bucket under its own lock (`middleware.adaptive.AdaptiveBucket`)."""
        rate = self.rate
        paused = self._paused_until - now
        if rate is None:
            return _within(paused, max_wait) if paused > 0 else 0.0
        tokens = self._tokens + (now - self._updated) * rate
        if tokens > self.burst:
            tokens = float(self.burst)
        wait = (1.0 - tokens) / rate if tokens < 1.0 else 0.0
        wait = max(wait, paused)
        if max_wait is not None and wait > max_wait:
            self._tokens, self._updated = tokens, now
            return -wait
        self._tokens, self._updated = tokens - 1.0, now
        return wait

    def pause_left(self) -> float:
        """Seconds left of the current pause (0 if none)."""
        return max(0.0, self._paused_until - self._clock())

    def spent_until(self) -> float | None:
        return self._spent.spent_until()

    def mark_spent(self, until: float | None) -> None:
        self._spent.mark_spent(until)

    def claim_probe(self, seen: float, hold_until: float) -> bool:
        return self._spent.claim_probe(seen, hold_until)

    def pause(self, seconds: float) -> None:
        """Hold reservations back until ``seconds`` from now, then resume at the rate.

        With a rate, the bucket restarts empty when the pause ends: the first token matures
        then and the callers that queued meanwhile follow one per ``1 / rate``. Were it to
        keep refilling during the pause, they would all be released at its end, a burst
        bigger than the server's, and the next 429 would pause everyone again. Reservations
        already queued past the pause's end keep their places.
        """
        until = self._clock() + seconds
        rate = self.rate
        with self._lock:
            self.pauses += 1
            self._paused_until = max(self._paused_until, until)
            if rate is not None and self._updated + (1.0 - self._tokens) / rate < until:
                self._tokens, self._updated = 1.0, until

    def __repr__(self) -> str:
        return f"<InMemoryBucket rate={self.rate} burst={self.burst}>"


def _within(wait: float, max_wait: float | None) -> float:
    return -wait if max_wait is not None and wait > max_wait else wait


class RateLimit:
    """The rate-limit middleware.

    ``max_wait`` bounds how long a call may wait for its token (``0`` fails fast with
    `RateLimitWaitError`, ``None`` waits as long as it takes); a request's deadline bounds
    it too, so a long pause asked by the server fails the calls that cannot wait that long,
    with the wait, instead of holding them. An answer whose status is in ``pause_statuses``
    is a refusal (a stack passes the same set as its retry policy's ``rate_limit_statuses``:
    this layer acts on the answer before the retry layer judges it into an `Outcome`). A
    bucket that learns its rate (it has a ``throttled()`` method returning whether the limit
    proved shared, like `AdaptiveBucket`) is told of it, and pauses every caller for the
    answer's ``Retry-After`` (at most ``max_pause``) only when it says so; any other bucket
    pauses for the ``Retry-After``, or ``default_pause`` when none came. The time a call
    really waited is left in its notes (`NOTE_RATE_LIMIT_WAIT`).

    With ``spent`` (a `SpentRule`), refusals are also watched for a spent daily quota
    (`middleware.spent`): a streak of them spaces the requests out, and once the rule says
    spent the bucket is marked so and every call fails fast with `ServerQuotaSpentError`
    until the expected reset, when one probe is let through. The mark is checked before a
    call reserves, and again after it waited for its token (another caller may have marked
    it meanwhile), or always when the backend may learn of a mark as it reserves (one
    shared by processes, like `middleware.redis_bucket.RedisBucket`: a backend without a
    false ``marks_spent_on_reserve`` attribute is taken for one).
    """

    name = "rate_limit"

    def __init__(
        self,
        backend: BucketBackend,
        *,
        max_wait: float | None = None,
        pause_statuses: frozenset[int] = frozenset({429}),
        default_pause: float = 1.0,
        max_pause: float = 60.0,
        spent: SpentRule | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_wait is not None and max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        self.backend = backend
        self.max_wait = max_wait
        self.pause_statuses = pause_statuses
        self.default_pause = default_pause
        self.max_pause = max_pause
        self.watch = None if spent is None else SpentQuotaWatch(spent)
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._throttled: Callable[[], bool] | None = getattr(backend, "throttled", None)
        self._marks_on_reserve: bool = getattr(backend, "marks_spent_on_reserve", True)

    def __call__(self, request: Request, call_next: Handler) -> Response:
        max_wait = self.max_wait
        if request.deadline is not None:
            left = max(0.0, request.deadline - time.monotonic())
            max_wait = left if max_wait is None else min(max_wait, left)
        watch = self.watch
        probe = False
        if watch is not None:
            probe = self._spent_check()
            if not probe:
                max_wait = self._gate(watch, request, max_wait)
        pauses = self.backend.pauses
        wait = self.backend.reserve(max_wait)
        if wait:
            if wait < 0:
                raise RateLimitWaitError(-wait, request.method, request.route)
            began = time.perf_counter()
            self._sleep(wait)
            if self.backend.pauses != pauses:
                self._sit_out_pause(request, max_wait, wait)
            request.notes[NOTE_RATE_LIMIT_WAIT] = time.perf_counter() - began
        if watch is not None and not probe and (wait or self._marks_on_reserve):
            # Marked while this call waited for its token, or learnt by the reservation.
            probe = self._spent_check()
        response = call_next(request)
        refused = response.status in self.pause_statuses
        if refused:
            asked = response.retry_after
            if self._throttled is not None:
                if self._throttled() and asked is not None:
                    self.backend.pause(min(self.max_pause, asked))
            else:
                self.backend.pause(self.default_pause if asked is None
                                   else min(self.max_pause, asked))
        if watch is not None:
            if probe:
                wall = self._wall_clock()
                self.backend.mark_spent(watch.rule.again(wall) if refused else None)
            elif watch.answered(time.monotonic(), refused):
                self.backend.mark_spent(watch.rule.reset(self._wall_clock()))
        return response

    def _spent_check(self) -> bool:
        """Fail fast while the quota is marked spent; True if this call is the one probe
        allowed once the expected reset has passed."""
        until = self.backend.spent_until()
        if until is None:
            return False
        now = self._wall_clock()
        assert self.watch is not None
        if now >= until and self.backend.claim_probe(until, now + self.watch.rule.probe_hold):
            return True
        raise ServerQuotaSpentError(max(until, now), now)

    def _gate(self, watch: SpentQuotaWatch, request: Request, max_wait: float | None
              ) -> float | None:
        """Wait for the gate that spaces requests during a streak of refusals (returning what
        is left of ``max_wait``); fail fast if the quota is found spent meanwhile."""
        waited = 0.0
        while (wait := watch.admit(time.monotonic())) > 0:
            if max_wait is not None and waited + wait > max_wait:
                raise RateLimitWaitError(wait, request.method, request.route)
            began = time.monotonic()
            watch.wait_for_change(wait)
            waited += time.monotonic() - began
            self._spent_check_no_probe()
        return None if max_wait is None else max(0.0, max_wait - waited)

    def _spent_check_no_probe(self) -> None:
        """Fail fast if the quota was marked spent while this call waited at the gate."""
        until = self.backend.spent_until()
        if until is not None:
            now = self._wall_clock()
            raise ServerQuotaSpentError(max(until, now), now)

    def _sit_out_pause(self, request: Request, max_wait: float | None, waited: float) -> None:
        """Wait out a pause that began while this call waited for its turn.

        Its turn was given before the pause; sent now, it would draw the next 429 (and
        another pause for everyone), as every call queued in the bucket would, one by one.
        """
        left = self.backend.pause_left()
        if left <= 0:
            return
        if max_wait is not None and waited + left > max_wait:
            raise RateLimitWaitError(left, request.method, request.route)
        self._sleep(left)

    def __repr__(self) -> str:
        return f"<RateLimit {self.backend!r} max_wait={self.max_wait}>"
