"""A known daily quota (``Crisp(daily_quota=N, quota_reserve=...)``): a client never spends
the reserve, and fails with `QuotaExceededError` (a `QuotaSpentError`) unsent once the rest
is spent; the rate a run learnt is there to be kept for the next, quota or not."""

from __future__ import annotations

import time

import pytest

from crisp_api import QuotaExceededError, QuotaSpentError
from crisp_api.testing import FakeCrisp, Faults
from middleware import AdaptiveBucket, QuotaBucket, RateLimit, next_utc_midnight


@pytest.mark.parametrize(("reserve", "spendable"), [(None, 18), (0.25, 15), (0.0, 20)])
def test_a_known_quota_is_spent_down_to_its_reserve_and_no_further(
    reserve: float | None, spendable: int
) -> None:
    options = {} if reserve is None else {"quota_reserve": reserve}
    with FakeCrisp(conversations=1, messages=1) as fake:
        fake.set_faults(Faults(daily_quota=20))  # Crisp's own count, to check ours against
        client = fake.client(cache_ttl=0, daily_quota=20, **options)
        for _ in range(spendable):
            client.website.get_website(fake.website_id)
        with pytest.raises(QuotaExceededError) as caught:
            client.website.get_website(fake.website_id)
        assert isinstance(caught.value, QuotaSpentError)  # one type for both quotas
        assert caught.value.reset_at == next_utc_midnight(time.time())
        assert fake.stats.requests == spendable
        assert fake.stats.faults.get("quota", 0) == 0  # Crisp never had to refuse
        client.close()


def test_the_learnt_rate_is_reachable_through_a_quota() -> None:
    with FakeCrisp(conversations=1, messages=1) as fake:
        client = fake.client(daily_quota=1000)
        [layer] = [m for m in client.middleware if isinstance(m, RateLimit)]
        bucket = layer.backend
        assert isinstance(bucket, QuotaBucket)
        assert isinstance(bucket.bucket, AdaptiveBucket)
        assert bucket.learnt is not None
        assert bucket.restore is not None
        assert bucket.learnt() is None  # nothing learnt yet
        bucket.restore(25.0)
        assert bucket.learnt() == pytest.approx(25.0, rel=0.01)
        client.close()
