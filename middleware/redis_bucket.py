"""The token bucket, its 429 pause and an optional request quota, shared through Redis.

Every process and machine whose `RedisBucket` has the same link prefix and scope draws from
one bucket: a fleet limited to 50 requests/s sends 50/s in total, and a 429 answered to any
of them pauses all of them.

A reservation is one Lua script run by EVALSHA (redis-py's ``register_script`` falls back to
loading the script when Redis answers NOSCRIPT, e.g. after a restart), so it is atomic and
costs one round trip. The script reads the time from Redis (``TIME``): no client clock is
trusted, and machines with skewed clocks still share one timeline. It follows
`InMemoryBucket` exactly (refill since the last take, capped at ``burst``; wait for the pause
and for the token to mature; refuse without taking when the wait would exceed ``max_wait``;
a pause restarts the bucket empty at its end, so queued callers resume at the rate) and adds
the `DailyQuota` schedule of `middleware.quota` when one is given.

State is one hash per scope, ``<prefix>:<scope>:bucket``, with fields ``t`` (tokens), ``u``
(their time), ``p`` (paused until), ``q``/``n``/``a`` (quota period, requests reserved in
it, its next free slot); times are Redis microseconds. The key expires once it holds nothing
worth keeping: a full bucket, no pause, a finished quota period.

When Redis fails the bucket carries on with a local bucket of the same settings (see
`middleware.redis_link`); once Redis is back, it first hands over what happened meanwhile:
a pause still running and the requests it counted against the quota alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from middleware.quota import DailyQuota, QuotaBucket, QuotaExhaustedError
from middleware.ratelimit import BucketBackend, InMemoryBucket
from middleware.redis_link import RedisLink, scope_digest

RESERVE = """
-- KEYS[1]: the bucket's hash. ARGV: rate (tokens/s, 0: no rate), burst, max_wait (s, < 0:
-- no bound), quota limit (0: no quota), quota period (s), quota burst.
-- Replies {'ok', wait, period, used}, {'later', -wait} or {'quota', reset in, period, used}.
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local rate, burst, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, period, qburst = tonumber(ARGV[4]), tonumber(ARGV[5]) * 1000000, tonumber(ARGV[6])
local state = redis.call('HMGET', KEYS[1], 't', 'u', 'p', 'q', 'n', 'a')
local wait = math.max(0, (tonumber(state[3]) or 0) - now)
local keep = wait
local tokens = burst
if rate > 0 then
  local elapsed = now - (tonumber(state[2]) or now)  -- negative while a pause restarts it
  tokens = math.min(burst, (tonumber(state[1]) or burst) + elapsed * rate / 1000000)
  if tokens < 1 then wait = math.max(wait, (1 - tokens) * 1000000 / rate) end
end
local index, used, slot, interval = 0, 0, 0, 0
if limit > 0 then
  index = math.floor(now / period)
  local finish = (index + 1) * period
  if tonumber(state[4]) == index then
    used, slot = tonumber(state[5]) or 0, tonumber(state[6]) or 0
  end
  if used >= limit then
    return {'quota', tostring((finish - now) / 1000000), tostring(index), tostring(used)}
  end
  slot = math.max(now, slot)
  interval = (finish - slot) / (limit - used)
  wait = math.max(wait, slot - (qburst - 1) * interval - now)
  keep = math.max(keep, finish - now)
end
if max_wait >= 0 and wait > max_wait * 1000000 then
  return {'later', tostring(-wait / 1000000)}
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 't', tokens - 1, 'u', now)
  keep = math.max(keep, (burst - tokens + 1) * 1000000 / rate)
end
if limit > 0 then
  redis.call('HSET', KEYS[1], 'q', index, 'n', used + 1, 'a', slot + interval)
end
if rate > 0 or limit > 0 then
  local ttl = math.ceil(keep / 1000) + 1000
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return {'ok', tostring(wait / 1000000), tostring(index), tostring(used + 1)}
"""

MERGE = """
-- KEYS[1]: the bucket's hash. ARGV: pause (s), rate (tokens/s, 0: no rate), burst, quota
-- period (s), quota period index (< 0: no count to hand over), the count last seen for that
-- period, requests counted alone since.
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local pause, rate, burst = tonumber(ARGV[1]) * 1000000, tonumber(ARGV[2]), tonumber(ARGV[3])
local keep = 0
local state = redis.call('HMGET', KEYS[1], 'p', 't', 'u', 'q', 'n')
if pause > 0 then
  local resume = now + pause
  if resume > (tonumber(state[1]) or 0) then redis.call('HSET', KEYS[1], 'p', resume) end
  keep = pause
  -- With a rate the bucket restarts empty when the pause ends: its first token matures then
  -- and the callers queued meanwhile follow at the rate, not all at once. Reservations
  -- already queued past the end keep their places.
  local tokens, updated = tonumber(state[2]), tonumber(state[3])
  if rate > 0 and (not tokens or updated + (1 - tokens) * 1000000 / rate < resume) then
    redis.call('HSET', KEYS[1], 't', 1, 'u', resume)
    keep = pause + (burst - 1) * 1000000 / rate
  end
end
local period, index = tonumber(ARGV[4]) * 1000000, tonumber(ARGV[5])
if index >= 0 and index == math.floor(now / period) then
  local used = 0
  if tonumber(state[4]) == index then used = tonumber(state[5]) or 0 end
  used = math.max(used, tonumber(ARGV[6])) + tonumber(ARGV[7])
  redis.call('HSET', KEYS[1], 'q', index, 'n', used)
  keep = math.max(keep, (index + 1) * period - now)
end
if keep > 0 then
  local ttl = math.ceil(keep / 1000) + 1000
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return 1
"""


class RedisBucket:
    """A `BucketBackend` in Redis: ``rate`` requests/s up to ``burst`` (``rate=None``: only
    the server's pauses), plus ``quota`` if given, for everyone sharing the link and scope.

    ``scope`` names whose bucket this is, asked at each reservation (for a client: its
    credentials and tier, which may change after the bucket is built); it is hashed into the
    key. All users of one scope should use the same settings: each reservation applies the
    rate, burst and quota of the process making it.
    """

    def __init__(
        self,
        link: RedisLink,
        rate: float | None,
        burst: int = 10,
        *,
        quota: DailyQuota | None = None,
        scope: Callable[[], Hashable] | None = None,
    ) -> None:
        self.link = link
        self.rate = rate
        self.burst = burst
        self.quota = quota
        local = InMemoryBucket(rate, burst)
        self._local_quota = None if quota is None else QuotaBucket(local, quota)
        self.fallback: BucketBackend = local if self._local_quota is None else self._local_quota
        self._scope = scope
        self._quota_args = (0, 0.0, 0) if quota is None else (quota.limit, quota.period,
                                                              quota.burst)
        self._reserve = link.redis.register_script(RESERVE)
        self._merge = link.redis.register_script(MERGE)
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._hand_over_due = False

    def key(self) -> str:
        """The Redis key of the current scope's bucket."""
        return self.link.key(scope_digest(None if self._scope is None else self._scope()),
                             "bucket")

    def reserve(self, max_wait: float | None) -> float:
        return self.link.run(lambda: self._reserve_shared(max_wait),
                             lambda: self._reserve_alone(max_wait))

    def pause(self, seconds: float) -> None:
        self.fallback.pause(seconds)
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self.link.run(lambda: self._merge_shared(self.key(), seconds), self._note_hand_over)

    def _reserve_shared(self, max_wait: float | None) -> float:
        key = self.key()
        if self._hand_over_due:
            self._hand_over(key)
        limit, period, quota_burst = self._quota_args
        reply = self._reserve(
            keys=[key],
            args=[
                self.rate or 0,
                self.burst,
                -1 if max_wait is None else max_wait,
                limit,
                period,
                quota_burst,
            ],
        )
        outcome, value = bytes(reply[0]), float(reply[1])
        if self._local_quota is not None and outcome != b"later":
            self._local_quota.adopt(int(reply[2]), int(reply[3]))
        if outcome == b"quota":
            raise QuotaExhaustedError(limit, value)
        return value

    def _reserve_alone(self, max_wait: float | None) -> float:
        try:
            return self.fallback.reserve(max_wait)
        finally:
            self._note_hand_over()

    def _note_hand_over(self) -> None:
        """Remember to tell Redis what happened without it, once it answers again."""
        self._hand_over_due = True

    def _hand_over(self, key: str) -> None:
        """Forward the local pause still running and the quota counted alone to Redis.

        The flag is cleared before the local state is read, so whatever a concurrent local
        reservation adds meanwhile raises the flag again and is handed over next time.
        """
        self._hand_over_due = False
        try:
            with self._lock:
                pause = max(0.0, self._paused_until - time.monotonic())
            if self._local_quota is None:
                self._merge_shared(key, pause)
                return
            period, seen, counted = self._local_quota.pending()
            self._merge_shared(key, pause, period, seen, counted)
            self._local_quota.handed_over(period, counted)
        except BaseException:
            self._hand_over_due = True
            raise

    def _merge_shared(
        self, key: str, pause: float, period: int = -1, seen: int = 0, counted: int = 0
    ) -> None:
        self._merge(keys=[key], args=[pause, self.rate or 0, self.burst, self._quota_args[1],
                                      period, seen, counted])

    def __repr__(self) -> str:
        quota = "" if self.quota is None else f" quota={self.quota.limit}/{self.quota.period:g}s"
        return f"<RedisBucket rate={self.rate} burst={self.burst}{quota} {self.link!r}>"
