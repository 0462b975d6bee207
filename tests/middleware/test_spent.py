"""A spent daily quota told from a rate limit by the refusals alone (`middleware.spent`).

First the rule on a virtual clock, against a server whose quota runs out and against tight
rate limits (which must never pass for a spent quota); then a default client against the fake
Crisp's daily quota over real sockets: it stops sending, every caller fails fast with
`QuotaSpentError`, and one probe after the reset finds the quota back.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from crisp_api import Crisp, QuotaSpentError, RateLimitedError, RequestTimeoutError
from crisp_api.testing import FakeCrisp, Faults
from middleware import RateLimit, SpentQuotaWatch, SpentRule, next_utc_midnight

DAY = 86400.0


@dataclass
class Run:
    """What the virtual run came to."""

    first_refusal: float | None = None
    spent_at: float | None = None
    sent_after_first_refusal: int = 0
    successes: int = 0


def simulate(
    allowed: Callable[[float], bool], *, seconds: float = 120.0, threads: int = 16,
    latency: float = 0.005, rule: SpentRule | None = None,
) -> Run:
    """``threads`` callers sending back to back through the watch (retrying a refusal at
    once, the worst case); ``allowed(now)`` is the server's verdict on a request."""
    watch = SpentQuotaWatch(rule)
    run = Run()
    events = [(0.0, thread, "send") for thread in range(threads)]
    heapq.heapify(events)
    while events:
        now, thread, kind = heapq.heappop(events)
        if now > seconds or run.spent_at is not None:
            break
        if kind == "send":
            wait = watch.admit(now)
            if wait > 0:
                heapq.heappush(events, (now + wait, thread, "send"))
                continue
            if run.first_refusal is not None:
                run.sent_after_first_refusal += 1
            ok = allowed(now)
            heapq.heappush(events, (now + latency, thread, "ok" if ok else "refused"))
        else:
            refused = kind == "refused"
            if refused and run.first_refusal is None:
                run.first_refusal = now
            run.successes += not refused
            if watch.answered(now, refused):
                run.spent_at = now
            heapq.heappush(events, (now, thread, "send"))
    return run


def token_bucket(rate: float, burst: float = 1.0) -> Callable[[float], bool]:
    """A server limit of ``rate`` requests/s."""
    state = {"tokens": burst, "at": 0.0}

    def allowed(now: float) -> bool:
        state["tokens"] = min(burst, state["tokens"] + (now - state["at"]) * rate)
        state["at"] = now
        if state["tokens"] >= 1.0:
            state["tokens"] -= 1.0
            return True
        return False

    return allowed


def test_a_spent_quota_is_known_within_60_s_and_30_requests_of_the_first_refusal() -> None:
    served = [0]

    def quota_of_200(now: float) -> bool:
        served[0] += 1
        return served[0] <= 200

    run = simulate(quota_of_200)
    assert run.first_refusal is not None
    assert run.spent_at is not None
    print(f"\nspent known {run.spent_at - run.first_refusal:.1f}s after the first refusal, "
          f"{run.sent_after_first_refusal} requests later")
    assert 30.0 <= run.spent_at - run.first_refusal <= 60.0
    assert run.sent_after_first_refusal <= 30


@pytest.mark.parametrize("rate", [2.0, 1.0, 0.2])
def test_a_tight_rate_limit_is_never_taken_for_a_spent_quota(rate: float) -> None:
    """16 threads against 2, 1 or 0.2 requests/s: refusals galore, but the spaced requests
    of a streak get through now and then, and each success ends the streak."""
    run = simulate(token_bucket(rate), seconds=300.0)
    assert run.first_refusal is not None  # the limit bit
    assert run.spent_at is None
    assert run.successes >= 0.2 * rate * 300  # (pacing is the limiter's job, not the rule's)


def test_a_long_pause_with_few_refusals_is_not_a_spent_quota() -> None:
    """Two refusals 40 s apart (a server pausing us): the time is there, not the count."""
    watch = SpentQuotaWatch()
    assert not watch.answered(0.0, True)
    assert not watch.answered(40.0, True)
    assert watch.streak == 2


def test_a_volley_of_refusals_is_not_a_spent_quota_but_is_spaced_out() -> None:
    watch = SpentQuotaWatch()
    for index in range(50):  # 50 refusals within a second
        assert not watch.answered(index / 50, True)
    # From the third refusal (at 0.04 s) one request a second, then twice as far apart.
    assert watch.admit(1.0) == pytest.approx(0.04)
    assert watch.admit(2.1) == 0.0  # the gate's slot, one request
    assert watch.admit(2.1) == pytest.approx(2.0)
    assert not watch.answered(2.2, False)  # a success ends the streak and the gate
    assert watch.streak == 0
    assert watch.admit(2.2) == 0.0


def test_the_expected_reset_is_the_next_utc_midnight_or_its_offset() -> None:
    noon = 20_000 * DAY + 12 * 3600
    assert next_utc_midnight(noon) == 20_001 * DAY
    assert next_utc_midnight(20_001 * DAY) == 20_002 * DAY
    assert next_utc_midnight(noon, offset=3600) == 20_001 * DAY + 3600
    assert next_utc_midnight(20_000 * DAY + 1800, offset=3600) == 20_000 * DAY + 3600
    rule = SpentRule()
    assert rule.again(noon) == noon + rule.probe_again  # sooner than midnight


@pytest.mark.parametrize("bad", [{"suspect": 0}, {"suspect": 9}, {"seconds": 0},
                                 {"max_spacing": 0.5}, {"probe_hold": float("inf")}])
def test_bad_rules_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SpentRule(**bad)  # type: ignore[arg-type]


# Over real sockets ---------------------------------------------------------------------

QUICK = SpentRule(refusals=6, seconds=2.0, spacing=0.25, max_spacing=1.0)
"""The default rule's shape at a tenth of its time, for tests of seconds."""


def quick_client(fake: FakeCrisp, **options: object) -> tuple[Crisp, RateLimit]:
    client = fake.client(cache_ttl=0, pool_size=16, **options)
    [layer] = [m for m in client.middleware if isinstance(m, RateLimit)]
    assert layer.watch is not None  # the default stack watches for a spent quota
    layer.watch = SpentQuotaWatch(QUICK)
    return client, layer


def hammer(client: Crisp, fake: FakeCrisp, seconds: float) -> list[BaseException]:
    """16 threads calling as fast as they may for ``seconds`` (or until a quota error); each
    call bounded by the time left, so that none is still queued for a turn long after."""
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def work() -> None:
        while (left := stop - time.monotonic()) > 0:
            try:
                client.website.get_website(fake.website_id, deadline=left)
            except RequestTimeoutError:
                return  # the time is up
            except RateLimitedError as exc:
                errors.append(exc)
                if isinstance(exc, QuotaSpentError):
                    return

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return errors


def test_a_client_stops_at_a_spent_quota_then_probes_once_after_the_reset() -> None:
    with FakeCrisp(conversations=2, messages=1) as fake:
        fake.set_faults(Faults(daily_quota=100))
        client, layer = quick_client(fake)
        started, wall_started = time.monotonic(), time.time()
        errors = hammer(client, fake, 30.0)
        took = time.monotonic() - started
        refused = fake.stats.faults.get("quota", 0)
        print(f"\nquota of 100: {refused} requests refused after it, stopped in {took:.1f}s")
        assert 0 < refused <= 30
        assert took < 15  # the quick rule: about 2 s after the first refusal
        spent = [error for error in errors if isinstance(error, QuotaSpentError)]
        assert len(spent) == 16  # every caller, with the one typed error
        until = layer.backend.spent_until()
        assert until is not None
        assert all(error.reset_at == pytest.approx(until, abs=1) for error in spent)
        # the next midnight as the mark was made (it may have passed during the hammer)
        assert until in {next_utc_midnight(wall_started), next_utc_midnight(time.time())}

        with pytest.raises(QuotaSpentError):  # fails fast, nothing sent
            client.website.get_website(fake.website_id)
        assert fake.stats.requests == 100 + refused

        layer.backend.mark_spent(time.time() - 1)  # the reset time has come: one probe
        probed = time.time()
        with pytest.raises(RateLimitedError):  # still spent: the probe is refused
            client.website.get_website(fake.website_id)
        assert fake.stats.requests == 100 + refused + 1
        again = layer.backend.spent_until()
        assert again is not None
        # probe again later, or at the reset when that comes sooner (CI once ran this at
        # 23:49 UTC: the next probe was due at midnight, 623 s on, not 900)
        expected = min(probed + QUICK.probe_again, next_utc_midnight(probed))
        assert again == pytest.approx(expected, abs=5)

        fake.update_faults()  # Crisp resets the quota
        layer.backend.mark_spent(time.time() - 1)
        assert client.website.get_website(fake.website_id) is not None  # the probe passes
        assert layer.backend.spent_until() is None
        assert client.website.get_website(fake.website_id) is not None
        client.close()


def test_a_new_client_over_a_spent_mark_sends_one_probe_only() -> None:
    """What the sync does with a mark it recorded: restore it as due, one probe tells."""
    with FakeCrisp(conversations=2, messages=1) as fake:
        fake.set_faults(Faults(daily_quota=0))
        client, layer = quick_client(fake, max_retries=0)
        layer.backend.mark_spent(time.time())
        errors = hammer(client, fake, 5.0)
        assert fake.stats.requests == 1
        probe = [error for error in errors if not isinstance(error, QuotaSpentError)]
        assert len(probe) == 1  # the probe's own refusal (no retries here)
        assert len(errors) == 1 + 16  # then every caller fails fast
        client.close()


def test_a_tight_rate_limit_over_real_sockets_is_not_a_spent_quota() -> None:
    with FakeCrisp(conversations=2, messages=1) as fake:
        fake.set_faults(Faults(bucket_rate=2, bucket_burst=1, bucket_retry_after=False))
        client, layer = quick_client(fake)
        errors = hammer(client, fake, 8.0)
        assert not any(isinstance(error, QuotaSpentError) for error in errors)
        assert layer.backend.spent_until() is None
        assert fake.stats.successes >= 8
        client.close()


def test_a_rule_lasting_less_scales_its_probes_alike() -> None:
    """``--quota-spent-after``: the count of refusals is reached in about the time asked."""
    rule = SpentRule.lasting(3.0)
    assert (rule.seconds, rule.refusals) == (3.0, SpentRule().refusals)
    assert rule.spacing == pytest.approx(0.1)
    assert rule.max_spacing == pytest.approx(0.8)
    watch = SpentQuotaWatch(rule)
    now, spent = 0.0, False
    for _ in range(3):  # a volley: the streak begins
        spent = watch.answered(now, refused=True)
    while not spent:  # then one probe at each slot the gate gives, refused
        wait = watch.admit(now)
        if wait > 0:
            now += wait
            continue
        spent = watch.answered(now, refused=True)
    assert 3.0 <= now < 4.0  # the default rule takes some 31 s
    with pytest.raises(ValueError, match="seconds"):
        SpentRule.lasting(0.0)
