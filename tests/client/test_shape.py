"""The client's structure: a frozen config swapped whole, a default stack built by a pure
function, one table of pipeline errors."""

from __future__ import annotations

import dataclasses

import pytest

from crisp_api import Crisp
from crisp_api.config import ClientConfig
from crisp_api.errors import (
    NetworkError,
    QuotaExceededError,
    QuotaSpentError,
    RateLimitedError,
    RequestTimeoutError,
    RouteError,
)
from crisp_api.errors.translation import PIPELINE_ERRORS, translated
from crisp_api.stack import StackOptions, default_stack
from middleware import (
    BasicAuth,
    ConnectError,
    PipelineError,
    QuotaExhaustedError,
    RateLimitWaitError,
    ReadTimeoutError,
    ServerQuotaSpentError,
)

OPTIONS = StackOptions(max_retries=2, rate_limit=None, burst=5, rate_limit_wait=None,
                       cache_ttl=2.0, cache_size=16, logger=None, redis_url=None,
                       redis_prefix="crisp", daily_quota=None, quota_reserve=0.1,
                       quota_reset=0.0, quota_pace=True, quota_spent_after=30.0)


def test_the_default_stack_is_a_pure_function_of_its_options() -> None:
    auth = BasicAuth()
    first = default_stack(OPTIONS, auth=auth, scope=lambda: "a")
    second = default_stack(OPTIONS, auth=auth, scope=lambda: "a")
    assert [m.name for m in first.layers] == ["logging", "cache", "retry", "rate_limit", "auth"]
    assert first.redis_link is None
    shared = {id(m) for m in first.layers} & {id(m) for m in second.layers}
    assert shared == {id(auth)}  # nothing else shared between two builds
    uncached = default_stack(dataclasses.replace(OPTIONS, cache_ttl=0), auth=auth,
                             scope=lambda: "a")
    assert [m.name for m in uncached.layers] == ["logging", "retry", "rate_limit", "auth"]


def test_the_config_is_frozen_and_each_setter_swaps_it_whole() -> None:
    with Crisp() as client:
        before = client._config
        with pytest.raises(dataclasses.FrozenInstanceError):
            before.tier = "plugin"  # type: ignore[misc]
        client.set_tier("plugin")
        client.authenticate("id", "secret-key")
        after = client._config
    assert before.tier == "user"
    assert (after.tier, after.identifier, after.partition) == ("plugin", "id", ("id", "plugin"))
    assert "secret-key" not in repr(after)
    assert isinstance(after, ClientConfig)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ReadTimeoutError("timed out", "GET", "/r"), RequestTimeoutError),
        (ConnectError("refused", "GET", "/r"), NetworkError),
        (RateLimitWaitError(3.0, "GET", "/r"), RateLimitedError),
        (ServerQuotaSpentError(1_700_000_000.0, 1_699_999_000.0), QuotaSpentError),
        (QuotaExhaustedError(90, 1000.0, 1_700_000_000.0), QuotaExceededError),
    ],
)
def test_each_pipeline_error_has_one_client_error(
    error: PipelineError, expected: type[RouteError]
) -> None:
    client_error = translated(error, "GET", "/website/{website_id}")
    assert type(client_error) is expected
    assert client_error.route == "/website/{website_id}"
    assert len({kind for kind, _ in PIPELINE_ERRORS}) == len(PIPELINE_ERRORS)


def test_a_spent_quota_carries_its_reset_time_and_survives_a_pickle() -> None:
    import pickle  # noqa: PLC0415 (only here)

    error = translated(ServerQuotaSpentError(1_700_000_000.0, 1_699_999_000.0), "GET", "/r")
    assert isinstance(error, QuotaSpentError)
    assert isinstance(error, RateLimitedError)  # code that handles throttling still does
    assert (error.reset_at, error.retry_after) == (1_700_000_000.0, 1000.0)
    assert error.reason == "daily_quota_spent"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.reset_at, copy.retry_after) == (QuotaSpentError, 1_700_000_000.0,
                                                            1000.0)
