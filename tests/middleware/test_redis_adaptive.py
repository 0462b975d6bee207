"""The adaptive Redis bucket against a real redis-server: one learnt rate for the whole fleet.

The law is `middleware.adaptive.AdaptiveRate`; `middleware.redis_bucket` runs a Lua copy of
it. These tests check that the copy is the same law (fed the same events at the same times it
learns the same numbers), that what one holder learns paces every other, and that the local
`AdaptiveBucket` takes over while Redis is away.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from middleware import (
    AdaptiveBucket,
    AdaptiveRate,
    AdaptiveSettings,
    DailyQuota,
    QuotaBucket,
    RedisBucket,
    RedisLink,
)
from middleware.adaptive import ADAPTIVE
from middleware.redis_bucket import ADAPTIVE_KEEP
from middleware.structured_log import DefaultLogger

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]

MICRO = 1e6


def adaptive(url: str, burst: int = 2, settings: AdaptiveSettings | None = None) -> RedisBucket:
    """An adaptive bucket on a link of its own, as another process would have."""
    return RedisBucket(RedisLink(url, prefix="test"), ADAPTIVE, burst, scope=lambda: "s",
                       settings=settings)


def state(server: RedisServer, bucket: RedisBucket) -> dict[str, float]:
    """The bucket's hash, as numbers."""
    stored = server.client().hgetall(bucket.key())
    return {field.decode(): float(value) for field, value in stored.items()}


def throttle(bucket: RedisBucket, answers: int = 1) -> None:
    """Tell ``bucket`` of ``answers`` throttled answers, as the rate-limit layer does."""
    assert bucket.throttled is not None
    for _ in range(answers):
        bucket.throttled()


def overshoot(bucket: RedisBucket) -> None:
    """From a high rate (no slow start, no debt left), requests of which a quarter come back
    throttled: the law cuts."""
    bucket.restore(1000.0)
    for _ in range(20):
        time.sleep(max(0.0, bucket.reserve(None)))
    time.sleep(0.2)  # some history, so that the measured rates are not those of an instant
    throttle(bucket, 5)


def test_before_any_throttling_the_slow_start_paces(
    redis_server: RedisServer, redis_url: str
) -> None:
    shared = adaptive(redis_url, burst=2)
    waits = [shared.reserve(None) for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]  # the burst, then the start's rate
    interval = 1.0 / AdaptiveSettings().start
    steps = [later - earlier for earlier, later in itertools.pairwise(waits[1:])]
    assert all(0.5 * interval < step < 1.5 * interval for step in steps), (steps, interval)
    fields = state(redis_server, shared)
    assert "w" not in fields  # no cut
    assert 5 < fields["s"] <= 6  # every reservation counted as sent (decayed a little)
    assert shared.learnt() is None


def test_only_an_adaptive_bucket_has_throttled(redis_url: str) -> None:
    assert callable(getattr(adaptive(redis_url), "throttled", None))
    fixed = RedisBucket(RedisLink(redis_url, prefix="test"), 10.0, 2)
    assert getattr(fixed, "throttled", None) is None  # RateLimit pauses it instead
    with pytest.raises(ValueError, match="adaptive"):
        RedisBucket(fixed.link, "fast", 2)
    with pytest.raises(ValueError, match="settings"):
        RedisBucket(fixed.link, 10.0, 2, settings=AdaptiveSettings())


def test_a_cut_paces_every_holder_even_one_that_never_saw_a_429(
    redis_server: RedisServer, redis_url: str
) -> None:
    throttled, other = adaptive(redis_url), adaptive(redis_url)
    overshoot(throttled)
    learnt = state(redis_server, throttled)["w"]
    waits = [other.reserve(None) for _ in range(6)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    # Right after a cut CUBIC restarts at beta * w_max: the tokens then mature one by one.
    interval = 1.0 / (AdaptiveSettings().beta * learnt)
    steps = [later - earlier for earlier, later in itertools.pairwise(waits[1:])]
    assert all(0.5 * interval < step < 1.5 * interval for step in steps), (steps, interval)


def test_a_few_throttled_answers_among_many_successes_do_not_cut(
    redis_server: RedisServer, redis_url: str
) -> None:
    shared = adaptive(redis_url)
    for _ in range(3):
        for _ in range(40):
            shared.reserve(None)
        throttle(shared)  # 1 in 41: below the 5% that calls for a cut
    assert "w" not in state(redis_server, shared)


def test_a_pause_restarts_the_bucket_empty_at_the_learnt_rate(
    redis_server: RedisServer, redis_url: str
) -> None:
    starting = adaptive(redis_url)
    starting.pause(0.3)  # before any cut, at the slow start's rate
    waits = [starting.reserve(None) for _ in range(3)]
    assert waits[0] == pytest.approx(0.3, abs=0.05)
    interval = 1.0 / AdaptiveSettings().start
    assert all(0.5 * interval < b - a < 1.5 * interval for a, b in itertools.pairwise(waits))
    redis_server.client().flushall()

    shared = adaptive(redis_url)
    overshoot(shared)
    interval = 1.0 / (AdaptiveSettings().beta * state(redis_server, shared)["w"])
    adaptive(redis_url).pause(0.3)  # a 429 with Retry-After elsewhere
    waits = [shared.reserve(None) for _ in range(3)]
    assert waits[0] == pytest.approx(0.3, abs=0.05)
    assert all(0.5 * interval < b - a < 1.5 * interval for a, b in itertools.pairwise(waits))


def test_the_key_of_a_learnt_rate_outlives_its_last_use_by_adaptive_keep(
    redis_server: RedisServer, redis_url: str
) -> None:
    shared = adaptive(redis_url)
    throttle(shared)
    redis = redis_server.client()
    assert redis.pttl(shared.key()) == pytest.approx(ADAPTIVE_KEEP * 1000 + 1000, abs=100)
    redis.pexpire(shared.key(), 5000)
    shared.reserve(None)
    assert redis.pttl(shared.key()) == pytest.approx(ADAPTIVE_KEEP * 1000 + 1000, abs=100)


def test_without_redis_the_local_adaptive_bucket_learns_and_paces(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    redis = redis_server_factory()
    link = RedisLink(redis.url, prefix="test", logger=DefaultLogger("test"))
    shared = RedisBucket(link, ADAPTIVE, 2, quota=DailyQuota(10_000, burst=10_000),
                         scope=lambda: "s")
    assert shared.reserve(None) == 0.0
    redis.kill()
    waits = [shared.reserve(None) for _ in range(20)]  # local, its slow start
    assert waits[:2] == [0.0, 0.0]
    assert all(0 < a < b for a, b in itertools.pairwise(waits[2:]))
    assert not link.up
    time.sleep(0.2)
    throttle(shared, 5)
    assert isinstance(shared.fallback, QuotaBucket)
    local = shared.fallback.bucket
    assert isinstance(local, AdaptiveBucket)
    assert local.learnt() is not None  # the local law cut
    waits = [shared.reserve(None) for _ in range(5)]  # paced at the learnt rate
    assert all(0 < a < b for a, b in itertools.pairwise(waits))


def in_microseconds(settings: AdaptiveSettings) -> AdaptiveSettings:
    """The same law for times in microseconds (rates per µs), the unit of Redis times: fed
    them, the Python law compares times exactly as the Lua does, so that an event falling
    on the very end of a window goes the same way in both."""
    return dataclasses.replace(settings, scale=settings.scale / MICRO**4,
                               window=settings.window * MICRO, floor=settings.floor / MICRO,
                               start=settings.start / MICRO)


def test_the_lua_law_is_the_python_law(redis_server: RedisServer, redis_url: str) -> None:
    settings = AdaptiveSettings(window=0.25)  # several windows in a short test
    shared = adaptive(redis_url, settings=settings)
    law = AdaptiveRate(in_microseconds(settings))
    redis = redis_server.client()
    key = shared.key()

    def now() -> float:
        """The Redis time of the event just counted there (the law's last update)."""
        return float(redis.hget(key, "d"))

    def same_cuts() -> None:
        w_max, cut_at = redis.hmget(key, "w", "c")
        assert (w_max is None) == (law.w_max is None)
        if law.w_max is not None:
            assert float(w_max) == pytest.approx(law.w_max * MICRO, rel=1e-9)
            assert float(cut_at) == law.cut_at

    cuts = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < 3.2:
        # Clean, then an overshoot, then one far beyond any noise, then a lasting trickle of
        # 429s, which the noise samples learn to tolerate.
        throttled = 0 if elapsed < 0.5 else 3 if elapsed < 1.2 else 6 if elapsed < 1.6 else 1
        for _ in range(10):
            shared.reserve(None)
            law.sent(now())
        for _ in range(throttled):
            throttle(shared)
            cuts += law.throttled(now())
            same_cuts()
        time.sleep(0.02)

    # A server pause: measured rates leave it out, in both.
    time.sleep(2 * settings.window)
    shared.pause(0.1)
    law.paused(float(redis.hget(key, "ps")), 0.1 * MICRO)
    time.sleep(0.05)
    for _ in range(4):
        throttle(shared)
        cuts += law.throttled(now())
        same_cuts()

    assert cuts >= 3
    assert law.noise > 0  # a noise sample was taken
    assert law.w_max is not None
    fields = state(redis_server, shared)
    expected = {
        "w": law.w_max * MICRO,
        "k": law._k / MICRO,
        "s": law._sent,
        "r": law._throttled,
        "z": law.noise,
        "fs": law._fast_sent,
        "fr": law._fast_throttled,
    }
    assert {name: fields[name] for name in expected} == pytest.approx(expected, rel=1e-9)


def test_a_restored_rate_is_the_python_laws_and_does_not_override_the_fleets(
    redis_server: RedisServer, redis_url: str
) -> None:
    settings = AdaptiveSettings()
    shared = adaptive(redis_url, settings=settings)
    shared.restore(30.0)
    fields = state(redis_server, shared)
    law = AdaptiveRate(in_microseconds(settings))
    law.restore(fields["d"], 30.0 / MICRO)
    assert law.w_max is not None
    expected = {"w": law.w_max * MICRO, "k": law._k / MICRO, "c": law.cut_at}
    assert {name: fields[name] for name in expected} == pytest.approx(expected, rel=1e-9)
    assert shared.learnt() == pytest.approx(30.0, rel=0.01)
    interval = 1.0 / 30.0
    other = adaptive(redis_url)  # another process
    waits = [other.reserve(None) for _ in range(5)]
    steps = [later - earlier for earlier, later in itertools.pairwise(waits[1:])]
    assert all(0.5 * interval < step < 1.5 * interval for step in steps), (steps, interval)
    adaptive(redis_url).restore(90.0)  # a later run's old news: the fleet knows better
    assert state(redis_server, shared)["w"] == pytest.approx(30.0)
