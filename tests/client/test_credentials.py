"""Credentials and tiers, against the fake Crisp: a call without credentials is not sent and
says how to give them; a 401 names the tier it was sent as and how to change it, never the
key."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest

from crisp_api import Crisp, MissingCredentialsError, UnauthorizedError
from crisp_api.testing import DEFAULT_IDENTIFIER, DEFAULT_KEY, FakeCrisp
from middleware import BasicAuth


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCrisp]:
    with FakeCrisp(conversations=1, messages=1) as running:
        yield running


def test_a_call_without_credentials_is_not_sent_and_says_how_to_give_them(
    fake: FakeCrisp,
) -> None:
    client = Crisp(rest_host=fake.url, tier="plugin", max_retries=0)
    before = fake.stats.requests
    for call in (lambda: client.website.get_website(fake.website_id),
                 lambda: client.get(f"/website/{fake.website_id}")):
        with pytest.raises(MissingCredentialsError) as refused:
            call()
        message = str(refused.value)
        for how in ("Crisp(identifier=..., key=...", "Crisp.from_env()", "CRISP_IDENTIFIER",
                    "CRISP_KEY", "authenticate_tier()", "not sent"):
            assert how in message
        assert isinstance(refused.value, UnauthorizedError)
        assert refused.value.status is None
        assert refused.value.route == "/website/{website_id}"
    assert fake.stats.requests == before
    copy = pickle.loads(pickle.dumps(refused.value))
    assert str(copy) == message


def test_credentials_given_any_documented_way_are_used(fake: FakeCrisp) -> None:
    later = Crisp(rest_host=fake.url, cache_ttl=0)
    later.authenticate_tier("plugin", DEFAULT_IDENTIFIER, DEFAULT_KEY)
    assert later.get_tier() == "plugin"
    assert later.website.get_website(fake.website_id)["website_id"] == fake.website_id
    own_layer = Crisp(rest_host=fake.url, tier="plugin", cache_ttl=0,
                      middleware=[BasicAuth(DEFAULT_IDENTIFIER, DEFAULT_KEY)])
    assert own_layer.website.get_website(fake.website_id)["website_id"] == fake.website_id


@pytest.mark.parametrize("tier", ["user", "website"])
def test_a_401_names_the_tier_used_and_how_to_change_it_without_the_key(
    fake: FakeCrisp, tier: str
) -> None:
    client = Crisp(identifier=DEFAULT_IDENTIFIER, key=DEFAULT_KEY, rest_host=fake.url,
                   cache_ttl=0, max_retries=0)
    if tier != "user":
        client.set_tier(tier)
    for call in (lambda: client.website.get_website(fake.website_id),
                 lambda: client.get(f"/website/{fake.website_id}"),
                 lambda: client.head(f"/website/{fake.website_id}")):
        with pytest.raises(UnauthorizedError) as refused:
            call()
        error = refused.value
        assert error.status == 401
        assert error.tier == tier
        message = str(error)
        assert f"sent as tier {tier!r}" in message
        for how in ("Crisp() defaults to 'user'", "'plugin'", "Crisp(tier=...)", "CRISP_TIER",
                    "set_tier()"):
            assert how in message
        assert DEFAULT_KEY not in message + repr(error.args)
        assert pickle.loads(pickle.dumps(error)).tier == tier
