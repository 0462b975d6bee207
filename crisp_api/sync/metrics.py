"""Counting what a sync costs: calls, cache hits, requests sent, retries, rate-limit answers.

Two layers of one counter: ``calls`` goes outermost (it sees every call, cache hits included)
and ``sent`` goes innermost (it sees every attempt that reaches the network). Retries are the
attempts beyond the first of each call that was not a cache hit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crisp_api.defaults import RATE_LIMIT_STATUSES
from middleware import NOTE_CACHE, Handler, Request, Response

if TYPE_CHECKING:
    from crisp_api.client import Crisp


@dataclass(frozen=True, slots=True)
class Counts:
    """A snapshot of the counters."""

    calls: int
    cache_hits: int
    requests: int
    rate_limited: int

    @property
    def retries(self) -> int:
        """Attempts beyond the first of each call that went to the network."""
        return max(0, self.requests - (self.calls - self.cache_hits))


class RequestCounter:
    """Thread-safe counters fed by two middlewares; put them in a client with `install`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = self._hits = self._requests = self._limited = 0
        self.calls = _CallLayer(self)
        self.sent = _SentLayer(self)

    def snapshot(self) -> Counts:
        """The counts so far."""
        with self._lock:
            return Counts(self._calls, self._hits, self._requests, self._limited)

    def _count_call(self, hit: bool) -> None:
        with self._lock:
            self._calls += 1
            self._hits += hit

    def _count_sent(self, limited: bool) -> None:
        with self._lock:
            self._requests += 1
            self._limited += limited


class _CallLayer:
    name = "sync_calls"

    def __init__(self, counter: RequestCounter) -> None:
        self._counter = counter

    def __call__(self, request: Request, call_next: Handler) -> Response:
        try:
            return call_next(request)
        finally:
            self._counter._count_call(request.notes.get(NOTE_CACHE) == "hit")


class _SentLayer:
    name = "sync_sent"

    def __init__(self, counter: RequestCounter) -> None:
        self._counter = counter

    def __call__(self, request: Request, call_next: Handler) -> Response:
        limited = False
        try:
            response = call_next(request)
            limited = response.status in RATE_LIMIT_STATUSES
            return response
        finally:
            self._counter._count_sent(limited)


def install(counter: RequestCounter, client: Crisp) -> None:
    """Put ``counter``'s layers outermost and just before authentication in ``client``."""
    stack = client.middleware
    if stack:
        client.use(counter.calls, before=stack[0].name)
    else:
        client.use(counter.calls)
    if any(layer.name == "auth" for layer in client.middleware):
        client.use(counter.sent, before="auth")
    else:
        client.use(counter.sent)
