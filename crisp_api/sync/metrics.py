"""Counting what a sync costs: calls, cache hits, requests sent, retries, rate-limit answers.

One outermost layer counts every call (cache hits included) and listens to the call's attempts
(`middleware.attempts`): each attempt that reached the network is a request, throttled or not
as the retry layer judged it. Retries are the attempts beyond the first of each call that was
not a cache hit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from middleware import NOTE_CACHE, Handler, Outcome, Request, Response, listen

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
    """Thread-safe counters fed by one layer (`calls`); put it in a client with `install`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = self._hits = self._requests = self._limited = 0
        self.calls = _CallLayer(self)

    def snapshot(self) -> Counts:
        """The counts so far."""
        with self._lock:
            return Counts(self._calls, self._hits, self._requests, self._limited)

    def _count_call(self, hit: bool) -> None:
        with self._lock:
            self._calls += 1
            self._hits += hit

    def _count_sent(self, _request: Request, outcome: Outcome) -> None:
        """An attempt listener: one request sent."""
        with self._lock:
            self._requests += 1
            self._limited += outcome.throttled


class _CallLayer:
    name = "sync_calls"

    def __init__(self, counter: RequestCounter) -> None:
        self._counter = counter
        self._sent = counter._count_sent  # bound once, not per request

    def __call__(self, request: Request, call_next: Handler) -> Response:
        listen(request, self._sent)
        try:
            return call_next(request)
        finally:
            self._counter._count_call(request.notes.get(NOTE_CACHE) == "hit")


def install(counter: RequestCounter, client: Crisp) -> None:
    """Put ``counter``'s layer outermost in ``client``."""
    stack = client.middleware
    if stack:
        client.use(counter.calls, before=stack[0].name)
    else:
        client.use(counter.calls)
