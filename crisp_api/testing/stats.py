"""Counters and a bounded log of the ``/v1`` requests the fake received, for assertions.

The server's thread records; tests read `StatsSnapshot` copies taken under a lock, so a
snapshot never changes under the reader.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

REDACTED = "<redacted>"


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the client sent it. The Authorization value is replaced by
    ``<scheme> <redacted>``; ``fault`` names the injected outcome, if any (``drop_before``,
    ``hang``, ``error``, ``throttle``, ``drop_after``); ``at`` is when the fake received it
    (epoch seconds), so a test counts the requests of a time window exactly, however late it
    looks."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    fault: str | None
    at: float = 0.0

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), if it was sent."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the body decoded as UTF-8, invalid bytes replaced)."""
        return {"method": self.method, "target": self.target,
                "headers": [list(pair) for pair in self.headers],
                "body": self.body.decode("utf-8", "replace"), "fault": self.fault,
                "at": self.at}


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What the fake has seen since start (or the last reset).

    ``requests`` counts every ``/v1`` request read, faulted or not; ``routes`` counts them by
    ``(method, path template)`` for recognised routes; ``posts`` counts POST requests;
    ``message_posts`` counts messages actually created through ``POST .../message``, by
    session id (so a duplicate send shows as 2); ``statuses`` counts answers sent by status
    (206 as well as 200 for successes, see `successes`); ``faults`` counts injected faults by
    kind (including ``bucket`` refusals).
    """

    requests: int
    posts: int
    routes: dict[tuple[str, str], int]
    statuses: dict[int, int]
    message_posts: dict[str, int]
    faults: dict[str, int]
    log: tuple[LoggedRequest, ...]

    @property
    def successes(self) -> int:
        """Answers sent with a 2xx status: 200, and 206 for pages of messages with older
        ones left."""
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    def count(self, method: str, template: str) -> int:
        """Requests received for one route, e.g. ``("GET", "/website/{website_id}")``."""
        return self.routes.get((method, template), 0)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, the inverse of `from_json`."""
        return {
            "requests": self.requests,
            "posts": self.posts,
            "routes": [[method, template, count]
                       for (method, template), count in sorted(self.routes.items())],
            "statuses": {str(status): count for status, count in self.statuses.items()},
            "message_posts": dict(self.message_posts),
            "faults": dict(self.faults),
            "log": [entry.to_json() for entry in self.log],
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> StatsSnapshot:
        """A snapshot from `to_json` output (as the admin endpoint serves it)."""
        return cls(
            requests=body["requests"],
            posts=body["posts"],
            routes={(method, template): count for method, template, count in body["routes"]},
            statuses={int(status): count for status, count in body["statuses"].items()},
            message_posts=dict(body["message_posts"]),
            faults=dict(body["faults"]),
            log=tuple(
                LoggedRequest(entry["method"], entry["target"],
                              tuple((name, value) for name, value in entry["headers"]),
                              entry["body"].encode(), entry["fault"], entry["at"])
                for entry in body["log"]
            ),
        )


class Stats:
    """The live, thread-safe counters behind `StatsSnapshot`."""

    def __init__(self, log_size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._log_size = log_size
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._requests = 0
            self._posts = 0
            self._routes: Counter[tuple[str, str]] = Counter()
            self._statuses: Counter[int] = Counter()
            self._message_posts: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._log: deque[LoggedRequest] = deque(maxlen=self._log_size)

    def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
                *, template: str | None, fault: str | None) -> None:
        """Record a received request."""
        kept = tuple(
            (name, _redact(value)) if name.lower() == "authorization" else (name, value)
            for name, value in headers
        )
        with self._lock:
            self._requests += 1
            if method == "POST":
                self._posts += 1
            if template is not None:
                self._routes[(method, template)] += 1
            if fault is not None:
                self._faults[fault] += 1
            self._log.append(LoggedRequest(method, target, kept, body, fault, time.time()))

    def answered(self, status: int) -> None:
        """Record an answer sent with ``status``."""
        with self._lock:
            self._statuses[status] += 1

    def fault(self, kind: str) -> None:
        """Record a fault decided after the request was logged (a bucket refusal)."""
        with self._lock:
            self._faults[kind] += 1

    def message_posted(self, session_id: str) -> None:
        """Record a message created through the API in ``session_id``."""
        with self._lock:
            self._message_posts[session_id] += 1

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy of everything recorded."""
        with self._lock:
            return StatsSnapshot(self._requests, self._posts, dict(self._routes),
                                 dict(self._statuses), dict(self._message_posts),
                                 dict(self._faults), tuple(self._log))


def _redact(value: str) -> str:
    scheme, space, _ = value.partition(" ")
    return f"{scheme} {REDACTED}" if space else REDACTED
