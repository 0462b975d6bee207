"""A discrete-event simulation of threads sending through an `AdaptiveBucket` to a server whose
token bucket refuses with 429: the control law on a virtual clock, for fast, exact tests.

The real-socket version of the same scenario is in tests/middleware/test_adaptive.py.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from middleware import AdaptiveBucket, AdaptiveSettings

_RESERVE, _SEND, _ANSWERED, _THROTTLED = 0, 1, 2, 3


@dataclass(frozen=True)
class Phase:
    """``seconds`` during which the server allows ``limit`` requests/s."""

    seconds: float
    limit: float


@dataclass(frozen=True)
class Sent:
    """One request as the server saw it."""

    at: float
    ok: bool


def simulate(
    phases: list[Phase],
    *,
    threads: int = 16,
    latency: float = 0.005,
    server_burst: int = 10,
    noise: float = 0.0,
    seed: int = 1,
    settings: AdaptiveSettings | None = None,
) -> tuple[list[Sent], AdaptiveBucket]:
    """Run ``threads`` callers for the phases; a refused request is retried after a jittered
    wait of up to 0.25 s. ``noise`` refuses that share of requests at random on top."""
    rng = random.Random(seed)
    clock = [0.0]
    bucket = AdaptiveBucket(10, clock=lambda: clock[0], settings=settings)
    tokens, refilled = float(server_burst), 0.0
    ends = []
    total = 0.0
    for phase in phases:
        total += phase.seconds
        ends.append((total, phase.limit))
    events = [(0.0, _RESERVE, thread) for thread in range(threads)]
    heapq.heapify(events)
    log: list[Sent] = []
    while events:
        now, kind, thread = heapq.heappop(events)
        if now > total:
            continue
        clock[0] = now
        if kind == _RESERVE:
            heapq.heappush(events, (now + max(0.0, bucket.reserve(None)), _SEND, thread))
        elif kind == _SEND:
            limit = next(limit for end, limit in ends if now < end)
            tokens = min(float(server_burst), tokens + (now - refilled) * limit)
            refilled = now
            ok = tokens >= 1.0
            if ok:
                tokens -= 1.0
            ok = ok and rng.random() >= noise
            log.append(Sent(now, ok))
            heapq.heappush(events, (now + latency, _ANSWERED if ok else _THROTTLED, thread))
        elif kind == _ANSWERED:
            heapq.heappush(events, (now, _RESERVE, thread))
        else:
            bucket.throttled()
            heapq.heappush(events, (now + rng.uniform(0.0, 0.25), _RESERVE, thread))
    return log, bucket


def steady(log: list[Sent], start: float, end: float) -> tuple[float, float]:
    """(successful requests/s, share of refusals) between ``start`` and ``end``."""
    inside = [sent for sent in log if start <= sent.at < end]
    ok = sum(sent.ok for sent in inside)
    return ok / (end - start), 1.0 - ok / max(1, len(inside))
