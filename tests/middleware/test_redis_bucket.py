"""The Redis token bucket against a real redis-server: InMemoryBucket's semantics, shared."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from crisp_api import Crisp
from middleware import AdaptiveBucket, RateLimit, RedisBucket, RedisLink

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]


def bucket(url: str, rate: float | None, burst: int = 10, scope: str = "s") -> RedisBucket:
    """A bucket on a link of its own, as another process would have.

    The tests' rates and pauses are seconds long: a reservation returns its wait without
    sleeping it, and waits of seconds are far from what a loaded machine's stall between
    two calls (tens of milliseconds) takes off them."""
    return RedisBucket(RedisLink(url, prefix="test"), rate, burst, scope=lambda: scope)


def test_burst_then_pacing_at_the_rate(redis_url: str) -> None:
    shared = bucket(redis_url, rate=1.0, burst=3)
    waits = [shared.reserve(None) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([1.0, 2.0, 3.0], abs=0.25)


def test_every_holder_draws_from_the_same_tokens(redis_url: str) -> None:
    first, second = bucket(redis_url, 1.0, 2), bucket(redis_url, 1.0, 2)
    assert first.reserve(None) == 0.0
    assert second.reserve(None) == 0.0
    assert first.reserve(None) == pytest.approx(1.0, abs=0.25)
    assert second.reserve(None) == pytest.approx(2.0, abs=0.25)
    elsewhere = bucket(redis_url, 10.0, 2, scope="other credentials")
    assert elsewhere.reserve(None) == 0.0


def test_fail_fast_takes_no_token(redis_url: str) -> None:
    shared = bucket(redis_url, rate=2.0, burst=1)
    assert shared.reserve(0.0) == 0.0
    assert shared.reserve(0.0) == pytest.approx(-0.5, abs=0.25)
    time.sleep(0.6)
    assert shared.reserve(0.0) == 0.0  # the refused call did not consume the refill


def test_a_pause_holds_back_every_holder(redis_url: str) -> None:
    bucket(redis_url, rate=None).pause(2.0)
    assert bucket(redis_url, rate=None).reserve(None) == pytest.approx(2.0, abs=0.25)
    assert bucket(redis_url, rate=None).reserve(0.1) == pytest.approx(-2.0, abs=0.25)


def test_after_a_pause_queued_callers_resume_at_the_rate_not_all_at_once(redis_url: str) -> None:
    shared = bucket(redis_url, rate=1.0, burst=5)
    bucket(redis_url, rate=1.0, burst=5).pause(5.0)  # a 429 elsewhere, the bucket full
    waits = [shared.reserve(None) for _ in range(4)]
    assert waits == pytest.approx([5.0, 6.0, 7.0, 8.0], abs=0.25)
    shared.pause(2.0)  # a shorter pause leaves the queue as it was
    assert shared.reserve(None) == pytest.approx(9.0, abs=0.25)


def test_state_is_one_expiring_hash_named_after_a_hash_of_the_scope(
    redis_server: RedisServer, redis_url: str
) -> None:
    shared = RedisBucket(RedisLink(redis_url, prefix="fleet"), 5.0, 4,
                         scope=lambda: ("ident-secret", "plugin"))
    shared.reserve(None)
    redis = redis_server.client()
    keys = [key.decode() for key in redis.keys("*")]
    assert keys == [shared.key()]
    assert keys[0].startswith("fleet:")
    assert keys[0].endswith(":bucket")
    assert "ident-secret" not in keys[0]
    assert 0 < redis.pttl(keys[0]) <= 2000  # refill time (1 token at 5/s) + 1 s margin
    fields = redis.hgetall(keys[0])
    assert float(fields[b"t"]) == pytest.approx(3.0, abs=0.01)
    seconds, micros = redis.time()
    assert int(fields[b"u"]) == pytest.approx(seconds * 1e6 + micros, abs=1e6)  # Redis time


def test_scripts_come_back_after_the_script_cache_is_flushed(
    redis_server: RedisServer, redis_url: str
) -> None:
    shared = bucket(redis_url, rate=1.0, burst=1)
    shared.reserve(None)
    redis_server.client().script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
    assert shared.reserve(None) == pytest.approx(1.0, abs=0.25)
    assert shared.link.up



def test_the_client_takes_redis_from_the_environment_unless_told_otherwise(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRISP_REDIS_URL", redis_url)
    backends = {
        type(layer.backend)
        for options in ({}, {"redis_url": ""})
        for layer in Crisp(**options).middleware
        if isinstance(layer, RateLimit)
    }
    assert backends == {RedisBucket, AdaptiveBucket}


def test_a_url_asking_for_decoded_replies_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisLink(redis_url + "?decode_responses=true")
