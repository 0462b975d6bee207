"""The token bucket: pacing, fail-fast, and the shared pause after a 429."""

from __future__ import annotations

import threading
import time

import pytest

from crisp_api import Crisp, RateLimitedError
from middleware import AdaptiveBucket, InMemoryBucket, RateLimit
from tests.conftest import IDENTIFIER, KEY, SleepRecorder
from tests.scripted_server import Reply, ScriptedServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_grants_the_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = InMemoryBucket(rate=10.0, burst=3, clock=clock)

    waits = [bucket.reserve(None) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3])

    clock.now += 10.0  # long idle: refills to the burst, never beyond it
    assert [bucket.reserve(None) for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_bucket_fails_fast_without_taking_a_token() -> None:
    clock = FakeClock()
    bucket = InMemoryBucket(rate=1.0, burst=1, clock=clock)

    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(-1.0)
    clock.now += 1.0
    assert bucket.reserve(0.0) == 0.0  # the refused call did not consume the refill


def test_pause_holds_back_every_reservation() -> None:
    clock = FakeClock()
    bucket = InMemoryBucket(rate=None, clock=clock)

    bucket.pause(2.0)
    assert bucket.reserve(None) == pytest.approx(2.0)
    clock.now += 1.5
    assert bucket.reserve(None) == pytest.approx(0.5)
    clock.now += 1.0
    assert bucket.reserve(None) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bad_bucket_configuration_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        InMemoryBucket(rate=rate, burst=burst)


def test_client_pacing_is_measured_on_the_wire(server: ScriptedServer) -> None:
    rate, burst, calls = 40.0, 2, 22
    with Crisp(rate_limit=rate, burst=burst, cache_ttl=0) as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        threads = [
            threading.Thread(target=lambda: [client.website.get_website("w") for _ in range(2)])
            for _ in range(calls // 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    arrivals = sorted(seen.at for seen in server.seen)
    assert len(arrivals) == calls
    # After the burst, requests cannot arrive faster than the rate allows.
    assert arrivals[-1] - arrivals[0] >= (calls - burst) / rate * 0.9


def test_fail_fast_raises_rate_limited_error(server: ScriptedServer) -> None:
    client = Crisp()
    client.set_rest_host(server.url)
    client.authenticate(IDENTIFIER, KEY)
    client.set_middleware([RateLimit(InMemoryBucket(rate=0.5, burst=1), max_wait=0), client.auth])

    client.website.get_website("w")
    with pytest.raises(RateLimitedError) as raised:
        client.website.get_website("w")
    assert raised.value.status is None
    assert raised.value.retry_after == pytest.approx(2.0, abs=0.1)
    assert server.count() == 1


def test_a_429_seen_by_one_caller_pauses_the_others(server: ScriptedServer) -> None:
    sleeps = SleepRecorder()
    bucket = InMemoryBucket(rate=None)
    client = Crisp()
    client.set_rest_host(server.url)
    client.authenticate(IDENTIFIER, KEY)
    client.set_middleware(
        [RateLimit(bucket, pause_statuses=frozenset({429}), sleep=sleeps), client.auth]
    )

    server.push(Reply(429, headers={"Retry-After": "3"}))
    with pytest.raises(RateLimitedError):
        client.website.get_website("w")  # no retry layer: the 429 surfaces
    started = time.monotonic()
    other = threading.Thread(target=client.website.get_website, args=("v",))
    other.start()
    other.join()
    assert len(sleeps.calls) == 1
    assert 3.0 - (time.monotonic() - started) - 0.5 <= sleeps.calls[0] <= 3.0


def test_after_a_pause_queued_callers_resume_at_the_rate_not_all_at_once() -> None:
    clock = FakeClock()
    bucket = InMemoryBucket(rate=10.0, burst=5, clock=clock)

    bucket.pause(1.0)  # a 429 while the bucket was full
    waits = [bucket.reserve(None) for _ in range(4)]
    assert waits == pytest.approx([1.0, 1.1, 1.2, 1.3])

    bucket.pause(0.5)  # a shorter pause leaves the queue as it was
    assert bucket.reserve(None) == pytest.approx(1.4)

    clock.now += 3.0  # idle again: the burst comes back
    assert [bucket.reserve(None) for _ in range(6)] == pytest.approx([0, 0, 0, 0, 0, 0.1])


def test_the_client_can_fail_fast_instead_of_waiting(server: ScriptedServer) -> None:
    with Crisp(rate_limit=0.5, burst=1, rate_limit_wait=0, cache_ttl=0) as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        client.website.get_website("w")
        with pytest.raises(RateLimitedError):
            client.website.get_website("w")
    assert server.count() == 1


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_limit_wait must be a number of seconds >= 0"):
        Crisp(rate_limit_wait=-1)


def test_a_pause_that_began_while_a_call_waited_its_turn_is_sat_out(
    server: ScriptedServer,
) -> None:
    """Its turn was given before the pause: sent at once, it would draw the next 429."""
    clock = FakeClock()
    bucket = InMemoryBucket(rate=10.0, burst=1, clock=clock)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            bucket.pause(2.0)  # another caller's 429 arrives while this one waits
        clock.now += seconds

    client = Crisp()
    client.set_rest_host(server.url)
    client.authenticate(IDENTIFIER, KEY)
    client.set_middleware([RateLimit(bucket, sleep=sleep), client.auth])
    bucket.reserve(None)  # the only token: the call waits 0.1 s for its turn
    client.website.get_website("w")
    assert waits == [pytest.approx(0.1), pytest.approx(1.9)]
    assert server.count() == 1


def test_an_incidental_retry_after_holds_back_only_the_refused_call(
    server: ScriptedServer,
) -> None:
    """With a learnt rate, one 429 among many successes pauses nobody (the retry layer makes
    the refused call wait its Retry-After); a share of them says the limit is shared: the
    law cuts, and the whole bucket pauses for the Retry-After."""
    sleeps = SleepRecorder()
    bucket = AdaptiveBucket(10)
    bucket.restore(1000.0)  # no slow start: the calls below go at once
    client = Crisp()
    client.set_rest_host(server.url)
    client.authenticate(IDENTIFIER, KEY)
    client.set_middleware(
        [RateLimit(bucket, pause_statuses=frozenset({429}), sleep=sleeps), client.auth]
    )
    for _ in range(60):
        client.website.get_website("w")
    server.push(Reply(429, headers={"Retry-After": "1"}))
    with pytest.raises(RateLimitedError):
        client.website.get_website("w")
    assert bucket.pauses == 0
    assert bucket.pause_left() == 0.0
    for _ in range(6):  # a volley: 7 of 67 refused, beyond the 5% that calls for a cut
        server.push(Reply(429, headers={"Retry-After": "1"}))
    for _ in range(6):
        with pytest.raises(RateLimitedError):
            client.website.get_website("w")
    assert bucket.pauses == 1  # once: the law cuts at most once per window
    assert 0.0 < bucket.pause_left() <= 1.0
