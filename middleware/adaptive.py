"""A request rate that finds a server's undisclosed limit by itself, and follows it as it moves.

`AdaptiveRate` is the control law, in the spirit of botocore's adaptive retry mode (a token
bucket whose rate follows TCP CUBIC: cut on throttling, grow back while answers succeed), with
three changes learnt from running it against limits that move and against random 429s:

* **It reacts to the share of throttled answers, not to single ones.** botocore cuts its rate
  on every throttled answer; with many threads, one overshoot returns a volley of 429s and the
  rate collapses, and a server that refuses a few requests at random (maintenance, another
  tenant) drags it to the floor. Here a cut needs, over about the last ``window`` seconds
  (counts decaying with that time constant), at least ``min_throttled`` refusals making up at
  least the cut threshold of the requests sent, and at most one cut per two windows: the
  first lets the cut take effect, the second measures what is left (below), and the next
  cut waits for that measurement even when requests are sparse (a cut due at the very moment
  would otherwise restart it, and the noise would never be learnt). A share no noise could
  explain may be cut again after one window: over the window (above ``cut_share`` plus twice
  ``max_noise``), or within the noise sample being taken (above ``cut_share`` plus
  ``max_noise``: the cut did not get below the limit, typically the first cut after the
  limit fell, measured on a window still full of the higher limit's successes). Not twice in
  a row: after such a re-cut the sample decides, so that random refusals cannot chain cuts.
* **The threshold learns the incidental share.** In the second window after each cut, when
  the rate is at its lowest and below any limit it was cut for, and the cut's own volley of
  429s and their retries are over, the throttled share left is measured:
  429s that do not go away when the rate falls are not ours to fix. The cut threshold is
  ``cut_share`` above twice a running average of those samples (each new one counts for
  half; at most ``max_noise``), so random
  refusals stop causing cuts, while an overshoot (whose share climbs fast) still does. A cut
  too shallow to get below the limit samples a high share; the cap keeps that from hiding
  the limit. (A plain average of the share over time would count our own overshoots as
  noise and let them grow.)
* **It cuts from what got through, not from what was sent.** The new rate is ``beta`` times
  the rate of successful answers, the best estimate of the server's limit; a cut from the
  send rate after a burst overshoots far below it. That rate is the smaller of the one over
  the window and the one over the last `FAST` of it, so that a limit that just fell is not
  overestimated by the successes from before the fall. (In the simulator, 16 threads against
  40/s then 20/s: 6.9% of all requests refused over 30 seeds, at most 8%, against 9.5% and
  14% for a cut from the window alone, with no more cuts under random refusals.)

Between cuts the rate grows as CUBIC does, ``scale * (t - K)**3 + w_max`` with ``w_max`` the
rate at the last cut: fast at first, flat near ``w_max`` (where the limit was), then faster
again to find a higher limit. It never exceeds twice the rate actually sent (so an idle client
does not grow a rate it never tested) unless that is below ``w_max``, and never falls below
``floor``.

Until the first cut the rate starts gently, as TCP's slow start does: ``start`` requests/s at
the first event, doubling every ``window`` while nothing calls for a cut (and, there too,
never beyond twice the rate sent when a request was last sent, nor below ``start``: after a
lull it resumes where it was, not from ``start``, since nothing refused it). Sixteen threads
against an unknown limit thus reach it within a few windows, instead of drawing a volley of
429s in
their first second (the benchmarks measured 80 of them, a fifth of a 16 s run, when the start
had no limit at all). The first cut ends the slow start, from the geometric mean of the rate
that got through and the slow start's rate: the first is below the limit (it averages a window
in which the rate was still doubling; cut from it alone, CUBIC then sat some 20% under the
limit for many seconds), the second above it (it drew the refusals). A rate learnt by an
earlier run is worth more than a gentle start: `AdaptiveRate.restore` resumes from it. So is
a rate an earlier run's slow start reached without a refusal (`AdaptiveRate.reached`): the
limit was at least that high, and `AdaptiveRate.resume` starts the slow start from it, still
doubling. A run that sends a few dozen requests would otherwise spend seconds at 8/s, every
run (and code that runs after each such pause runs slower: cold caches).

A throttled answer's ``Retry-After`` plays no part here: one refused request is evidence of
nothing shared; the cut (the share of throttled answers) is. `middleware.ratelimit.RateLimit`
pauses every caller for a ``Retry-After`` only when the law cut on that answer.

The law has no lock and no clock of its own: the caller passes ``now`` and serialises calls.
`AdaptiveBucket` wraps it with a token bucket for the threads of one process; the Redis bucket
runs the same law in Lua so that a fleet shares one learned rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import NamedTuple

from middleware.ratelimit import InMemoryBucket
from middleware.spent import SpentMark

ADAPTIVE = "adaptive"
"""The ``rate`` that asks a backend taking a fixed rate for a learnt one instead (so far
`middleware.redis_bucket.RedisBucket`)."""


FAST = 0.5
"""The time constant of the recent counts, as a share of the window: a cut's rate is the
smallest of what got through over the window and over this shorter time (see the module
docstring). A half, so that their decay is the square of the window's (one multiplication
per event, here and in the Lua copy)."""


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    """The constants of the law; the defaults are those measured in the benchmarks."""

    beta: float = 0.7
    """Share of the successful rate kept at a cut."""
    scale: float = 0.2
    """CUBIC's C, in requests/s per s³: how fast the rate grows back."""
    cut_share: float = 0.05
    """Share of throttled answers over the window that calls for a cut (above the noise)."""
    min_throttled: int = 2
    """Throttled answers the window must hold before a cut: one 429 is never enough."""
    window: float = 1.0
    """Seconds over which shares and rates are measured; cuts are at least two apart."""
    max_noise: float = 0.15
    """The most of the throttled share that is ever taken for incidental."""
    floor: float = 1.0
    """Requests/s the rate never goes below."""
    start: float = 8.0
    """Requests/s of the slow start, before the first cut; it doubles every ``window``."""

    def __post_init__(self) -> None:
        if not 0.0 < self.beta < 1.0:
            raise ValueError(f"beta must be between 0 and 1, got {self.beta}")
        if not 0.0 < self.cut_share < 1.0:
            raise ValueError(f"cut_share must be between 0 and 1, got {self.cut_share}")
        if not 0.0 <= self.max_noise < 0.5:
            raise ValueError(f"max_noise must be between 0 and 0.5, got {self.max_noise}")
        if self.min_throttled < 1:
            raise ValueError(f"min_throttled must be at least 1, got {self.min_throttled}")
        for name in ("scale", "window", "floor", "start"):
            value = getattr(self, name)
            if not 0.0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number, got {value}")


class AdaptiveRate:
    """The control law for one credential; see the module docstring.

    Counts are exponentially decaying sums with time constant ``window`` (three numbers, not
    a list of slots, so that the Redis bucket keeps the very same state in a hash); rates
    divide them by ``window``, corrected for the first moments, when less than a window of
    history exists.
    """

    def __init__(self, settings: AdaptiveSettings | None = None) -> None:
        self.settings = settings or AdaptiveSettings()
        self.w_max: float | None = None
        """The rate at the last cut; None before the first (no limit yet)."""
        self.cut_at = -math.inf
        self.noise = 0.0
        """The average throttled share measured after cuts: the incidental share."""
        self._k = 0.0
        self._sent = 0.0
        self._throttled = 0.0
        self._fast_sent = 0.0
        self._fast_throttled = 0.0
        """The same counts over `FAST` of the window: what got through most recently."""
        self._recut = False
        """Whether the last cut came one window after the one before, for a share beyond
        ``cut_share + max_noise``."""
        self._updated = math.nan
        self._first = math.nan
        self._base = self.settings.start
        """The slow start's rate at ``_origin``, whence it doubles: ``start``, or a rate
        resumed from an earlier run (`resume`); it never falls below it."""
        self._origin = math.nan
        self._refused = False
        """Whether any answer was throttled: the slow start then proved nothing."""
        self._mark_at = math.inf
        self._mark: tuple[float, float, float] = (0.0, 0.0, 0.0)
        """Time, sent and throttled when the noise sample's window opened."""
        self._sample_at = math.inf
        self._paused = (-math.inf, -math.inf)
        """Start and end of the last pause: time during which nothing could be sent."""

    def sent(self, now: float) -> None:
        """Count a request about to be sent."""
        self.advance(now)
        self._sent += 1.0
        self._fast_sent += 1.0

    def throttled(self, now: float) -> bool:
        """Count a throttled answer; cut the rate if the window calls for it. True if cut."""
        self.advance(now)
        self._refused = True
        self._throttled += 1.0
        self._fast_throttled += 1.0
        settings = self.settings
        if self._throttled < settings.min_throttled or self._throttled > self._sent:
            # More refusals than requests counted: they answer requests this law did not
            # send (another bucket's, before a fallback or a change of credentials), and
            # nothing says what got through; wait for counts of our own.
            return False
        share = self._throttled / self._sent if self._sent > 0 else 1.0
        if share < settings.cut_share + 2.0 * self.noise:
            return False
        beyond_noise = share >= settings.cut_share + 2.0 * settings.max_noise
        early = beyond_noise or self._too_shallow(now)
        since = now - self.cut_at
        if since < (1.0 if early else 2.0) * settings.window:
            return False
        if not early and self._sample_at != math.inf:
            return False  # the noise sample of the last cut is still being taken
        good = max(0.0, self._sent - self._throttled) / self._span(now)
        current = self.rate(now)
        if self.w_max is None:  # the slow start's end: see the module docstring
            self._cut(now, math.sqrt(good * max(good, current)))
        else:
            fast = self._span(now, FAST * settings.window)
            recent = max(0.0, self._fast_sent - self._fast_throttled) / fast
            self._cut(now, min(good, recent, current))
        self._recut = not beyond_noise and since < 2.0 * settings.window
        return True

    def _too_shallow(self, now: float) -> bool:
        """Whether the noise sample being taken already holds a throttled share that no noise
        could explain (above ``cut_share + max_noise``): the last cut did not get below the
        limit, and waiting for the sample's end only draws more refusals. Not after such a
        re-cut: then the sample decides."""
        if self._recut or self._mark_at != math.inf or self._sample_at == math.inf:
            return False  # a re-cut already, no sample pending, or its window not yet open
        began, sent, throttled = self._mark
        decay = math.exp(-(now - began) / self.settings.window)
        sent = self._sent - sent * decay
        throttled = self._throttled - throttled * decay
        settings = self.settings
        return (throttled >= settings.min_throttled
                and throttled >= (settings.cut_share + settings.max_noise) * sent)

    def _cut(self, now: float, base: float) -> None:
        """Start a new CUBIC epoch at ``now`` whose ``w_max`` is ``base`` requests/s."""
        settings = self.settings
        self.w_max = max(settings.floor, base)
        self.cut_at = now
        self._mark_at = now + settings.window
        self._sample_at = now + 2.0 * settings.window
        self._k = (self.w_max * (1.0 - settings.beta) / settings.scale) ** (1.0 / 3.0)

    def rate(self, now: float) -> float:
        """The rate to send at, in requests/s."""
        settings = self.settings
        if self._first != self._first:  # NaN: nothing happened yet
            return settings.start
        if self.w_max is None:  # the slow start, resumed after a lull where it was
            reached = 2.0 * self._sent / self._span(self._updated)
            grown = self._base * math.pow(2.0, (now - self._origin) / settings.window)
            return max(self._base, min(grown, reached))
        w_max = self.w_max
        grown = settings.scale * (now - self.cut_at - self._k) ** 3 + w_max
        if grown <= w_max:  # below where the limit was: the cap below cannot bind
            return max(settings.floor, grown)
        elapsed = now - self._updated
        sent = self._sent * math.exp(-elapsed / settings.window) if elapsed > 0 else self._sent
        return max(settings.floor, min(grown, max(w_max, 2.0 * sent / self._span(now))))

    def learnt(self, now: float) -> float | None:
        """The rate learnt from the server's refusals, to save for the next run (see
        `restore`); None before the first cut: nothing was learnt."""
        return None if self.w_max is None else self.rate(now)

    def reached(self) -> float | None:
        """The rate the slow start sent at without any refusal (requests/s over about the
        window before the last request), for a later run to `resume` from; None once an
        answer was throttled (`learnt` then says more) or before any request."""
        if self.w_max is not None or self._refused or self._updated != self._updated:
            return None
        sent = self._sent / self._span(self._updated)
        return sent if sent > 0.0 else None

    def resume(self, now: float, rate: float) -> None:
        """Start the slow start from ``rate`` (requests/s; `reached` by an earlier run)
        instead of ``start``: it doubles from there and never falls below it. Nothing
        changes once the law has cut (a learnt rate says more)."""
        if not 0.0 < rate < math.inf:
            raise ValueError(f"a resumed rate must be a positive number, got {rate!r}")
        self.advance(now)
        if self.w_max is None:
            self._base = max(self.settings.start, rate)
            self._origin = now

    def restore(self, now: float, rate: float) -> None:
        """Resume from ``rate`` (requests/s), learnt by an earlier run (`learnt`): the rate is
        ``rate`` from ``now``, flat for a while, as it is near the limit after a cut, then
        growing again to find a higher one. A cut may follow at once if it is too high."""
        if not 0.0 < rate < math.inf:
            raise ValueError(f"a restored rate must be a positive number, got {rate!r}")
        settings = self.settings
        self.advance(now)
        self.w_max = max(settings.floor, rate)
        self._k = (self.w_max * (1.0 - settings.beta) / settings.scale) ** (1.0 / 3.0)
        self.cut_at = now - self._k
        self._recut = False
        self._mark_at = self._sample_at = math.inf

    def advance(self, now: float) -> None:
        """Decay the counts to ``now``; sample the noise over the second window after a cut.
        Every event does it first; a caller may too, before reading `rate` (which does
        not), so that the rate reads counts already decayed."""
        if self._first != self._first:  # NaN: the first event
            self._first = self._updated = self._origin = now
            return
        elapsed = now - self._updated
        if elapsed > 0:
            decay = math.exp(-elapsed / self.settings.window)
            self._sent *= decay
            self._throttled *= decay
            decay *= decay  # exp(-elapsed / (FAST * window)), FAST being a half
            self._fast_sent *= decay
            self._fast_throttled *= decay
            self._updated = now
        if now >= self._mark_at:
            self._mark_at = math.inf
            self._mark = (now, self._sent, self._throttled)
            # A whole window from the mark, even when the first event after a cut comes late.
            self._sample_at = max(self._sample_at, now + self.settings.window)
        elif now >= self._sample_at:
            self._sample_at = math.inf
            began, sent, throttled = self._mark
            decay = math.exp(-(now - began) / self.settings.window)
            sent = self._sent - sent * decay
            share = (self._throttled - throttled * decay) / sent if sent >= 1.0 else 0.0
            self.noise = min(self.settings.max_noise, (self.noise + share) / 2.0)

    def paused(self, now: float, seconds: float) -> None:
        """Note a pause of every caller from ``now``: rates are measured over the time when
        sending was possible, so that one spent pausing does not pass for a low limit."""
        start, end = self._paused
        self._paused = (now if now > end else start, max(end, now + seconds))

    def _span(self, now: float, window: float | None = None) -> float:
        """What the decayed sums of time constant ``window`` (the law's by default) are to be
        divided by to give a rate: ``window``, less in the first moments of history, less the
        part of it spent in a pause."""
        window = self.settings.window if window is None else window
        age = now - self._first
        # Past 40 windows, 1 - exp(-age / window) is 1.0 in floating point: skip the exp.
        span = window if age > 40.0 * window else window * max(
            0.05, 1.0 - math.exp(-age / window))
        start, end = self._paused
        if end <= now - span:  # no pause within the span (nor ever, at first)
            return span
        overlap = max(0.0, min(end, now) - max(start, now - span))
        return max(0.05 * window, span - overlap)


class AdaptiveBucket:
    """A `BucketBackend` whose rate is learnt by `AdaptiveRate`, one per scope.

    ``scope`` names whose rate a reservation draws on (for a client: its credentials and
    tier, asked at each reservation since they may change); each scope has its own law, token
    bucket of ``burst`` tokens shared by every thread, and spent-quota mark. ``throttled`` is
    what the rate-limit layer calls on each 429/420; `learnt` and `restore` carry the learnt
    rate from one run to the next.
    """

    def __init__(
        self,
        burst: int = 10,
        *,
        settings: AdaptiveSettings | None = None,
        scope: Callable[[], Hashable] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.burst = burst
        self.settings = settings or AdaptiveSettings()
        self._scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._scopes: dict[Hashable, _Scope] = {}
        self.pauses = 0
        """How many pauses were asked of this bucket so far (of any scope)."""

    marks_spent_on_reserve = False
    """Marks are this process's own (see `RateLimit`)."""

    def _for_scope(self) -> _Scope:
        key = None if self._scope is None else self._scope()
        found = self._scopes.get(key)
        if found is None:
            found = _Scope(AdaptiveRate(self.settings),
                           InMemoryBucket(self.settings.start, self.burst, self._clock),
                           SpentMark())
            self._scopes[key] = found
        return found

    def reserve(self, max_wait: float | None) -> float:
        with self._lock:
            law, bucket, _ = self._for_scope()
            now = self._clock()
            law.advance(now)  # first: the rate then reads counts already decayed to now
            bucket.rate = law.rate(now)
            wait = bucket.reserve_at(now, max_wait)
            if wait >= 0:
                law.sent(now)
            return wait

    def pause(self, seconds: float) -> None:
        with self._lock:
            self.pauses += 1
            law, bucket, _ = self._for_scope()
            law.paused(self._clock(), seconds)
            bucket.pause(seconds)

    def pause_left(self) -> float:
        """Seconds left of the current scope's pause (0 if none)."""
        with self._lock:
            return self._for_scope().bucket.pause_left()

    def throttled(self) -> bool:
        """Tell the law that an answer was throttled; True if it cut the rate: the limit is
        shared by the callers, not a refusal of one request."""
        with self._lock:
            return self._for_scope().law.throttled(self._clock())

    def rate(self) -> float:
        """The current scope's rate (requests/s)."""
        with self._lock:
            return self._for_scope().law.rate(self._clock())

    def learnt(self) -> float | None:
        """The current scope's learnt rate, to save for the next run; None if the server
        never throttled (see `AdaptiveRate.learnt`)."""
        with self._lock:
            return self._for_scope().law.learnt(self._clock())

    def restore(self, rate: float) -> None:
        """Resume the current scope from a rate learnt by an earlier run."""
        with self._lock:
            self._for_scope().law.restore(self._clock(), rate)

    def reached(self) -> float | None:
        """The rate the current scope's slow start reached without a refusal, to save for
        the next run (see `AdaptiveRate.reached`)."""
        with self._lock:
            return self._for_scope().law.reached()

    def resume(self, rate: float) -> None:
        """Start the current scope's slow start from a rate an earlier run reached."""
        with self._lock:
            self._for_scope().law.resume(self._clock(), rate)

    def spent_until(self) -> float | None:
        # Read on every call: no lock (a dict read is atomic; a scope not made yet is unmarked).
        scope = self._scopes.get(None if self._scope is None else self._scope())
        return None if scope is None else scope.spent.spent_until()

    def mark_spent(self, until: float | None) -> None:
        with self._lock:
            scope = self._for_scope()
        scope.spent.mark_spent(until)

    def claim_probe(self, seen: float, hold_until: float) -> bool:
        with self._lock:
            scope = self._for_scope()
        return scope.spent.claim_probe(seen, hold_until)

    def __repr__(self) -> str:
        return f"<AdaptiveBucket burst={self.burst}>"


class _Scope(NamedTuple):
    """What an `AdaptiveBucket` keeps for one scope."""

    law: AdaptiveRate
    bucket: InMemoryBucket
    spent: SpentMark
