"""Chaos, dead servers, silent servers and a soak, against the fake Crisp in another process.

The soak runs for about two minutes by default; ``CRISP_SOAK=1`` makes it the full
1,000,000-request version.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from crisp_api import Crisp, RequestTimeoutError, RouteError, ServerError
from crisp_api.testing import FakeCrispProcess, Faults
from middleware import Handler, Request, Response

CHAOS = Faults(
    error_rate=0.06,
    throttle_rate=0.03,
    retry_after=0,
    drop_before_rate=0.02,
    drop_after_rate=0.02,
    slow_body_rate=0.02,
    slow_chunk_bytes=256,
    slow_chunk_delay_ms=1,
    seed=21,
)
CALLS, THREADS = 10_000, 16


@pytest.fixture(scope="module")
def fake() -> Any:
    with FakeCrispProcess(conversations=200, messages=5, seed=21) as running:
        yield running


def test_chaos_every_call_ends_documented_and_no_message_is_sent_twice(fake: Any) -> None:
    fake.set_faults(CHAOS)
    fake.reset_stats()
    sessions = [c for c in fake.ground_truth()]
    client: Crisp = fake.client(cache_ttl=0, pool_size=THREADS)
    outcomes: Counter[str] = Counter()
    sent_ok: list[str] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        rng = random.Random(index)
        session = rng.choice(sessions)
        content = f"chaos message {index}"
        try:
            if index % 5 == 0:
                client.website.send_message_in_conversation(
                    fake.website_id,
                    session,
                    {"type": "text", "content": content, "from": "operator", "origin": "chat"},
                )
                kind = "post_ok"
            else:
                reads: list[Callable[[], Any]] = [
                    lambda: client.website.get_conversation(fake.website_id, session),
                    lambda: client.website.get_messages_in_conversation(fake.website_id, session),
                    lambda: client.website.list_conversations(fake.website_id, rng.randint(1, 4)),
                ]
                rng.choice(reads)()
                kind = "get_ok"
        except RouteError as exc:
            kind = ("post_" if index % 5 == 0 else "get_") + type(exc).__name__
        with lock:
            outcomes[kind] += 1
            if kind == "post_ok":
                sent_ok.append(content)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(CALLS)))
    stats = fake.stats
    fake.set_faults()

    assert sum(outcomes.values()) == CALLS  # every call ended, in success or a RouteError
    assert sum(stats.faults.values()) > CALLS * 0.10  # the faults really were there
    gets = sum(n for kind, n in outcomes.items() if kind.startswith("get_"))
    assert outcomes["get_ok"] >= gets * 0.98
    messages = Counter(
        m["content"]
        for truth in fake.ground_truth().values()
        for m in truth.messages
        if isinstance(m["content"], str)
    )
    chaos_messages = {c: n for c, n in messages.items() if c.startswith("chaos message")}
    assert max(chaos_messages.values()) == 1  # no message was ever sent twice
    assert all(chaos_messages.get(content) == 1 for content in sent_ok)
    print(f"\nchaos: {dict(outcomes)}; faults {dict(stats.faults)}; requests {stats.requests}")


class CountAttempts:
    """Counts attempts that reach the transport (placed innermost)."""

    name = "count_attempts"

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request, call_next: Handler) -> Response:
        with self._lock:
            self.count += 1
        return call_next(request)


def _hammer(client: Crisp, website_id: str, calls: int) -> tuple[Counter[str], float]:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    started = time.monotonic()

    def one(index: int) -> None:
        try:
            client.website.get_conversation(website_id, f"session_{index}")
            kind = "ok"
        except RouteError as exc:
            kind = type(exc).__name__
        with lock:
            outcomes[kind] += 1

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(calls)))
    return outcomes, time.monotonic() - started


def test_a_dead_server_gets_no_more_than_the_retry_budget(fake: Any) -> None:
    fake.set_faults(Faults(error_rate=1.0, error_statuses=(503,), seed=2))
    fake.reset_stats()
    client: Crisp = fake.client(cache_ttl=0, pool_size=THREADS)
    calls = 400
    outcomes, elapsed = _hammer(client, fake.website_id, calls)
    attempts = fake.stats.requests
    assert outcomes == Counter({"ServerError": calls})
    # 20% of the calls, plus the floor of 5 retries/s over the elapsed time and the window.
    assert attempts <= calls * 1.2 + 5 * (elapsed + 10)
    # Once spent, a call fails at once: one attempt, no backoff.
    before = fake.stats.requests
    with pytest.raises(ServerError):
        client.website.get_conversation(fake.website_id, "one_more")
    assert fake.stats.requests - before == 1
    fake.set_faults()
    print(f"\ndead server: {calls} calls, {attempts} attempts in {elapsed:.1f} s")


def test_nothing_listening_stays_within_the_budget() -> None:
    counter = CountAttempts()
    client = Crisp(cache_ttl=0, timeout=1)
    client.set_rest_host("http://127.0.0.1:9")
    client.authenticate("id", "key")
    client.use(counter, before="auth")
    calls = 300
    outcomes, elapsed = _hammer(client, "w", calls)
    assert outcomes == Counter({"NetworkError": calls})
    assert counter.count <= calls * 1.2 + 5 * (elapsed + 10)


def test_a_server_that_never_answers_times_out_every_call(fake: Any) -> None:
    fake.set_faults(Faults(hang_rate=1.0, seed=3))
    timeout, retries = 0.4, 2
    client: Crisp = fake.client(cache_ttl=0, timeout=timeout, max_retries=retries)
    threads_before = threading.active_count()
    durations: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        started = time.monotonic()
        try:
            if index % 2:
                client.website.get_conversation(fake.website_id, "s")
            else:
                client.website.send_message_in_conversation(fake.website_id, "s", {"content": "x"})
        except RequestTimeoutError as exc:
            with lock:
                errors.append(exc)
        with lock:
            durations.append(time.monotonic() - started)

    workers = [threading.Thread(target=one, args=(n,)) for n in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    fake.set_faults()
    assert not any(worker.is_alive() for worker in workers)  # no thread hangs
    assert len(errors) == THREADS
    # GETs: three attempts and two backoffs at most; POSTs: one attempt (never resent).
    bound = timeout * (retries + 1) + 0.25 + 0.5
    assert max(durations) <= bound + 1.0
    assert threading.active_count() <= threads_before


def _resources() -> dict[str, int]:
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {
        "rss_kb": rss,
        "threads": threading.active_count(),
        "fds": len(fds),
        "sockets": sockets,
    }


def test_soak_holds_memory_threads_and_sockets_flat(fake: Any) -> None:
    full = os.environ.get("CRISP_SOAK") == "1"
    total = 1_000_000 if full else None
    seconds = None if full else 15.0  # the full soak (a million requests) is CRISP_SOAK=1
    fake.set_faults()
    client: Crisp = fake.client(cache_ttl=5, cache_size=512, pool_size=4)
    sessions = list(fake.ground_truth())[:50]
    done = 0
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def loop(worker: int) -> None:
        nonlocal done
        index = worker
        while not stop.is_set():
            # Half repeat a small set (cache hits), half are always new (misses, evictions).
            if index % 2:
                client.website.get_conversation_state(fake.website_id, sessions[index % 50])
            else:
                client.website.list_conversations(fake.website_id, 1, {"n": index})
            index += 4
            with lock:
                done += 1
                if (total and done >= total) or (seconds and time.monotonic() - started > seconds):
                    stop.set()

    def run(until: Callable[[], bool]) -> None:
        workers = [threading.Thread(target=loop, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        while not until():
            time.sleep(0.5)
        for worker in workers:
            worker.join()

    warm = threading.Event()

    def warmed() -> bool:
        # Measure growth from the end of a warm-up (caches and pools full): a tenth of the
        # requests in the full soak, a fifth of the time in the short one.
        past = done >= total // 10 if total else time.monotonic() - started >= (seconds or 0) / 5
        if not warm.is_set() and past:
            warm.set()
            samples.append(_resources())
        return stop.is_set()

    samples: list[dict[str, int]] = []
    baseline_threads = threading.active_count()
    run(warmed)
    end = _resources()
    assert samples, "the soak did not get past its warm-up"
    first = samples[0]
    growth_kb = end["rss_kb"] - first["rss_kb"]
    print(
        f"\nsoak: {done} requests in {time.monotonic() - started:.0f} s; "
        f"RSS {first['rss_kb']} -> {end['rss_kb']} kB; fds {first['fds']} -> {end['fds']}; "
        f"sockets {first['sockets']} -> {end['sockets']}"
    )
    assert growth_kb < 10 * 1024
    assert end["threads"] <= baseline_threads
    assert end["sockets"] <= first["sockets"] + 4
    assert end["fds"] <= first["fds"] + 4
