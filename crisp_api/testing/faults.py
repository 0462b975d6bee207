"""Fault injection: what can go wrong between a client and Crisp, and when it does.

`Faults` is the configuration (immutable; replace it to change faults while the server runs).
`FaultInjector` turns it into per-request decisions drawn from a generator seeded with
``Faults.seed``, so a given sequence of requests meets the same faults on every run.

Each request meets at most one *outcome* fault, chosen by a single draw in this order:
``drop_before_rate`` (connection closed, request not applied), ``hang_rate`` (request read,
never answered, not applied), ``error_rate`` (5xx, not applied), ``throttle_rate`` (429/420
with Retry-After, not applied), ``drop_after_rate`` (request applied, then the connection is
closed without an answer). On top of that, ``latency_ms`` delays the handling and
``slow_body_rate`` trickles the answer's body. ``methods`` and ``routes`` restrict all of these
to matching requests; ``budget`` caps how many outcome and slow-body faults are injected.

The token bucket (``bucket_rate``/``bucket_burst``) is different: it is a real rate limiter,
keyed by the request's credentials, applied to every authenticated ``/v1`` request whatever
``methods``/``routes`` say, and refilled continuously. So is ``daily_quota``, a quota per
credential that is reset only on demand, when the faults are replaced.

``event_delay_ms`` is not about requests at all: it holds back every RTM event the fake's
socket server pushes (a lagging real-time feed), whatever the other fields say.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from crisp_api.testing.generate import seeded

ERROR_STATUSES = (500, 502, 503, 504)
THROTTLE_STATUSES = (429, 420)


def _frozen(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True)
class Faults:
    """What to inject; the default injects nothing. Rates are fractions of the matching
    requests (0 to 1); the five outcome rates together must not exceed 1.

    - ``latency_ms``: delay before handling, fixed or a ``(low, high)`` range drawn uniformly.
    - ``error_rate``: answer one of ``error_statuses``, as Crisp's JSON error or, for
      ``html_error_ratio`` of them, as a load balancer's ``text/html`` page.
    - ``throttle_rate``: answer one of ``throttle_statuses`` with ``Retry-After:
      retry_after`` (seconds).
    - ``bucket_rate``/``bucket_burst``: a token bucket per token (requests per second,
      capacity); when empty, 429 with ``Retry-After`` the seconds until the next token, or
      without it if ``bucket_retry_after`` is false (Crisp documents no such header).
    - ``daily_quota``: per token, answer this many authenticated requests, then refuse every
      one with a plain 429 (no ``Retry-After``, no reason of its own: Crisp documents none)
      until the quota is reset, which replacing the faults does (``set_faults`` or
      ``update_faults``: the day's reset, on demand).
    - ``drop_before_rate``: reset the connection as soon as the request arrives; nothing is
      applied.
    - ``drop_after_rate``: apply the request, then close the connection without answering.
    - ``hang_rate``: read the request, never answer nor apply it.
    - ``slow_body_rate``: send the answer's body ``slow_chunk_bytes`` at a time,
      ``slow_chunk_delay_ms`` apart.
    - ``methods``/``routes``: only fault these HTTP methods / catalogue route names
      (``send_message_in_conversation``) or templates (``/website/{website_id}``); ``None``
      means all.
    - ``budget``: stop after this many outcome and slow-body faults (``None``: never).
    - ``seed``: of the generator that draws the decisions.
    - ``event_delay_ms``: push every RTM event this long after its change (events keep their
      order).
    """

    latency_ms: float | tuple[float, float] = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = ERROR_STATUSES
    html_error_ratio: float = 0.5
    throttle_rate: float = 0.0
    throttle_statuses: tuple[int, ...] = THROTTLE_STATUSES
    retry_after: int = 1
    bucket_rate: float | None = None
    bucket_burst: int = 10
    bucket_retry_after: bool = True
    daily_quota: int | None = None
    drop_before_rate: float = 0.0
    drop_after_rate: float = 0.0
    hang_rate: float = 0.0
    slow_body_rate: float = 0.0
    slow_chunk_bytes: int = 64
    slow_chunk_delay_ms: float = 10.0
    methods: Collection[str] | None = None
    routes: Collection[str] | None = None
    budget: int | None = None
    seed: int = 0
    event_delay_ms: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", _frozen(
            None if self.methods is None else (method.upper() for method in self.methods)))
        object.__setattr__(self, "routes", _frozen(self.routes))
        if isinstance(self.latency_ms, list):
            object.__setattr__(self, "latency_ms", tuple(self.latency_ms))
        object.__setattr__(self, "error_statuses", tuple(self.error_statuses))
        object.__setattr__(self, "throttle_statuses", tuple(self.throttle_statuses))
        self._validate()

    def _validate(self) -> None:
        rates = (self.error_rate, self.throttle_rate, self.drop_before_rate,
                 self.drop_after_rate, self.hang_rate)
        if any(not 0.0 <= rate <= 1.0 for rate in (*rates, self.slow_body_rate,
                                                   self.html_error_ratio)):
            raise ValueError("fault rates must be within 0..1")
        if sum(rates) > 1.0 + 1e-9:
            raise ValueError("error, throttle, drop and hang rates must add up to at most 1")
        low, high = self.latency_range
        if not 0.0 <= low <= high:
            raise ValueError("latency_ms must be >= 0 (or a (low, high) range with low <= high)")
        if not self.error_statuses or any(not 500 <= s <= 599 for s in self.error_statuses):
            raise ValueError("error_statuses must be 5xx statuses")
        if not self.throttle_statuses or any(s not in THROTTLE_STATUSES
                                             for s in self.throttle_statuses):
            raise ValueError("throttle_statuses must be 429 and/or 420")
        if self.retry_after < 0 or self.slow_chunk_bytes < 1 or self.slow_chunk_delay_ms < 0:
            raise ValueError("retry_after, slow_chunk_bytes and slow_chunk_delay_ms must be "
                             "positive")
        if self.bucket_rate is not None and (self.bucket_rate <= 0 or self.bucket_burst < 1):
            raise ValueError("bucket_rate must be > 0 and bucket_burst >= 1")
        if self.daily_quota is not None and self.daily_quota < 0:
            raise ValueError("daily_quota must be >= 0")
        if self.budget is not None and self.budget < 0:
            raise ValueError("budget must be >= 0")
        if not 0.0 <= self.event_delay_ms < math.inf:
            raise ValueError("event_delay_ms must be a number of milliseconds >= 0")

    @property
    def latency_range(self) -> tuple[float, float]:
        """``latency_ms`` as a ``(low, high)`` pair."""
        if isinstance(self.latency_ms, tuple):
            return float(self.latency_ms[0]), float(self.latency_ms[1])
        return float(self.latency_ms), float(self.latency_ms)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, the inverse of `from_json`."""
        body = asdict(self)
        for name in ("methods", "routes"):
            if body[name] is not None:
                body[name] = sorted(body[name])
        for name in ("latency_ms", "error_statuses", "throttle_statuses"):
            if isinstance(body[name], tuple):
                body[name] = list(body[name])
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Faults:
        """Faults from a JSON object; absent fields keep their defaults. Raises ValueError
        (or TypeError) on unknown fields or bad values."""
        known = {item.name for item in fields(cls)}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**body)


class Outcome(enum.Enum):
    """What happens to a request, besides latency and slow bodies."""

    NORMAL = "normal"
    DROP_BEFORE = "drop_before"
    HANG = "hang"
    ERROR = "error"
    THROTTLE = "throttle"
    DROP_AFTER = "drop_after"


@dataclass(frozen=True, slots=True)
class Decision:
    """The faults one request meets. ``status``/``html`` only matter for ERROR and THROTTLE;
    ``slow_chunk`` > 0 trickles the body ``slow_chunk`` bytes every ``slow_delay`` seconds."""

    outcome: Outcome = Outcome.NORMAL
    delay: float = 0.0
    status: int = 0
    html: bool = False
    slow_chunk: int = 0
    slow_delay: float = 0.0

    @property
    def deferred(self) -> bool:
        """Whether answering must wait (latency or a slow body)."""
        return self.delay > 0.0 or self.slow_chunk > 0


NO_FAULT = Decision()


class FaultInjector:
    """Draws the `Decision` of each request from one `Faults` configuration.

    Used from the server's event loop only; replacing the configuration means building a new
    injector (with a fresh generator, budget and buckets).
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = seeded(faults.seed)
        self._budget = faults.budget
        self._buckets: dict[str, tuple[float, float]] = {}
        self._spent: dict[str, int] = {}
        self._active = faults != Faults(bucket_rate=faults.bucket_rate,
                                        bucket_burst=faults.bucket_burst,
                                        bucket_retry_after=faults.bucket_retry_after,
                                        daily_quota=faults.daily_quota,
                                        seed=faults.seed, event_delay_ms=faults.event_delay_ms)

    def decide(self, method: str, route_name: str | None, template: str | None) -> Decision:
        """The faults for one request (``route_name``/``template`` None if unknown)."""
        if not self._active or not self._matches(method, route_name, template):
            return NO_FAULT
        faults = self.faults
        rng = self._rng
        low, high = faults.latency_range
        delay = (low if low == high else rng.uniform(low, high)) / 1000.0
        outcome, status, html = self._outcome(rng.random())
        slow = rng.random() < faults.slow_body_rate
        if outcome is not Outcome.NORMAL and not self._spend():
            outcome, status, html = Outcome.NORMAL, 0, False
        slow = slow and self._spend()
        return Decision(outcome, delay, status, html,
                        faults.slow_chunk_bytes if slow else 0,
                        faults.slow_chunk_delay_ms / 1000.0)

    def _spend(self) -> bool:
        """Take one fault from the budget; False once it is spent."""
        if self._budget is None:
            return True
        if self._budget == 0:
            return False
        self._budget -= 1
        return True

    def _matches(self, method: str, route_name: str | None, template: str | None) -> bool:
        faults = self.faults
        if faults.methods is not None and method not in faults.methods:
            return False
        return faults.routes is None or route_name in faults.routes or template in faults.routes

    def _outcome(self, roll: float) -> tuple[Outcome, int, bool]:
        faults = self.faults
        for outcome, rate in (
            (Outcome.DROP_BEFORE, faults.drop_before_rate),
            (Outcome.HANG, faults.hang_rate),
            (Outcome.ERROR, faults.error_rate),
            (Outcome.THROTTLE, faults.throttle_rate),
            (Outcome.DROP_AFTER, faults.drop_after_rate),
        ):
            if roll < rate:
                if outcome is Outcome.ERROR:
                    return (outcome, self._rng.choice(faults.error_statuses),
                            self._rng.random() < faults.html_error_ratio)
                if outcome is Outcome.THROTTLE:
                    return outcome, self._rng.choice(faults.throttle_statuses), False
                return outcome, 0, False
            roll -= rate
        return Outcome.NORMAL, 0, False

    def spend_quota(self, key: str) -> bool:
        """Count one request of ``key`` against the daily quota: False once it is spent."""
        quota = self.faults.daily_quota
        if quota is None:
            return True
        used = self._spent.get(key, 0)
        if used >= quota:
            return False
        self._spent[key] = used + 1
        return True

    def take_token(self, key: str) -> int | None:
        """Spend one token of ``key``'s bucket: None if granted, else the seconds to wait
        (at least 1) before a token is back."""
        rate = self.faults.bucket_rate
        if rate is None:
            return None
        burst = float(self.faults.bucket_burst)
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / rate))
