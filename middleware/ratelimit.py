"""Client-side rate limiting: a token bucket shared by every caller, paused by 429 answers.

The bucket hands out reservations: taking a token may put the bucket into debt, and the
caller sleeps until its token matures. Callers are thus served in arrival order and never
stampede, and the bucket needs one short critical section per request. When the server says
"too many requests" with a ``Retry-After``, the whole bucket pauses for it, so every thread
sharing it stops, not just the one that was refused. A bucket whose rate is fixed works
exactly so; one that learns its rate (`middleware.adaptive`) adapts it instead of pausing
when the server gives no ``Retry-After``.

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

    def reserve(self, max_wait: float | None) -> float:
        now = self._clock()
        paused = self._paused_until - now
        if self.rate is None:
            return _within(paused, max_wait) if paused > 0 else 0.0
        with self._lock:
            tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
            wait = max(paused, (1.0 - tokens) / self.rate if tokens < 1.0 else 0.0)
            if max_wait is not None and wait > max_wait:
                self._tokens, self._updated = tokens, now
                return -wait
            self._tokens, self._updated = tokens - 1.0, now
            return wait

    def pause_left(self) -> float:
        """Seconds left of the current pause (0 if none)."""
        return max(0.0, self._paused_until - self._clock())


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
    pauses the bucket for its ``Retry-After`` (at most ``max_pause``). A bucket that learns its
    rate (it has a ``throttled(retry_after)`` method, like `AdaptiveBucket`) is also told, and
    adjusts; any other bucket pauses for ``default_pause`` when no ``Retry-After`` came. The
    time a call really waited is left in its notes (`NOTE_RATE_LIMIT_WAIT`).
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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_wait is not None and max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        self.backend = backend
        self.max_wait = max_wait
        self.pause_statuses = pause_statuses
        self.default_pause = default_pause
        self.max_pause = max_pause
        self._sleep = sleep
        self._throttled: Callable[[float | None], None] | None = getattr(
            backend, "throttled", None
        )


    def __call__(self, request: Request, call_next: Handler) -> Response:
        max_wait = self.max_wait
        if request.deadline is not None:
            left = max(0.0, request.deadline - time.monotonic())
            max_wait = left if max_wait is None else min(max_wait, left)
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
        response = call_next(request)
        if response.status in self.pause_statuses:
            asked = response.retry_after
            if asked is not None:
                self.backend.pause(min(self.max_pause, asked))
            elif self._throttled is None:
                self.backend.pause(self.default_pause)
            if self._throttled is not None:
                self._throttled(asked)
        return response

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
