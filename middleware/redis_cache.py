"""The response cache in Redis: an answer fetched by one process serves all of them, and a
write by any of them invalidates it for all.

The rules are `InMemoryCache`'s (see `middleware.cache`): same keys, same TTL, a write in
group G drops G and the entries without a group, a write without a group drops everything,
and a read in flight while such a write happens does not store its answer. Across processes
they are kept with generation counters instead of deleting entries:

* ``<prefix>:cache:generations`` is one hash: ``e`` (the epoch, bumped by a write without a
  group), ``n`` (the generation of the entries without a group) and one ``g<hash>`` field
  per group that was ever written to. A write in G adds one to G's field and to ``n``; a write
  without a group (or more than ``max_groups`` groups remembered) bumps the epoch and forgets
  the groups. It is shared by every credential using the prefix, as in memory a write
  invalidates an entry whoever cached it.
* A read notes its group's stamp (``epoch:generation``) before it goes out (`snapshot`);
  the answer is stored only if the stamp is still the same (a Lua script checks and writes
  atomically), and the entry carries the stamp. A lookup returns the entry only if its stamp
  is still current (another script), so a write invalidates every entry of its group at once
  without finding or deleting them; they expire with their TTL.
* An entry is ``<prefix>:<scope>:cache:<hash of origin and path>`` (``scope`` is the hashed
  request partition), holding ``<generation field>\\n<stamp>\\n[status, headers]\\n<body>``:
  the status, the headers named in ``keep_headers`` (all by default) as compact JSON, and the
  body bytes as they are. Answers larger than ``max_entry`` bytes are not shared.

Without Redis (see `middleware.redis_link`) the cache steps aside: lookups miss, nothing is
stored, and writes are remembered so that their invalidations reach Redis first thing when it
answers again; an entry stored before the outage cannot outlive a write made during it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Collection, Hashable
from typing import TypeVar

from urllib3 import HTTPHeaderDict

from middleware.cache import CacheKey
from middleware.message import Response
from middleware.redis_link import RedisLink, scope_digest

T = TypeVar("T")

GET = """
-- KEYS[1]: the entry, KEYS[2]: the generations hash. Returns the entry if its stamp is current.
local entry = redis.call('GET', KEYS[1])
if not entry then return false end
local first = string.find(entry, '\\n', 1, true)
local second = first and string.find(entry, '\\n', first + 1, true)
if not second then return false end
local current = redis.call('HMGET', KEYS[2], 'e', string.sub(entry, 1, first - 1))
if string.sub(entry, first + 1, second - 1) ~= (current[1] or '0') .. ':' .. (current[2] or '0')
then
  return false
end
return entry
"""

PUT = """
-- KEYS[1]: the entry, KEYS[2]: the generations hash. ARGV: the generation field, the stamp
-- noted before the read went out, the TTL (ms), the entry. Stores it if the stamp is current.
local current = redis.call('HMGET', KEYS[2], 'e', ARGV[1])
if ARGV[2] ~= (current[1] or '0') .. ':' .. (current[2] or '0') then return 0 end
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
return 1
"""

INVALIDATE = """
-- KEYS[1]: the generations hash. ARGV: the group's field ('' for a write without a group),
-- how many groups to remember before starting a new epoch instead.
if ARGV[1] ~= '' then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
  redis.call('HINCRBY', KEYS[1], 'n', 1)
  if redis.call('HLEN', KEYS[1]) <= tonumber(ARGV[2]) then return 1 end
end
local epoch = redis.call('HINCRBY', KEYS[1], 'e', 1)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', epoch)
return 1
"""

_OFFLINE = object()
"""The snapshot taken while Redis is unreachable: no stamp, so the answer is not stored."""

MAX_DEFERRED = 256
"""Writes remembered during an outage beyond which a single invalidation of everything is sent."""


class RedisCache:
    """A `CacheBackend` in Redis, shared by every process using the same link prefix.

    ``ttl`` is in seconds. ``maxsize`` has no equivalent: Redis holds what its memory policy
    allows, and every entry expires after ``ttl``.
    """

    def __init__(
        self,
        link: RedisLink,
        ttl: float = 2.0,
        *,
        keep_headers: Collection[str] | None = None,
        max_entry: int = 1 << 20,
        max_groups: int = 10_000,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.link = link
        self.ttl = ttl
        self.keep_headers = None if keep_headers is None else frozenset(
            name.lower() for name in keep_headers)
        self.max_entry = max_entry
        self.max_groups = max_groups
        self._ttl_ms = max(1, round(ttl * 1000))
        self._generations = link.key("cache", "generations")
        self._get = link.redis.register_script(GET)
        self._put = link.redis.register_script(PUT)
        self._invalidate = link.redis.register_script(INVALIDATE)
        self._lock = threading.Lock()
        self._deferred: set[str | None] = set()

    def snapshot(self, group: str | None) -> Hashable:
        field = _field(group)
        return self._run(lambda: self._stamp(field), lambda: _OFFLINE)

    def get(self, key: CacheKey) -> Response | None:
        return self._run(lambda: self._fetch(key), lambda: None)

    def put(self, key: CacheKey, group: str | None, response: Response, token: Hashable) -> None:
        if not isinstance(token, bytes):
            return
        field = _field(group)
        entry = b"\n".join((field.encode(), token, self._encode(response)))
        if len(entry) > self.max_entry:
            return
        self._run(
            lambda: self._put(keys=[self._entry_key(key), self._generations],
                              args=[field, token, self._ttl_ms, entry]),
            lambda: None,
        )

    def invalidate(self, group: str | None) -> None:
        self._run(lambda: self._invalidate_shared(group), lambda: self._defer({group}))

    def _run(self, operation: Callable[[], T], fallback: Callable[[], T]) -> T:
        """`RedisLink.run`, sending the invalidations deferred during an outage first."""

        def shared() -> T:
            if self._deferred:
                self._replay()
            return operation()

        return self.link.run(shared, fallback)

    def _stamp(self, field: str) -> bytes:
        epoch, generation = self.link.redis.hmget(self._generations, ["e", field])
        return b":".join(value if isinstance(value, bytes) else b"0"
                         for value in (epoch, generation))

    def _fetch(self, key: CacheKey) -> Response | None:
        entry = self._get(keys=[self._entry_key(key), self._generations])
        return None if entry is None else _decode(bytes(entry))

    def _invalidate_shared(self, group: str | None) -> None:
        self._invalidate(keys=[self._generations],
                         args=["" if group is None else _field(group), self.max_groups])

    def _defer(self, groups: set[str | None]) -> None:
        with self._lock:
            self._deferred |= groups
            if len(self._deferred) > MAX_DEFERRED:
                self._deferred = {None}

    def _replay(self) -> None:
        """Send the invalidations deferred during an outage (all of them, or put them back)."""
        with self._lock:
            groups, self._deferred = self._deferred, set()
        try:
            for group in [None] if None in groups else groups:
                self._invalidate_shared(group)
        except BaseException:
            self._defer(groups)
            raise

    def _entry_key(self, key: CacheKey) -> str:
        partition, origin, path = key
        digest = hashlib.sha256(f"{origin}\n{path}".encode()).hexdigest()[:32]
        return self.link.key(scope_digest(partition), "cache", digest)

    def _encode(self, response: Response) -> bytes:
        keep = self.keep_headers
        headers = [[name, value] for name, value in response.headers.items()
                   if keep is None or name.lower() in keep]
        head = json.dumps([response.status, headers], separators=(",", ":"))
        return head.encode() + b"\n" + response.body

    def __repr__(self) -> str:
        return f"<RedisCache ttl={self.ttl}s {self.link!r}>"


def _field(group: str | None) -> str:
    """The generations-hash field of ``group``: ``n`` for none, ``g<hash>`` otherwise."""
    if group is None:
        return "n"
    return "g" + hashlib.sha256(group.encode()).hexdigest()[:20]


def _decode(entry: bytes) -> Response | None:
    """The answer stored in ``entry``; None if it cannot be read (treated as a miss)."""
    try:
        _, _, head, body = entry.split(b"\n", 3)
        status, pairs = json.loads(head)
        headers = HTTPHeaderDict()
        for name, value in pairs:
            headers.add(name, value)
        return Response(int(status), headers, body)
    except (ValueError, TypeError):
        return None
