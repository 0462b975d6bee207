"""A fleet of processes sharing one rate limit, one 429 pause and one cache through Redis.

The workers are real processes (spawned once for the module), each with its own `Crisp`
client; the fake Crisp runs in the test process, so its counters are read at exact moments.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest

from crisp_api import Crisp
from crisp_api.testing import DEFAULT_IDENTIFIER, DEFAULT_KEY, FakeCrisp, Faults

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]

PROCESSES, THREADS = 4, 8
RATE, BURST, SECONDS = 50.0, 5, 5.0
CONVERSATION = ("GET", "/website/{website_id}/conversation/{session_id}")


def client(fake_url: str, redis_url: str, **options: Any) -> Crisp:
    """A fleet member's client, on the fake's plugin token."""
    crisp = Crisp(redis_url=redis_url, **options)
    crisp.set_rest_host(fake_url)
    crisp.set_tier("plugin")
    crisp.authenticate(DEFAULT_IDENTIFIER, DEFAULT_KEY)
    return crisp


def warm(seconds: float) -> int:
    """Keep a worker busy while the others start; its pid."""
    time.sleep(seconds)
    return os.getpid()


def hammer(fake_url: str, redis_url: str, website_id: str, go_at: float,
           stop_at: float) -> tuple[int, int, list[str]]:
    """From ``go_at`` to ``stop_at`` (epoch seconds), THREADS threads call as fast as the
    shared limit lets them; ``(pid, calls made, errors)``."""
    crisp = client(fake_url, redis_url, rate_limit=RATE, burst=BURST, cache_ttl=0)
    counts: list[int] = []
    errors: list[str] = []

    def run() -> None:
        made = 0
        while time.time() < stop_at:
            try:
                crisp.website.get_website(website_id)
                made += 1
            except Exception as exc:
                errors.append(repr(exc))
        counts.append(made)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    time.sleep(max(0.0, go_at - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return os.getpid(), sum(counts), errors


def timed_get(fake_url: str, redis_url: str, website_id: str) -> tuple[float, float]:
    """One call at the fleet's fixed rate; when it started and when it finished (epoch
    seconds)."""
    crisp = client(fake_url, redis_url, rate_limit=RATE, burst=BURST, cache_ttl=0)
    started = time.time()
    crisp.website.get_website(website_id)
    return started, time.time()


def conversation_state(fake_url: str, redis_url: str, website_id: str, session_id: str) -> str:
    """Read a conversation's state (through the shared cache)."""
    crisp = client(fake_url, redis_url, cache_ttl=30)
    return str(crisp.website.get_conversation(website_id, session_id)["state"])


@pytest.fixture(scope="module")
def fleet() -> Iterator[ProcessPoolExecutor]:
    """PROCESSES worker processes, all started before any test times anything."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
        assert len(set(pool.map(warm, [0.5] * PROCESSES))) == PROCESSES
        yield pool


@pytest.fixture
def fake() -> Iterator[FakeCrisp]:
    with FakeCrisp(conversations=3, messages=1) as running:
        yield running


def test_the_fleet_shares_one_rate_limit(
    fleet: ProcessPoolExecutor, fake: FakeCrisp, redis_url: str
) -> None:
    go_at = time.time() + 0.5
    futures = [
        fleet.submit(hammer, fake.url, redis_url, fake.website_id, go_at, go_at + SECONDS)
        for _ in range(PROCESSES)
    ]
    results = [future.result(timeout=60) for future in futures]
    # Counted by arrival time: a test process that wakes late on a busy machine must not
    # count the requests made after the window.
    log = fake.stats.log
    assert len(log) < 1000  # the fake's log holds every request of the test
    in_window = sum(1 for entry in log if go_at <= entry.at < go_at + SECONDS)

    assert len({pid for pid, _, _ in results}) == PROCESSES
    assert [errors for _, _, errors in results] == [[]] * PROCESSES
    allowed = RATE * SECONDS + BURST
    print(f"\nfleet of {PROCESSES}x{THREADS}: {in_window} requests in {SECONDS:g}s "
          f"= {in_window / SECONDS:.1f}/s (limit {RATE:g}/s + burst {BURST}: {allowed:g})")
    assert in_window <= allowed * 1.05
    assert in_window >= RATE * SECONDS * 0.85


def test_a_429_seen_by_one_process_pauses_them_all(
    fleet: ProcessPoolExecutor, fake: FakeCrisp, redis_server: RedisServer, redis_url: str
) -> None:
    """At a fixed rate every 429 pauses the fleet's bucket (the adaptive rate does so only
    when the share of refusals cuts it: tests/middleware/test_redis_adaptive.py)."""
    fake.set_faults(Faults(throttle_rate=1.0, throttle_statuses=(429,), retry_after=2,
                           budget=1))
    throttled = client(fake.url, redis_url, rate_limit=RATE, burst=BURST, cache_ttl=0)
    thread = threading.Thread(target=throttled.website.get_website, args=(fake.website_id,))
    thread.start()
    redis = redis_server.client()
    deadline = time.monotonic() + 5
    keys = "crisp:*:bucket"
    while not (paused := [p for key in redis.keys(keys) if (p := redis.hget(key, "p"))]):
        assert time.monotonic() < deadline, "the 429 never paused the shared bucket"
        time.sleep(0.002)
    pause_ends = float(paused[0]) / 1e6  # Redis time, the same clock as time.time() here

    futures = [fleet.submit(timed_get, fake.url, redis_url, fake.website_id)
               for _ in range(PROCESSES - 1)]
    calls = [future.result(timeout=30) for future in futures]
    thread.join()

    assert fake.stats.statuses == {429: 1, 200: PROCESSES}
    for started, finished in calls:
        print(f"\nother process waited {finished - started:.2f}s for the shared pause")
        assert finished - started > 1.5
        assert finished >= pause_ends - 0.01


def test_an_answer_cached_by_one_process_serves_another_until_a_write(
    fleet: ProcessPoolExecutor, fake: FakeCrisp, redis_url: str
) -> None:
    website_id = fake.website_id
    session_id = next(iter(fake.ground_truth()))
    before = fleet.submit(conversation_state, fake.url, redis_url, website_id,
                          session_id).result(timeout=30)
    assert fake.stats.count(*CONVERSATION) == 1

    here = client(fake.url, redis_url, cache_ttl=30)
    assert here.website.get_conversation(website_id, session_id)["state"] == before
    assert fake.stats.count(*CONVERSATION) == 1  # answered from Redis

    after = "resolved" if before != "resolved" else "pending"
    here.website.change_conversation_state(website_id, session_id, {"state": after})
    assert fleet.submit(conversation_state, fake.url, redis_url, website_id,
                        session_id).result(timeout=30) == after
    assert fake.stats.count(*CONVERSATION) == 2
