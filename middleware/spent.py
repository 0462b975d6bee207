"""A spent daily quota, told from a rate limit by the server's refusals alone, and the shared
"spent until T" mark.

Some APIs grant a token a number of requests a day and, once it is spent, refuse everything
(429 or 420) until the quota resets, without a ``Retry-After`` or a reason saying so (Crisp's
plugin quota is one). Every refusal sent then is waste, and a limiter that takes them for a
rate limit keeps sending at its floor until the reset.

**The rule** (`SpentRule`, `SpentQuotaWatch`): the quota is taken as spent when refusals
follow one another with no answer between them that is not a refusal, at least
``refusals`` of them, over at least ``seconds`` (8 and 30 s by default). From the
``suspect``-th refusal in a row (3), requests are let through one at a time, ``spacing``
seconds apart (1 s, doubling up to 8 s): the sender is then at and below any rate limiter's
floor, so what it meets is no overshoot of its own. Why this tells a quota from a rate
limit:

* a rate limit refills: at one request a second (or fewer), a limit of more than one request
  every 8 s lets one through, and a single answer that is not a refusal ends the streak;
  a tight limit (1 or 2 requests/s) met by 16 threads thus never makes 30 s of refusals;
* a spent quota lets nothing through, however slowly one asks: 30 s of refusals at that
  pace is no limit of the usual kind (per second, or a pause asked by ``Retry-After``);
* the count makes a streak of one or two refusals stretched over 30 s (a long
  ``Retry-After`` pause) no evidence; the time makes a volley of refusals no evidence.

What it costs: from the first refusal, about ``suspect`` refusals plus those already in
flight, then one request at 1, 3, 7, 15, 23 and 31 s: the quota is known spent about 31 s
after the first refusal, after some ten further requests (the bound asked is 60 s and 30
requests). What it may mistake: a limit counted over a fixed window of a minute or more that
refuses everything for more than 30 s of it; a probe (below) then finds out at the reset.

**The mark** ("spent until T") lives in the rate-limit bucket (`spent_until`, `mark_spent`,
`claim_probe` of `middleware.ratelimit.BucketBackend`; in Redis for a fleet), so that every
caller, process and later run sharing it fails fast with `ServerQuotaSpentError` without
sending. T is the quota's expected reset (``reset``: the next UTC midnight by default, since
such quotas are counted per UTC day and Crisp documents no reset time). Once T has passed,
one caller claims the mark and sends one probe: an answer that is not a refusal clears the
mark, a refusal sets it again, to the next reset or ``probe_again`` seconds later if that is
sooner (the reset time is a guess). A mark restored at a time already past (`mark_spent`
with T <= now) lets exactly that one probe through: what a new run does when an earlier
one recorded the quota spent, since Crisp may have reset early or the quota been raised.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from middleware.errors import PipelineError

DAY = 86400.0
SPENT_REFUSALS = 8
SPENT_SECONDS = 30.0
SUSPECT_REFUSALS = 3
PROBE_SPACING = 1.0
MAX_PROBE_SPACING = 8.0
PROBE_AGAIN = 900.0
PROBE_HOLD = 60.0


def next_utc_midnight(now: float, offset: float = 0.0) -> float:
    """The first UTC midnight (plus ``offset`` seconds) after the epoch time ``now``."""
    return (math.floor((now - offset) / DAY) + 1) * DAY + offset


class ServerQuotaSpentError(PipelineError):
    """The server's quota is spent (judged from its refusals, see `middleware.spent`); the
    request was not sent. ``reset_at`` is when it is expected to reset (epoch seconds),
    ``reset_in`` the seconds from now until then."""

    def __init__(self, reset_at: float, now: float) -> None:
        self.reset_at = reset_at
        self.reset_in = max(0.0, reset_at - now)
        super().__init__(f"the server's request quota is spent; it is expected to reset in "
                         f"{self.reset_in:.0f}s")


@dataclass(frozen=True, slots=True)
class SpentRule:
    """The constants of the rule (see the module docstring) and the expected reset time:
    ``reset(now)`` gives the next reset after the epoch time ``now``."""

    refusals: int = SPENT_REFUSALS
    seconds: float = SPENT_SECONDS
    suspect: int = SUSPECT_REFUSALS
    spacing: float = PROBE_SPACING
    max_spacing: float = MAX_PROBE_SPACING
    probe_again: float = PROBE_AGAIN
    probe_hold: float = PROBE_HOLD
    """Seconds a claimed probe holds the mark: if it never ends (the process dies), another
    caller may probe after this."""
    reset: Callable[[float], float] = next_utc_midnight

    def __post_init__(self) -> None:
        if not 1 <= self.suspect <= self.refusals:
            raise ValueError(f"suspect must be between 1 and refusals ({self.refusals}), "
                             f"got {self.suspect}")
        for name in ("seconds", "spacing", "max_spacing", "probe_again", "probe_hold"):
            value = getattr(self, name)
            if not 0.0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        if self.max_spacing < self.spacing:
            raise ValueError("max_spacing must not be below spacing")

    @classmethod
    def lasting(cls, seconds: float, reset: Callable[[float], float] = next_utc_midnight,
                ) -> SpentRule:
        """The rule with refusals judged over ``seconds`` instead of `SPENT_SECONDS`, the
        probes' spacing scaled alike (so that the count of refusals is reached in about that
        time): a shorter time tells a spent quota sooner, from tighter limits only."""
        scale = seconds / SPENT_SECONDS
        return cls(seconds=seconds, spacing=PROBE_SPACING * scale,
                   max_spacing=MAX_PROBE_SPACING * scale, reset=reset)

    def again(self, now: float) -> float:
        """When to probe again after a refused probe at ``now``."""
        return min(self.reset(now), now + self.probe_again)


class SpentQuotaWatch:
    """The rule's state for one client: the current streak of refusals and the gate that
    spaces requests while it lasts. Thread-safe; times are monotonic seconds, passed in."""

    def __init__(self, rule: SpentRule | None = None) -> None:
        self.rule = rule or SpentRule()
        self._changed = threading.Condition(threading.Lock())
        self._refusals = 0
        self._since = 0.0
        self._next_send = 0.0
        self._spacing = self.rule.spacing

    def admit(self, now: float) -> float:
        """0 if a request may be sent now (and, in a streak, take the gate's slot), else the
        seconds until the gate's next slot: wait (`wait_for_change`) and ask again."""
        if self._refusals < self.rule.suspect:  # no streak: no lock (a count read is atomic)
            return 0.0
        with self._changed:
            if self._refusals < self.rule.suspect:
                return 0.0
            if now < self._next_send:
                return self._next_send - now
            self._next_send = now + self._spacing
            self._spacing = min(self.rule.max_spacing, 2.0 * self._spacing)
            return 0.0

    def wait_for_change(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the streak ends (or the quota is found spent)."""
        with self._changed:
            self._changed.wait(seconds)

    def answered(self, now: float, refused: bool) -> bool:
        """Count an answer; True if it shows the quota spent (the streak then starts over)."""
        if not refused and not self._refusals:  # the common case, no streak to end: no lock
            return False
        rule = self.rule
        with self._changed:
            if not refused:
                if self._refusals:
                    self._end_streak()
                return False
            if self._refusals == 0:
                self._since = now
            self._refusals += 1
            if self._refusals == rule.suspect:
                self._next_send = now + self._spacing
                self._spacing = min(rule.max_spacing, 2.0 * self._spacing)
            if self._refusals >= rule.refusals and now - self._since >= rule.seconds:
                self._end_streak()
                return True
            return False

    def _end_streak(self) -> None:
        self._refusals, self._spacing, self._next_send = 0, self.rule.spacing, 0.0
        self._changed.notify_all()

    @property
    def streak(self) -> int:
        """Refusals in a row so far."""
        return self._refusals


class SpentMark:
    """The "spent until T" mark of one bucket in one process (the Redis bucket keeps its own
    in Redis). ``until`` is epoch seconds; None: not spent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: float | None = None

    def spent_until(self) -> float | None:
        return self._until

    def mark_spent(self, until: float | None) -> None:
        with self._lock:
            self._until = until

    def claim_probe(self, seen: float, hold_until: float) -> bool:
        """Move the mark from ``seen`` to ``hold_until`` if it still says ``seen``: True for
        the one caller that may then send the probe."""
        with self._lock:
            if self._until != seen:
                return False
            self._until = hold_until
            return True
