"""The daily request quota: spread over the period, then refused unsent; in memory and shared."""

from __future__ import annotations

import threading
import time

import pytest

from crisp_api import Crisp, QuotaExceededError
from crisp_api.testing import DEFAULT_IDENTIFIER, DEFAULT_KEY, FakeCrisp
from middleware import (
    DailyQuota,
    InMemoryBucket,
    QuotaBucket,
    QuotaExhaustedError,
    RateLimit,
    RedisBucket,
    RedisLink,
)

pytest_plugins = ["tests.redis_server"]

WEBSITE = ("GET", "/website/{website_id}")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_quota_is_spread_evenly_over_what_is_left_of_the_period() -> None:
    clock = Clock(1000.0)  # a period starts: 1000..1100
    quota = QuotaBucket(InMemoryBucket(None), DailyQuota(10, period=100, burst=2), clock)

    waits = [quota.reserve(None) for _ in range(10)]
    assert waits == pytest.approx([0, 0, 10, 20, 30, 40, 50, 60, 70, 80])
    with pytest.raises(QuotaExhaustedError) as refused:
        quota.reserve(None)
    assert refused.value.reset_in == pytest.approx(100)

    clock.now = 1100.0  # the next period starts afresh
    assert quota.reserve(None) == 0.0


def test_the_periods_start_at_the_offset() -> None:
    """A quota that resets at 30 s past the period's start: 1030..1130 is one period."""
    clock = Clock(1129.0)
    quota = QuotaBucket(InMemoryBucket(None), DailyQuota(2, period=100, burst=2, offset=30),
                        clock)
    assert [quota.reserve(None) for _ in range(2)] == [0.0, 0.0]
    with pytest.raises(QuotaExhaustedError) as refused:
        quota.reserve(None)
    assert refused.value.reset_at == pytest.approx(1130.0)
    clock.now = 1130.0
    assert quota.reserve(None) == 0.0


@pytest.mark.parametrize("offset", [-1.0, 100.0])
def test_an_offset_outside_the_period_is_refused(offset: float) -> None:
    with pytest.raises(ValueError, match="offset"):
        DailyQuota(10, period=100, offset=offset)


def test_idle_time_shortens_the_interval_but_does_not_pile_up() -> None:
    clock = Clock(1050.0)  # half the period gone, nothing spent: 10 requests in 50 s
    quota = QuotaBucket(InMemoryBucket(None), DailyQuota(10, period=100, burst=1), clock)
    assert [quota.reserve(None) for _ in range(3)] == pytest.approx([0, 5, 10])


def test_a_refusal_by_either_limit_takes_from_neither() -> None:
    clock = Clock(1000.0)
    bucket = InMemoryBucket(rate=1.0, burst=1, clock=clock)
    quota = QuotaBucket(bucket, DailyQuota(3, period=100, burst=2), clock)
    assert quota.reserve(None) == 0.0
    assert quota.reserve(0.0) == pytest.approx(-1.0)  # no token: refused by the bucket
    clock.now += 1.0
    assert quota.reserve(0.0) == 0.0  # the quota slot the bucket's refusal did not take
    assert quota.reserve(5.0) == pytest.approx(-(1000 + 200 / 3 - 100 / 3 - 1001))
    assert quota.reserve(None) == pytest.approx(1000 + 100 / 3 - 1001)  # the longer wait
    with pytest.raises(QuotaExhaustedError):  # 3 taken: the refusals counted for nothing
        quota.reserve(None)


@pytest.mark.parametrize("limit", [0, -5, 2.5, True])
def test_a_quota_must_be_a_positive_whole_number(limit: int) -> None:
    with pytest.raises(ValueError, match="whole number"):
        DailyQuota(limit)


def test_a_client_stops_at_its_daily_quota_without_sending() -> None:
    with FakeCrisp(conversations=2, messages=1) as fake:
        crisp = fake.client(daily_quota=3, quota_reserve=0, cache_ttl=0)
        for _ in range(3):
            crisp.website.get_website(fake.website_id)
        with pytest.raises(QuotaExceededError, match="daily_quota_exceeded") as refused:
            crisp.website.get_website(fake.website_id)
        assert fake.stats.count(*WEBSITE) == 3
    seconds_to_midnight = 86400 - time.time() % 86400
    assert refused.value.retry_after == pytest.approx(seconds_to_midnight, abs=5)
    assert refused.value.status is None


def test_a_client_quota_resets_at_quota_reset_not_at_midnight() -> None:
    """``quota_reset`` moves the known quota's day as it moves the spent mark's: the refusal
    says when the configured day ends (it ignored quota_reset: midnight)."""
    reset = (time.time() + 3600) % 86400  # an hour from now
    with FakeCrisp(conversations=2, messages=1) as fake:
        crisp = fake.client(daily_quota=1, quota_reserve=0, quota_reset=reset, cache_ttl=0)
        crisp.website.get_website(fake.website_id)
        with pytest.raises(QuotaExceededError) as refused:
            crisp.website.get_website(fake.website_id)
    assert refused.value.retry_after == pytest.approx(3600, abs=5)


def test_a_shared_quota_resets_at_its_offset(redis_url: str) -> None:
    reset = (time.time() + 3600) % 86400
    bucket = RedisBucket(RedisLink(redis_url, prefix="offset"), None,
                         quota=DailyQuota(1, burst=1, offset=reset))
    assert bucket.reserve(None) == 0.0
    with pytest.raises(QuotaExhaustedError) as refused:
        bucket.reserve(None)
    assert refused.value.reset_in == pytest.approx(3600, abs=5)


def test_the_fleet_shares_one_daily_quota(redis_url: str) -> None:
    with FakeCrisp(conversations=2, messages=1) as fake:
        first, second = (fake.client(daily_quota=5, quota_reserve=0, redis_url=redis_url,
                                     cache_ttl=0)
                         for _ in range(2))
        for crisp in (first, second, first, second, first):
            crisp.website.get_website(fake.website_id)
        for crisp in (first, second):
            with pytest.raises(QuotaExceededError):
                crisp.website.get_website(fake.website_id)
        assert fake.stats.count(*WEBSITE) == 5


def test_a_shared_quota_is_spread_over_its_period_then_refused(redis_url: str) -> None:
    """A 3-second "day" with 6 requests: one every half second, whoever asks, then none."""
    period, limit = 3.0, 6
    bucket = RedisBucket(RedisLink(redis_url, prefix="test"), None,
                         quota=DailyQuota(limit, period=period, burst=1))
    with FakeCrisp(conversations=2, messages=1) as fake:
        crisp = Crisp(middleware=[RateLimit(bucket)])
        crisp.set_rest_host(fake.url)
        crisp.set_tier("plugin")
        crisp.authenticate(DEFAULT_IDENTIFIER, DEFAULT_KEY)
        sent: list[float] = []
        refusals: list[float] = []

        def run() -> None:
            while True:
                try:
                    crisp.website.get_website(fake.website_id)
                except QuotaExceededError:
                    refusals.append(time.time())
                    return
                sent.append(time.time())

        time.sleep(period - time.time() % period + 0.01)  # start with a fresh period
        start = time.time() // period * period
        threads = [threading.Thread(target=run) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert fake.stats.count(*WEBSITE) == limit

    offsets = sorted(at - start for at in sent)
    print("\nquota of 6 in 3 s, sent at " + ", ".join(f"{o:.2f}s" for o in offsets))
    assert offsets == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=0.1)
    assert len(refusals) == 8
    assert max(refusals) - start < period
