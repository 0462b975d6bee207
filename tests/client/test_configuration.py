"""Configuring a client in one step: the token, tier and host as keywords or from the
environment (`Crisp.from_env`), against the fake Crisp."""

from __future__ import annotations

import pytest

from crisp_api import Crisp
from crisp_api.errors import UnauthorizedError
from crisp_api.testing import DEFAULT_IDENTIFIER, DEFAULT_KEY, FakeCrisp


def test_keywords_authenticate_and_choose_the_tier_and_host() -> None:
    with FakeCrisp(conversations=1, messages=1) as fake:
        client = Crisp(identifier=DEFAULT_IDENTIFIER, key=DEFAULT_KEY, tier="plugin",
                       rest_host=fake.url, cache_ttl=0)
        assert client.get_tier() == "plugin"
        assert client.website.get_website(fake.website_id)["website_id"] == fake.website_id


def test_from_env_reads_the_token_tier_and_host_and_options_win() -> None:
    with FakeCrisp(conversations=1, messages=1) as fake:
        environ = {"CRISP_IDENTIFIER": DEFAULT_IDENTIFIER, "CRISP_KEY": DEFAULT_KEY,
                   "CRISP_TIER": "plugin", "CRISP_REST_HOST": fake.url}
        client = Crisp.from_env(environ, cache_ttl=0)
        assert client.website.get_website(fake.website_id)["website_id"] == fake.website_id
        wrong = Crisp.from_env({**environ, "CRISP_KEY": "not-the-key"}, cache_ttl=0,
                               max_retries=0)
        with pytest.raises(UnauthorizedError):
            wrong.website.get_website(fake.website_id)
        other = Crisp.from_env(environ, tier="user")
        assert other.get_tier() == "user"


@pytest.mark.parametrize("given", [{"identifier": "id"}, {"key": "secret-value"}])
def test_half_a_keypair_is_refused_without_showing_it(given: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="identifier and key are given together") as refused:
        Crisp(**given)
    assert "secret-value" not in str(refused.value)


def test_from_env_refuses_half_a_keypair_naming_the_missing_variable() -> None:
    with pytest.raises(ValueError, match="CRISP_KEY is missing"):
        Crisp.from_env({"CRISP_IDENTIFIER": "id"})
    with pytest.raises(ValueError, match="tier must be one of"):
        Crisp.from_env({"CRISP_TIER": "admin"})
