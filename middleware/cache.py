"""A response cache for GET requests that never serves data older than the client's own writes.

Rules, all enforced here:

* only GET answers with a 2xx status that the ``storable`` check accepts are stored (by
  default every 2xx; the Crisp client accepts only answers that decode as a success, so a
  200 carrying ``{"error": true}``, HTML or broken JSON is never served again); errors never
  are;
* the key is the request's ``partition`` (whose credentials), origin and path with query (the
  caller sorts the query, so equal queries give equal keys);
* entries expire after ``ttl`` seconds; at most ``maxsize`` are kept, holding at most
  ``max_bytes`` of bodies together (LRU beyond either; an answer larger than
  ``max_bytes`` is not stored), so a long-running process holds a bounded cache whatever
  the size of the answers;
* a write (POST/PUT/PATCH/DELETE) in group G drops every entry of G and every entry without
  a group, whoever cached it; a write without a group drops everything;
* a read that was in flight while such a write happened does not store its (possibly stale)
  answer: each read notes the group's generation before it goes out and stores only if that
  generation has not moved;
* ``request.use_cache = False`` skips the lookup and stores the fresh answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import NamedTuple, Protocol

from cachetools import LRUCache
from urllib3 import HTTPHeaderDict

from middleware.contract import Handler
from middleware.message import NOTE_CACHE, Request, Response

CacheKey = tuple[Hashable, str, str]


class CacheBackend(Protocol):
    """Where cached answers live."""

    def snapshot(self, group: str | None) -> Hashable:
        """A token naming the current generation of ``group``, taken before a read goes out."""
        ...

    def get(self, key: CacheKey) -> Response | None:
        """The stored answer for ``key``, if fresh."""
        ...

    def put(self, key: CacheKey, group: str | None, response: Response, token: Hashable) -> None:
        """Store ``response`` unless ``group`` was invalidated since ``token`` was taken.
        Keep its status, headers and body, not the object: the caller goes on using it
        (with what a layer decoded from it, which no other caller may share)."""
        ...

    def invalidate(self, group: str | None) -> None:
        """Drop the entries of ``group`` and those without a group (all of them for ``None``)."""
        ...


class InMemoryCache:
    """A bounded TTL cache for the threads of one process: a cachetools ``LRUCache`` of
    entries under one lock, each carrying its expiry and its group's generation.

    Entries carry their expiry instead of living in a ``TTLCache``, whose bookkeeping (a
    linked list of expiry times, walked on every store; an exception on every miss) was
    most of this layer's cost per request (see ``benchmarks``). They carry the snapshot
    (`snapshot`) their read took, too: an invalidation only moves its group's generation
    (or, for a write without a group, clears everything), and an entry whose snapshot is no
    longer current is never served, as in `middleware.redis_cache.RedisCache`. (Sets of
    each group's keys, kept to drop them, cost more per request than the rest of a store.)
    An expired or invalidated entry makes room like any least recently used one, so
    ``maxsize`` entries and ``max_bytes`` bytes of bodies still bound memory. The
    ``LRUCache`` weighs each entry by its body's length and is bounded by ``max_bytes``;
    the entry count is bounded here.
    """

    def __init__(
        self,
        maxsize: int = 1024,
        ttl: float = 2.0,
        timer: Callable[[], float] = time.monotonic,
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._timer = timer
        self._lock = threading.Lock()
        self._entries: LRUCache[CacheKey, _Entry] = LRUCache(max_bytes, getsizeof=_body_size)
        self._generations: dict[str | None, int] = {}
        self._epoch = 0

    def snapshot(self, group: str | None) -> Hashable:
        return (self._epoch, self._generations.get(group, 0))

    def get(self, key: CacheKey) -> Response | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.token != (self._epoch,
                                                self._generations.get(entry.group, 0)):
                return None
        if entry.expires <= self._timer():
            return None
        return Response(entry.status, entry.headers, entry.body)

    def put(self, key: CacheKey, group: str | None, response: Response, token: Hashable) -> None:
        entry = _Entry(self._timer() + self.ttl, response.status, response.headers,
                       response.body, group, token)
        with self._lock:
            if token != (self._epoch, self._generations.get(group, 0)):
                return
            entries = self._entries
            if len(entry.body) > self.max_bytes:
                entries.pop(key, None)  # too large to keep: not served stale either
                return
            entries[key] = entry
            if len(entries) > self.maxsize:  # one more than before, at most
                entries.popitem()

    def invalidate(self, group: str | None) -> None:
        with self._lock:
            if group is None:
                self._epoch += 1
                self._entries.clear()
                self._generations.clear()
                return
            for dropped in (group, None):
                self._generations[dropped] = self._generations.get(dropped, 0) + 1
            if len(self._generations) > 4 * self.maxsize:  # a bound on the groups ever seen
                self._epoch += 1
                self._generations.clear()

    def __len__(self) -> int:
        """How many answers could be served: fresh and not invalidated."""
        now = self._timer()
        with self._lock:
            return sum(
                entry.expires > now
                and entry.token == (self._epoch, self._generations.get(entry.group, 0))
                for entry in self._entries.values()
            )

    @property
    def size_bytes(self) -> int:
        """The bytes of bodies kept (expired and invalidated ones included, until they make
        room)."""
        with self._lock:
            return int(self._entries.currsize)

    def __repr__(self) -> str:
        return (
            f"<InMemoryCache maxsize={self.maxsize} max_bytes={self.max_bytes} ttl={self.ttl}s>"
        )


class _Entry(NamedTuple):
    """A stored answer: when it expires, what was answered, and the snapshot of its group
    taken before the read went out (it is served only while that is still current)."""

    expires: float
    status: int
    headers: HTTPHeaderDict
    body: bytes
    group: str | None
    token: Hashable


def _body_size(entry: _Entry) -> int:
    """An entry's weight against ``max_bytes``: its body's length."""
    return len(entry.body)


class ResponseCache:
    """The cache middleware; see the module docstring for the rules."""

    name = "cache"

    def __init__(
        self, backend: CacheBackend, storable: Callable[[Response], bool] | None = None
    ) -> None:
        self.backend = backend
        self.storable = storable

    def __call__(self, request: Request, call_next: Handler) -> Response:
        if request.method != "GET":
            if request.is_write:
                try:
                    return call_next(request)
                finally:
                    self.backend.invalidate(request.group)
            return call_next(request)
        key: CacheKey = (request.partition, request.origin, request.path)
        if request.use_cache:
            cached = self.backend.get(key)
            if cached is not None:
                request.notes[NOTE_CACHE] = "hit"
                return cached
            request.notes[NOTE_CACHE] = "miss"
        else:
            request.notes[NOTE_CACHE] = "bypass"
        token = self.backend.snapshot(request.group)
        response = call_next(request)
        if 200 <= response.status < 300 and (self.storable is None or self.storable(response)):
            self.backend.put(key, request.group, response, token)
        return response

    def __repr__(self) -> str:
        return f"<ResponseCache {self.backend!r}>"
