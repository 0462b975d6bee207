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

The "spent until T" mark of a daily quota the server showed spent (`middleware.spent`) is a
key of its own, ``<prefix>:<scope>:spent`` (T in epoch seconds), living `SPENT_KEEP` past T;
every reservation reads it, so that each process learns of a mark set elsewhere without a
round trip of its own, and a probe is claimed by an atomic compare-and-set (`CLAIM`).

With ``rate="adaptive"`` (`middleware.adaptive.ADAPTIVE`) the rate is learnt by the law of
`middleware.adaptive.AdaptiveRate`, written once in Lua (`LAW`) and run on state kept in the
same hash, so the whole fleet learns one rate from everyone's throttled answers: ``w`` (the
rate at the last cut, absent before the first: until then the slow start), ``c`` (the
cut's time), ``k`` (CUBIC's K, in seconds), ``s`` and ``r`` (the decayed counts of requests
sent and throttled), ``d`` (their time), ``f`` (the first event), ``z`` (the noise: the
average throttled share measured after cuts), ``fs`` and ``fr`` (the recent counts), ``rc``
(1 if the last cut was a re-cut after one window), and while a noise sample is pending ``o``
and ``e`` (when its window opens and closes) and ``m``/``ms``/``mr`` (the time, sent and
throttled counts when it opened). A granted reservation counts as sent;
`RedisBucket.throttled` counts a throttled answer and cuts when the law says so. Such a key
lives `ADAPTIVE_KEEP` seconds after its law was last used, so that a fleet idle for that long
starts afresh instead of obeying a limit that may have moved; `RedisBucket.learnt` and
`RedisBucket.restore` carry a learnt rate over such gaps (the sync keeps it in its store).

When Redis fails the bucket carries on with a local bucket of the same settings (see
`middleware.redis_link`), an `AdaptiveBucket` in adaptive mode; once Redis is back, it first
hands over what happened meanwhile: a pause still running and the requests it counted against
the quota alone. What the local law learnt is not handed over: the fleet's law, which saw the
others' traffic too, is the better judge.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable

from middleware.adaptive import (
    ADAPTIVE,
    FAST,
    AdaptiveBucket,
    AdaptiveSettings,
)
from middleware.quota import DailyQuota, QuotaBucket, QuotaExhaustedError
from middleware.ratelimit import BucketBackend, InMemoryBucket
from middleware.redis_link import RedisLink, scope_digest

ADAPTIVE_KEEP = 600.0
"""Seconds an adaptive bucket's key outlives the last use of its law (a reservation or a
throttled answer). A learnt rate is worth keeping across lulls, but after this long the
server's limit may have moved: the fleet starts again without limit and learns afresh."""

LAW = f"""
local FAST = {FAST!r}
""" + """
-- Shared by every script below. expire_after: make the key live `keep` microseconds more
-- (plus a second of margin), never less than it already does.
local function expire_after(key, keep)
  local ttl = math.ceil(keep / 1000) + 1000
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
-- The law of middleware.adaptive.AdaptiveRate, on the fields of the bucket's hash described
-- in middleware.redis_bucket; absolute times are Redis microseconds (math.huge for never),
-- durations seconds. S: AdaptiveSettings from ARGV[first], then ADAPTIVE_KEEP (s).
local function law_settings(first)
  local a = {}
  for i = 1, 9 do a[i] = tonumber(ARGV[first + i - 1]) end
  return {beta = a[1], scale = a[2], cut_share = a[3], min_throttled = a[4], window = a[5],
          max_noise = a[6], floor = a[7], start = a[8], keep = a[9]}
end
local function law_read(key)
  local v = redis.call('HMGET', key, 'w', 'c', 'k', 's', 'r', 'd', 'f', 'z', 'o', 'e', 'm',
                       'ms', 'mr', 'ps', 'pe', 'fs', 'fr', 'rc')
  return {w = tonumber(v[1]), c = tonumber(v[2]), k = tonumber(v[3]) or 0,
          s = tonumber(v[4]) or 0, r = tonumber(v[5]) or 0, d = tonumber(v[6]),
          f = tonumber(v[7]), z = tonumber(v[8]) or 0, o = tonumber(v[9]) or math.huge,
          e = tonumber(v[10]) or math.huge, m = tonumber(v[11]) or 0,
          ms = tonumber(v[12]) or 0, mr = tonumber(v[13]) or 0,
          ps = tonumber(v[14]) or -math.huge, pe = tonumber(v[15]) or -math.huge,
          fs = tonumber(v[16]) or 0, fr = tonumber(v[17]) or 0, rc = v[18] == '1'}
end
local function law_write(key, law)
  redis.call('HSET', key, 's', law.s, 'r', law.r, 'd', law.d, 'f', law.f, 'z', law.z,
             'fs', law.fs, 'fr', law.fr, 'rc', law.rc and '1' or '0')
  if law.w then redis.call('HSET', key, 'w', law.w, 'c', law.c, 'k', law.k) end
  if law.o < math.huge then
    redis.call('HSET', key, 'o', law.o)
  else
    redis.call('HDEL', key, 'o')
  end
  if law.e < math.huge then
    redis.call('HSET', key, 'e', law.e, 'm', law.m, 'ms', law.ms, 'mr', law.mr)
  else
    redis.call('HDEL', key, 'e', 'm', 'ms', 'mr')
  end
end
-- _advance: decay the counts to now; sample the noise over the second window after a cut.
local function law_advance(law, now, S)
  if not law.f then
    law.f, law.d = now, now
    return
  end
  local elapsed = (now - law.d) / 1000000
  if elapsed > 0 then
    local decay = math.exp(-elapsed / S.window)
    law.s, law.r, law.d = law.s * decay, law.r * decay, now
    decay = decay * decay  -- exp(-elapsed / (FAST * window)), FAST being a half
    law.fs, law.fr = law.fs * decay, law.fr * decay
  end
  if now >= law.o then
    law.o, law.m, law.ms, law.mr = math.huge, now, law.s, law.r
    law.e = math.max(law.e, now + S.window * 1000000)  -- a whole window from the mark
  elseif now >= law.e then
    law.e = math.huge
    local decay = math.exp(-(now - law.m) / 1000000 / S.window)
    local sent, share = law.s - law.ms * decay, 0
    if sent >= 1 then share = (law.r - law.mr * decay) / sent end
    law.z = math.min(S.max_noise, (law.z + share) / 2)
  end
end
-- _span: what the decayed sums of time constant window (S.window if nil) are divided by to
-- give a rate (s), less the part of it spent in the last pause (ps..pe).
local function law_span(law, now, S, window)
  window = window or S.window
  local span = window * math.max(0.05, 1 - math.exp(-(now - law.f) / 1000000 / window))
  local overlap = math.max(0, math.min(law.pe, now) - math.max(law.ps, now - span * 1000000))
  return math.max(0.05 * window, span - overlap / 1000000)
end
-- rate: requests/s; before the first cut, the slow start.
local function law_rate(law, now, S)
  if not law.f then return S.start end
  if not law.w then  -- the slow start, resumed after a lull where it was
    local reached = 2 * law.s / law_span(law, law.d, S)
    local grown = S.start * 2 ^ ((now - law.f) / 1000000 / S.window)
    return math.max(S.start, math.min(grown, reached))
  end
  local sent = law.s * math.exp(-math.max(0, (now - law.d) / 1000000) / S.window)
  local grown = S.scale * ((now - law.c) / 1000000 - law.k) ^ 3 + law.w
  return math.max(S.floor, math.min(grown, math.max(law.w, 2 * sent / law_span(law, now, S))))
end
"""

RESERVE = LAW + """
-- KEYS[1]: the bucket's hash, KEYS[2]: the spent-quota mark. ARGV: rate (tokens/s, 0: no
-- rate, 'adaptive': the law's), burst, max_wait (s, < 0: no bound), quota limit (0: no
-- quota), quota period (s), quota burst, quota offset (s: the periods' start after the
-- epoch's), then with 'adaptive' the law's settings (law_settings). Replies {'ok', mark,
-- wait, period, used}, {'later', mark, -wait} or {'quota', mark, reset in, period, used};
-- mark is the spent-quota mark ('' if none).
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local rate, burst, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, period, qburst = tonumber(ARGV[4]), tonumber(ARGV[5]) * 1000000, tonumber(ARGV[6])
local offset = tonumber(ARGV[7]) * 1000000
local law, S = nil, nil
if ARGV[1] == 'adaptive' then
  S = law_settings(8)
  law = law_read(KEYS[1])
  law_advance(law, now, S)  -- written back whether the reservation is granted or not
  rate = law_rate(law, now, S)
end
local state = redis.call('HMGET', KEYS[1], 't', 'u', 'p', 'q', 'n', 'a')
local mark = redis.call('GET', KEYS[2]) or ''
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
  index = math.floor((now - offset) / period)
  local finish = (index + 1) * period + offset
  if tonumber(state[4]) == index then
    used, slot = tonumber(state[5]) or 0, tonumber(state[6]) or 0
  end
  if used >= limit then
    return {'quota', mark, tostring((finish - now) / 1000000), tostring(index), tostring(used)}
  end
  slot = math.max(now, slot)
  interval = (finish - slot) / (limit - used)
  wait = math.max(wait, slot - (qburst - 1) * interval - now)
  keep = math.max(keep, finish - now)
end
if max_wait >= 0 and wait > max_wait * 1000000 then
  if law then
    law_write(KEYS[1], law)
    expire_after(KEYS[1], math.max(keep, S.keep * 1000000))
  end
  return {'later', mark, tostring(-wait / 1000000)}
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 't', tokens - 1, 'u', now)
  keep = math.max(keep, (burst - tokens + 1) * 1000000 / rate)
end
if limit > 0 then
  redis.call('HSET', KEYS[1], 'q', index, 'n', used + 1, 'a', slot + interval)
end
if law then
  law.s, law.fs = law.s + 1, law.fs + 1  -- a granted reservation is a request sent
  law_write(KEYS[1], law)
  keep = math.max(keep, S.keep * 1000000)
end
if rate > 0 or limit > 0 or law then expire_after(KEYS[1], keep) end
return {'ok', mark, tostring(wait / 1000000), tostring(index), tostring(used + 1)}
"""

MERGE = LAW + """
-- KEYS[1]: the bucket's hash. ARGV: pause (s), rate (tokens/s, 0: no rate, 'adaptive': the
-- law's), burst, quota period (s), quota period index (< 0: no count to hand over), the
-- count last seen for that period, requests counted alone since, quota offset (s), then
-- with 'adaptive' the law's settings (law_settings).
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local pause, rate, burst = tonumber(ARGV[1]) * 1000000, tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[2] == 'adaptive' then
  -- The law's rate now, read without advancing it (a pause is no event of the law). It is
  -- what AdaptiveBucket.pause restarts its local bucket at, and it spreads the callers queued
  -- during the pause at the rate the fleet learnt. A fixed 0 instead would let the tokens
  -- refill during the pause and release up to a burst at once at its end: another 429.
  local law = law_read(KEYS[1])
  rate = law_rate(law, now, law_settings(9))
  if pause > 0 then  -- AdaptiveRate.paused: rates leave out the time nothing could be sent
    if now > law.pe then law.ps = now end
    redis.call('HSET', KEYS[1], 'ps', law.ps, 'pe', math.max(law.pe, now + pause))
  end
end
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
local offset = tonumber(ARGV[8]) * 1000000
if index >= 0 and index == math.floor((now - offset) / period) then
  local used = 0
  if tonumber(state[4]) == index then used = tonumber(state[5]) or 0 end
  used = math.max(used, tonumber(ARGV[6])) + tonumber(ARGV[7])
  redis.call('HSET', KEYS[1], 'q', index, 'n', used)
  keep = math.max(keep, (index + 1) * period + offset - now)
end
if keep > 0 then expire_after(KEYS[1], keep) end
return 1
"""

THROTTLED = LAW + """
-- KEYS[1]: the bucket's hash. ARGV: the law's settings (law_settings). Counts a throttled
-- answer and cuts the rate if the window calls for it, as AdaptiveRate.throttled does.
-- Replies 1 if it cut, else 0.
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local S = law_settings(1)
local law = law_read(KEYS[1])
law_advance(law, now, S)
law.r, law.fr = law.r + 1, law.fr + 1
local share, gap, cut = 1, 2, 0
if law.s > 0 then share = law.r / law.s end
local beyond = share >= S.cut_share + 2 * S.max_noise  -- beyond any noise
-- _too_shallow: the pending noise sample already holds a share no noise explains
local shallow = false
if not law.rc and law.o == math.huge and law.e < math.huge then
  local decay = math.exp(-(now - law.m) / 1000000 / S.window)
  local sent, throttled = law.s - law.ms * decay, law.r - law.mr * decay
  shallow = throttled >= S.min_throttled and throttled >= (S.cut_share + S.max_noise) * sent
end
if beyond or shallow then gap = 1 end
local since = math.huge
if law.c then since = now - law.c end
-- More refusals than requests counted: they answer requests this law did not send.
if law.r >= S.min_throttled and law.r <= law.s and share >= S.cut_share + 2 * law.z
    and not (since < gap * S.window * 1000000)
    and not (gap == 2 and law.e < math.huge) then  -- the last cut's noise sample is pending
  local good = math.max(0, law.s - law.r) / law_span(law, now, S)
  local current = law_rate(law, now, S)
  if law.w then
    local recent = math.max(0, law.fs - law.fr) / law_span(law, now, S, FAST * S.window)
    law.w = math.max(S.floor, math.min(good, recent, current))
  else  -- the slow start's end
    law.w = math.max(S.floor, math.sqrt(good * math.max(good, current)))
  end
  law.c, law.k = now, (law.w * (1 - S.beta) / S.scale) ^ (1 / 3)
  law.o, law.e = now + S.window * 1000000, now + 2 * S.window * 1000000
  law.rc = not beyond and since < 2 * S.window * 1000000
  cut = 1
end
law_write(KEYS[1], law)
expire_after(KEYS[1], S.keep * 1000000)
return cut
"""

RESTORE = LAW + """
-- KEYS[1]: the bucket's hash. ARGV: the law's settings (law_settings), then a rate learnt
-- by an earlier run (requests/s). As AdaptiveRate.restore, unless the fleet's law has cut
-- already (what it learnt is more recent). Replies 1 if restored, else 0.
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local S = law_settings(1)
local law = law_read(KEYS[1])
if law.w then return 0 end
law_advance(law, now, S)
law.w = math.max(S.floor, tonumber(ARGV[10]))
law.k = (law.w * (1 - S.beta) / S.scale) ^ (1 / 3)
law.c, law.o, law.e = now - law.k * 1000000, math.huge, math.huge
law_write(KEYS[1], law)
expire_after(KEYS[1], S.keep * 1000000)
return 1
"""

LEARNT = LAW + """
-- KEYS[1]: the bucket's hash. ARGV: the law's settings (law_settings). Replies the rate
-- learnt (as AdaptiveRate.learnt, without advancing the law), or nil before the first cut.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local law = law_read(KEYS[1])
if not law.w then return false end
return tostring(law_rate(law, now, law_settings(1)))
"""

CLAIM = """
-- KEYS[1]: the spent mark. ARGV: the time it was seen to say, the time to hold it to (epoch
-- seconds, as strings), how long the key lives (ms). Replies 1 if the mark was moved.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

SPENT_KEEP = 7 * 86400.0
"""Seconds a spent-quota mark lives in Redis past its time: long enough to outlive any reset
it waits for, so that the probe after it is one request, not the fleet's traffic."""


class RedisBucket:
    """A `BucketBackend` in Redis: ``rate`` requests/s up to ``burst`` (``rate=None``: only
    the server's pauses; ``rate=ADAPTIVE``: a rate learnt from throttled answers, by the law
    of `AdaptiveRate` with ``settings``), plus ``quota`` if given, for everyone sharing the
    link and scope.

    ``scope`` names whose bucket this is, asked at each reservation (for a client: its
    credentials and tier, which may change after the bucket is built); it is hashed into the
    key. All users of one scope should use the same settings: each reservation applies the
    rate, burst and quota of the process making it.

    ``throttled`` is what the rate-limit layer calls on each throttled answer: a method in
    adaptive mode, None otherwise (so that `RateLimit` pauses a fixed-rate bucket instead).
    """

    def __init__(
        self,
        link: RedisLink,
        rate: float | str | None,
        burst: int = 10,
        *,
        quota: DailyQuota | None = None,
        scope: Callable[[], Hashable] | None = None,
        settings: AdaptiveSettings | None = None,
    ) -> None:
        self.link = link
        self.rate = rate
        self.burst = burst
        self.quota = quota
        self.settings = settings
        self.throttled: Callable[[], bool] | None = None
        local: BucketBackend
        if isinstance(rate, str):
            if rate != ADAPTIVE:
                raise ValueError(f"rate must be a positive number of requests/s, {ADAPTIVE!r} "
                                 f"or None, got {rate!r}")
            self.settings = settings or AdaptiveSettings()
            law = AdaptiveBucket(burst, settings=self.settings, scope=scope)
            local = law
            self._rate_arg: float | str = ADAPTIVE
            self._law_args = _settings_args(self.settings)
            self._throttle = link.redis.register_script(THROTTLED)
            self._restore = link.redis.register_script(RESTORE)
            self._learnt = link.redis.register_script(LEARNT)
            self._law: AdaptiveBucket | None = law
            self.throttled = functools.partial(self._throttled, law)
        else:
            if settings is not None:
                raise ValueError(f"settings are for rate={ADAPTIVE!r}, not a fixed rate")
            local = InMemoryBucket(rate, burst)
            self._law = None
            self._rate_arg = rate or 0
            self._law_args = []
        self._local_quota = None if quota is None else QuotaBucket(local, quota)
        self.fallback: BucketBackend = local if self._local_quota is None else self._local_quota
        self._scope = scope
        self._quota_args = ((0, 0.0, 0, 0.0) if quota is None else
                            (quota.spendable, quota.period, quota.burst, quota.offset))
        self._reserve = link.redis.register_script(RESERVE)
        self._claim = link.redis.register_script(CLAIM)
        self._spent: tuple[Hashable, float | None] = (_NO_SCOPE, None)
        """The spent-quota mark as last seen in Redis: (the scope it is of, its time)."""
        self._merge = link.redis.register_script(MERGE)
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self.pauses = 0
        """How many pauses this process asked for."""
        self._hand_over_due = False

    def _scope_now(self) -> Hashable:
        return None if self._scope is None else self._scope()

    def key(self, name: str = "bucket") -> str:
        """The Redis key of the current scope's bucket (``name="spent"``: of its spent-quota
        mark)."""
        return self.link.key(scope_digest(None if self._scope is None else self._scope()),
                             name)

    def spent_until(self) -> float | None:
        """The spent-quota mark as Redis last told (every reservation reads it), or as the
        local fallback keeps it while Redis is down."""
        scope, until = self._spent
        if not self.link.up:
            return self.fallback.spent_until()
        return until if scope == self._scope_now() else None

    def mark_spent(self, until: float | None) -> None:
        """Mark the quota spent until ``until`` for the whole fleet (None: clear); while
        Redis is down, for this process only."""
        self.fallback.mark_spent(until)
        key = self.key("spent")

        def shared() -> None:
            if until is None:
                self.link.redis.delete(key)
            else:
                keep = max(until - time.time(), 0.0) + SPENT_KEEP
                self.link.redis.set(key, repr(float(until)), px=int(keep * 1000))
            self._spent = (self._scope_now(), until)

        self.link.run(shared, lambda: None)

    def claim_probe(self, seen: float, hold_until: float) -> bool:
        key = self.key("spent")

        def shared() -> bool:
            keep = max(hold_until - time.time(), 0.0) + SPENT_KEEP
            claimed = bool(self._claim(keys=[key], args=[repr(float(seen)),
                                                         repr(float(hold_until)),
                                                         int(keep * 1000)]))
            if claimed:
                self._spent = (self._scope_now(), hold_until)
            return claimed

        return self.link.run(shared, lambda: self.fallback.claim_probe(seen, hold_until))

    def learnt(self) -> float | None:
        """The fleet's learnt rate, as `AdaptiveBucket.learnt` (None with a fixed rate)."""
        law = self._law
        if law is None:
            return None

        def shared() -> float | None:
            rate = self._learnt(keys=[self.key()], args=self._law_args)
            return None if rate is None else float(rate)

        return self.link.run(shared, law.learnt)

    def restore(self, rate: float) -> None:
        """Resume from a rate learnt by an earlier run, as `AdaptiveBucket.restore`, unless
        the fleet has learnt one already (its is more recent); the local fallback resumes
        from it too. Only in adaptive mode."""
        law = self._law
        if law is None:
            raise ValueError(f"only a bucket with rate={ADAPTIVE!r} learns a rate")
        law.restore(rate)
        self.link.run(lambda: self._restore(keys=[self.key()], args=[*self._law_args, rate]),
                      lambda: None)

    def reserve(self, max_wait: float | None) -> float:
        return self.link.run(lambda: self._reserve_shared(max_wait),
                             lambda: self._reserve_alone(max_wait))

    def pause(self, seconds: float) -> None:
        self.fallback.pause(seconds)
        with self._lock:
            self.pauses += 1
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self.link.run(lambda: self._merge_shared(self.key(), seconds), self._note_hand_over)

    def pause_left(self) -> float:
        """Seconds left of the last pause this process asked for (pauses asked by others are
        seen at the next reservation)."""
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())


    def _throttled(self, local: AdaptiveBucket) -> bool:
        """Count a throttled answer in the fleet's law, or in ``local``'s (the fallback's)
        while Redis is down; True if it cut. Bound to ``throttled`` in adaptive mode."""
        return self.link.run(
            lambda: bool(self._throttle(keys=[self.key()], args=self._law_args)),
            local.throttled,
        )

    def _reserve_shared(self, max_wait: float | None) -> float:
        key = self.key()
        if self._hand_over_due:
            self._hand_over(key)
        limit, period, quota_burst, offset = self._quota_args
        spent_key = self.key("spent")
        reply = self._reserve(
            keys=[key, spent_key],
            args=[
                self._rate_arg,
                self.burst,
                -1 if max_wait is None else max_wait,
                limit,
                period,
                quota_burst,
                offset,
                *self._law_args,
            ],
        )
        outcome, mark, value = bytes(reply[0]), bytes(reply[1]), float(reply[2])
        self._spent = (self._scope_now(), float(mark) if mark else None)
        if self._local_quota is not None and outcome != b"later":
            self._local_quota.adopt(int(reply[3]), int(reply[4]))
        if outcome == b"quota":
            raise QuotaExhaustedError(limit, value, time.time() + value)
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
        self._merge(keys=[key], args=[pause, self._rate_arg, self.burst, self._quota_args[1],
                                      period, seen, counted, self._quota_args[3],
                                      *self._law_args])

    def __repr__(self) -> str:
        quota = "" if self.quota is None else f" quota={self.quota.limit}/{self.quota.period:g}s"
        return f"<RedisBucket rate={self.rate} burst={self.burst}{quota} {self.link!r}>"


_NO_SCOPE = object()
"""The scope of no mark seen yet (any real scope, None included, differs from it)."""


def _settings_args(settings: AdaptiveSettings) -> list[float]:
    """The law's settings as the scripts take them (``law_settings`` in `LAW`)."""
    return [settings.beta, settings.scale, settings.cut_share, settings.min_throttled,
            settings.window, settings.max_noise, settings.floor, settings.start,
            ADAPTIVE_KEEP]
