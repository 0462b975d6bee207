"""The bucket and cache backend contracts, run against every implementation.

`BucketBackend` (where the rate limiter's tokens and pauses live) and `CacheBackend` (where
cached answers live) each have an in-process implementation and a Redis one. Each test here
runs on all of them, a real ``redis-server`` for the Redis ones (skipped, saying why, when
there is none), so a behaviour one backend has and the other lacks shows as a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from middleware import (
    AdaptiveBucket,
    BucketBackend,
    CacheBackend,
    InMemoryBucket,
    InMemoryCache,
    RedisBucket,
    RedisCache,
    RedisLink,
    Response,
)

pytest_plugins = ["tests.redis_server"]

BucketFactory = Callable[[float | str | None, int], BucketBackend]
CacheFactory = Callable[[float], CacheBackend]


@pytest.fixture(params=["memory", "redis"])
def make_bucket(request: pytest.FixtureRequest) -> Iterator[BucketFactory]:
    """Builds buckets of one implementation: (rate, burst) -> bucket."""
    if request.param == "memory":
        def memory(rate: float | str | None, burst: int) -> BucketBackend:
            if rate == "adaptive":
                return AdaptiveBucket(burst, scope=lambda: "contract")
            return InMemoryBucket(None if rate is None else float(rate), burst)

        yield memory
        return
    url: str = request.getfixturevalue("redis_url")
    links: list[RedisLink] = []

    def redis(rate: float | str | None, burst: int) -> BucketBackend:
        links.append(RedisLink(url, prefix="contract"))
        return RedisBucket(links[-1], rate, burst, scope=lambda: "contract")

    yield redis
    for link in links:
        link.close()


@pytest.fixture(params=["memory", "redis"])
def make_cache(request: pytest.FixtureRequest) -> Iterator[CacheFactory]:
    """Builds caches of one implementation: ttl -> cache."""
    if request.param == "memory":
        yield lambda ttl: InMemoryCache(maxsize=64, ttl=ttl)
        return
    url: str = request.getfixturevalue("redis_url")
    links: list[RedisLink] = []

    def redis(ttl: float) -> CacheBackend:
        links.append(RedisLink(url, prefix="contract"))
        return RedisCache(links[-1], ttl, keep_headers={"Content-Type"})

    yield redis
    for link in links:
        link.close()


# Buckets -------------------------------------------------------------------------------------


def test_a_full_bucket_grants_its_burst_at_once_then_paces(make_bucket: BucketFactory) -> None:
    bucket = make_bucket(1.0, 3)
    assert [bucket.reserve(None) for _ in range(3)] == pytest.approx([0, 0, 0], abs=0.02)
    fourth = bucket.reserve(None)
    assert 0.5 < fourth <= 1.0  # one token a second (a loaded machine's stall is far shorter)


def test_a_wait_beyond_max_wait_takes_no_token(make_bucket: BucketFactory) -> None:
    bucket = make_bucket(2.0, 1)
    assert bucket.reserve(None) == pytest.approx(0, abs=0.02)
    refused = bucket.reserve(0.1)
    assert refused < 0  # the wait (about 0.5 s), negated: the token was not taken
    assert bucket.reserve(None) == pytest.approx(-refused, abs=0.05)


def test_a_pause_holds_every_reservation_and_is_counted(make_bucket: BucketFactory) -> None:
    bucket = make_bucket(None, 5)
    before = bucket.pauses
    bucket.pause(0.5)
    assert bucket.pauses == before + 1
    assert 0.3 < bucket.pause_left() <= 0.5
    assert 0.3 < bucket.reserve(None) <= 0.51
    bucket.pause(0.1)  # a shorter pause does not cut a longer one short
    assert bucket.pause_left() > 0.2


def test_the_adaptive_bucket_starts_without_a_wait(make_bucket: BucketFactory) -> None:
    bucket = make_bucket("adaptive", 4)
    assert all(bucket.reserve(None) == pytest.approx(0, abs=0.02) for _ in range(4))


def test_the_adaptive_bucket_then_paces_at_its_slow_start(make_bucket: BucketFactory) -> None:
    bucket = make_bucket("adaptive", 1)
    waits = [bucket.reserve(None) for _ in range(3)]
    assert waits == pytest.approx([0, 1 / 8, 2 / 8], abs=0.02)


@pytest.mark.parametrize("rate", [10.0, "adaptive"])
def test_a_spent_mark_is_kept_shared_and_claimed_for_one_probe(
    make_bucket: BucketFactory, rate: float | str
) -> None:
    bucket = make_bucket(rate, 2)
    # Another holder: in Redis, another process's bucket; in memory, the same bucket.
    other = make_bucket(rate, 2) if isinstance(bucket, RedisBucket) else bucket
    assert bucket.spent_until() is None
    bucket.mark_spent(2e9)
    assert bucket.spent_until() == 2e9
    other.reserve(None)  # a holder of the same bucket learns of it by its next reservation
    assert other.spent_until() == 2e9
    assert not other.claim_probe(1e9, 1e9 + 60)  # not the mark in force: no probe
    bucket.mark_spent(1e9)  # past: one probe may go
    other.reserve(None)
    assert other.claim_probe(1e9, 1e9 + 60)
    assert not bucket.claim_probe(1e9, 1e9 + 60)  # only one caller claims it
    bucket.mark_spent(None)
    other.reserve(None)
    assert other.spent_until() is None


# Caches --------------------------------------------------------------------------------------


def _answer(body: bytes) -> Response:
    return Response(200, {"Content-Type": "application/json"}, body)


KEY = (("ident", "plugin"), "http://127.0.0.1:1", "/v1/website/w1")


def test_a_stored_answer_is_served_until_it_expires(make_cache: CacheFactory) -> None:
    cache = make_cache(0.3)
    cache.put(KEY, "w1", _answer(b'{"data":1}'), cache.snapshot("w1"))
    hit = cache.get(KEY)
    assert hit is not None
    assert (hit.status, hit.body, hit.headers.get("content-type")) == (
        200, b'{"data":1}', "application/json")
    time.sleep(0.45)
    assert cache.get(KEY) is None


def test_a_write_during_the_read_keeps_the_answer_out(make_cache: CacheFactory) -> None:
    cache = make_cache(5.0)
    token = cache.snapshot("w1")
    cache.invalidate("w1")  # a write to the website while the read was in flight
    cache.put(KEY, "w1", _answer(b'{"data":"stale"}'), token)
    assert cache.get(KEY) is None


def test_invalidating_a_group_drops_its_entries_only(make_cache: CacheFactory) -> None:
    cache = make_cache(5.0)
    other = (KEY[0], KEY[1], "/v1/website/w2")
    cache.put(KEY, "w1", _answer(b"1"), cache.snapshot("w1"))
    cache.put(other, "w2", _answer(b"2"), cache.snapshot("w2"))
    cache.invalidate("w1")
    assert cache.get(KEY) is None
    assert cache.get(other) is not None
    cache.invalidate(None)  # everything
    assert cache.get(other) is None


def test_entries_are_kept_apart_by_credential(make_cache: CacheFactory) -> None:
    cache = make_cache(5.0)
    cache.put(KEY, "w1", _answer(b"mine"), cache.snapshot("w1"))
    assert cache.get((("someone-else", "plugin"), KEY[1], KEY[2])) is None
