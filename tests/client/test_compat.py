"""Code written for the official client (1.1.23) runs unchanged (issue 15)."""

from __future__ import annotations

import json
import pickle

import pytest

from crisp_api import Crisp
from crisp_api.errors import NetworkError, NotFoundError, RouteError
from tests.conftest import IDENTIFIER, KEY
from tests.scripted_server import Drop, Reply, ScriptedServer

BATCH_ALIASES = {
    "batch_unresolve_items": "/v1/website/w1/batch/unresolve",
    "batch_unread_items": "/v1/website/w1/batch/unread",
    "batch_report_items": "/v1/website/w1/batch/report",
    "batch_block_items": "/v1/website/w1/batch/block",
    "batch_routing_items": "/v1/website/w1/batch/routing",
    "batch_inbox_items": "/v1/website/w1/batch/inbox",
    "batch_data_items": "/v1/website/w1/batch/data",
    "batch_segments_items": "/v1/website/w1/batch/segments",
}


@pytest.fixture
def client(server: ScriptedServer) -> Crisp:
    crisp = Crisp(max_retries=0, cache_ttl=0)
    crisp.set_rest_host(server.url)
    crisp.authenticate(IDENTIFIER, KEY)
    return crisp


@pytest.mark.parametrize(("name", "path"), sorted(BATCH_ALIASES.items()))
def test_the_official_batch_names_call_their_routes(
    client: Crisp, server: ScriptedServer, name: str, path: str
) -> None:
    getattr(client.website, name)("w1", {"sessions": ["s1"]})
    assert server.seen[-1].path == path
    assert json.loads(server.seen[-1].body) == {"sessions": ["s1"]}


def test_plugin_settings_take_their_body_as_settings(
    client: Crisp, server: ScriptedServer
) -> None:
    client.plugin.save_subscription_settings("w1", "p1", settings={"a": 1})
    assert json.loads(server.seen[-1].body) == {"a": 1}
    client.plugin.update_subscription_settings("w1", "p1", settings={"b": 2})
    assert json.loads(server.seen[-1].body) == {"b": 2}


def test_a_route_error_keeps_the_official_dict_in_args(
    client: Crisp, server: ScriptedServer
) -> None:
    server.push(Reply(404, json.dumps({"error": True, "reason": "website_not_found",
                                       "data": {}}).encode()))
    with pytest.raises(RouteError) as failed:
        client.website.get_website("w1")
    legacy = failed.value.args[0]
    assert legacy["code"] == 404
    assert legacy["message"] == "website_not_found"
    assert legacy["data"]["namespace"] == "response"
    assert isinstance(failed.value, NotFoundError)
    assert str(failed.value) == "website_not_found (404 GET /website/{website_id})"
    again = pickle.loads(pickle.dumps(failed.value))
    assert (type(again), str(again), again.args[0]) == (NotFoundError, str(failed.value), legacy)


def test_no_answer_is_code_500_in_the_request_namespace(
    client: Crisp, server: ScriptedServer
) -> None:
    server.push(Drop())
    with pytest.raises(NetworkError) as failed:
        client.website.get_website("w1")
    assert failed.value.args[0]["code"] == 500
    assert failed.value.args[0]["data"]["namespace"] == "request"
