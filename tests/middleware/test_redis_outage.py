"""Redis failing under a running client: nothing fails, one warning, and back to sharing.

The Redis servers here are the test's own (`redis_server_factory`), killed, frozen and
restarted on the same port as an outage would.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from crisp_api import Crisp
from crisp_api.testing import FakeCrisp
from middleware import DailyQuota, RateLimit, RedisBucket, RedisLink
from middleware.structured_log import DefaultLogger
from tests.conftest import IDENTIFIER, KEY

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]

ServerFactory = Callable[[], "RedisServer"]


def shared_bucket(crisp: Crisp) -> RedisBucket:
    [layer] = [m for m in crisp.middleware if isinstance(m, RateLimit)]
    assert isinstance(layer.backend, RedisBucket)
    return layer.backend


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_redis_killed_mid_run_fails_no_request_and_sharing_resumes(
    redis_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crisp_api")
    redis = redis_server_factory()
    rate, burst = 20.0, 2
    with FakeCrisp(conversations=2, messages=1) as fake:
        clients = [
            fake.client(redis_url=redis.url, rate_limit=rate, burst=burst, cache_ttl=0,
                        logger=DefaultLogger("crisp_api").bind(client=number))
            for number in (1, 2)
        ]
        stop = threading.Event()
        errors: list[str] = []

        def run(crisp: Crisp) -> None:
            while not stop.is_set():
                try:
                    crisp.website.get_website(fake.website_id)
                except Exception as exc:
                    errors.append(repr(exc))

        threads = [threading.Thread(target=run, args=(crisp,))
                   for crisp in clients for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        shared_phase = fake.stats.requests
        redis.kill()
        time.sleep(1.5)
        alone_phase = fake.stats.requests - shared_phase
        redis.start()  # the same port, empty: no state, no scripts
        watcher = redis.client()
        wait_for(lambda: watcher.keys("crisp:*:bucket") and all(
            shared_bucket(crisp).link.up for crisp in clients), 8, "both clients back")
        time.sleep(0.5)  # calls that took a local token before the switch have gone out
        back_at = fake.stats.requests
        time.sleep(2.0)
        back_phase = fake.stats.requests - back_at
        stop.set()
        for thread in threads:
            thread.join()

    print(f"\nshared {shared_phase / 1.5:.1f}/s, without Redis {alone_phase / 1.5:.1f}/s, "
          f"shared again {back_phase / 2.0:.1f}/s (limit {rate:g}/s for both clients)")
    assert errors == []
    assert shared_phase <= (rate * 1.5 + burst) * 1.1
    assert alone_phase > rate * 1.5 * 1.3  # each client on its own local bucket
    assert back_phase <= (rate * 2.0 + burst) * 1.1  # one bucket for both again
    assert [key.decode() for key in watcher.keys("*")] == [shared_bucket(clients[0]).key()]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # one per client, not one per request
    assert all("redis.unavailable" in message for message in warnings)
    assert {"client=1", "client=2"} <= {part for m in warnings for part in m.split()}
    restored = [r.getMessage() for r in caplog.records if "redis.restored" in r.getMessage()]
    assert len(restored) == 2
    assert redis.url.split("@")[0].split(":")[-1] not in caplog.text  # no password
    assert IDENTIFIER not in caplog.text
    assert KEY not in caplog.text


def test_a_stalled_redis_costs_one_timeout_then_is_bypassed(
    redis_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    redis = redis_server_factory()
    with FakeCrisp(conversations=2, messages=1) as fake:
        crisp = fake.client(redis_url=redis.url, cache_ttl=0)
        crisp.website.get_website(fake.website_id)
        redis.freeze()  # connections stay open, nothing answers
        started = time.monotonic()
        for _ in range(10):  # within the local bucket's burst: no wait of its slow start
            crisp.website.get_website(fake.website_id)
        stalled = time.monotonic() - started
        redis.thaw()
        link = shared_bucket(crisp).link
        assert not link.up
        wait_for(lambda: crisp.website.get_website(fake.website_id) is not None and link.up,
                 5, "Redis to be used again")

    print(f"\n10 calls with Redis frozen took {stalled:.2f}s")
    assert stalled < 0.5 + 0.4  # one Redis timeout (0.5 s), then no Redis at all
    assert [r.levelno for r in caplog.records if "redis." in r.getMessage()].count(
        logging.WARNING) == 1


def test_a_connection_lost_between_calls_is_replaced_without_an_outage(
    redis_server_factory: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    redis = redis_server_factory()
    bucket = RedisBucket(RedisLink(redis.url, prefix="test"), 10.0, 1, scope=lambda: "s")
    bucket.reserve(None)
    redis.kill()
    redis.start()  # the pooled connection is dead, Redis is back
    assert bucket.reserve(None) == 0.0  # a fresh bucket, in the new Redis
    assert bucket.link.up
    assert redis.client().exists(bucket.key())
    assert caplog.records == []


def test_quota_counts_and_pauses_made_without_redis_are_handed_over(
    redis_server_factory: ServerFactory,
) -> None:
    redis = redis_server_factory()
    quota = DailyQuota(1000, burst=1000)
    link = RedisLink(redis.url, prefix="test", backoff=0.1, max_backoff=0.1,
                     logger=DefaultLogger("test"))
    bucket = RedisBucket(link, None, quota=quota, scope=lambda: "s")
    for _ in range(3):
        bucket.reserve(None)
    redis.kill()
    for _ in range(4):
        bucket.reserve(None)  # counted locally
    bucket.pause(30.0)
    redis.start()  # empty: the count of 3 is gone with the old process
    time.sleep(0.15)
    assert bucket.reserve(10.0) < 0  # 30 s paused: refused, but Redis answered
    state = redis.client().hgetall(bucket.key())
    assert int(state[b"n"]) == 3 + 4  # what this process saw, and what it counted alone
    seconds, micros = redis.client().time()
    assert float(state[b"p"]) / 1e6 - (seconds + micros / 1e6) == pytest.approx(30, abs=1)


def test_an_unreachable_redis_from_the_start_is_only_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeCrisp(conversations=2, messages=1) as fake:
        crisp = fake.client(redis_url="redis://:secret-pw@127.0.0.1:9/0", rate_limit=100)
        for _ in range(5):
            crisp.website.get_website(fake.website_id)
        assert fake.stats.count("GET", "/website/{website_id}") == 5  # no shared cache
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "redis://127.0.0.1:9/0" in warnings[0]
    assert "secret-pw" not in caplog.text


def test_without_the_redis_package_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'crisp-api-next\[redis\]'"):
        Crisp(redis_url="redis://127.0.0.1:6379/0")
