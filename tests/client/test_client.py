"""The client: the seed API, configuration checks, headers, escaping and error mapping."""

from __future__ import annotations

import base64
import threading
from urllib.parse import unquote

import pytest

import crisp_api
from crisp_api import (
    BadRequestError,
    Crisp,
    ForbiddenError,
    InvalidResponseError,
    NotFoundError,
    RequestTimeoutError,
    ResponseTooLargeError,
    RouteError,
    ServerError,
    UnauthorizedError,
)
from crisp_api.errors.route import RouteError as SeedRouteError
from tests.conftest import IDENTIFIER, KEY
from tests.scripted_server import Hang, Reply, ScriptedServer


def test_seed_readme_flow_works_as_written(server: ScriptedServer) -> None:
    client = Crisp()
    client.set_tier("plugin")
    client.set_rest_host(server.url)
    client.authenticate(IDENTIFIER, KEY)
    client.website.send_message_in_conversation(
        "88972681-a00c-4b3b-a383-cab281636484",
        "session_9df2a21e-f113-41d4-8ed2-bad8b49cafd1",
        {"type": "text", "content": "hello", "from": "operator", "origin": "chat"},
    )
    seen = server.seen[0]
    assert seen.method == "POST"
    assert seen.path == (
        "/v1/website/88972681-a00c-4b3b-a383-cab281636484"
        "/conversation/session_9df2a21e-f113-41d4-8ed2-bad8b49cafd1/message"
    )
    assert seen.body == b'{"type":"text","content":"hello","from":"operator","origin":"chat"}'
    assert seen.headers["Content-Type"] == "application/json; charset=utf-8"


def test_every_request_carries_auth_tier_and_user_agent(
    server: ScriptedServer, client: Crisp
) -> None:
    client.set_tier("website")
    client.website.get_website("w1")
    headers = server.seen[0].headers
    expected = base64.b64encode(f"{IDENTIFIER}:{KEY}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"
    assert headers["X-Crisp-Tier"] == "website"
    assert headers["User-Agent"] == f"crisp-api-python/{crisp_api.__version__}"


def test_raw_methods_and_plugin_shortcuts(server: ScriptedServer, client: Crisp) -> None:
    client.get("/website/w1/visitors/count", {"b": 2, "a": 1})
    client.head("/website/w1/conversation/s1")
    client.post("/website/w1/conversation")
    client.patch("/website/w1/settings", {"x": 1})
    client.put("/website/w1/people/data/p1", {"y": 2})
    client.remove("/website/w1")
    client.delete("/website/w2")
    client.get_connect_account()
    client.list_all_connect_websites(2, True)
    assert [(s.method, s.path) for s in server.seen] == [
        ("GET", "/v1/website/w1/visitors/count?a=1&b=2"),
        ("HEAD", "/v1/website/w1/conversation/s1"),
        ("POST", "/v1/website/w1/conversation"),
        ("PATCH", "/v1/website/w1/settings"),
        ("PUT", "/v1/website/w1/people/data/p1"),
        ("DELETE", "/v1/website/w1"),
        ("DELETE", "/v1/website/w2"),
        ("GET", "/v1/plugin/connect/account"),
        ("GET", "/v1/plugin/connect/websites/all/2?filter_configured=1"),
    ]


@pytest.mark.parametrize("hostile", ["a/b", "a?b=1", "a#b", "../../plugin", "a%2Fb", "a b"])
def test_path_parameters_stay_in_their_segment(
    server: ScriptedServer, client: Crisp, hostile: str
) -> None:
    client.website.get_conversation("w1", hostile)
    path = server.seen[0].path
    prefix = "/v1/website/w1/conversation/"
    assert path.startswith(prefix)
    segment = path[len(prefix) :]
    for reserved in "/?#":
        assert reserved not in segment
    assert unquote(segment) == hostile


@pytest.mark.parametrize("bad", ["", ".", ".."])
def test_ids_that_would_change_the_route_are_refused(client: Crisp, bad: str) -> None:
    with pytest.raises(ValueError, match="session_id"):
        client.website.get_conversation("w1", bad)


@pytest.mark.parametrize("bad", [None, 1.5, True, b"bytes"])
def test_ids_of_the_wrong_type_are_refused(client: Crisp, bad: object) -> None:
    with pytest.raises(TypeError, match="website_id"):
        client.website.get_website(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("setter", "value"),
    [
        ("set_tier", "admin"),
        ("set_rest_host", "api.crisp.chat"),
        ("set_rest_host", "ftp://api.crisp.chat"),
        ("set_rest_host", "https://"),
        ("set_rest_host", "https://user:pw@api.crisp.chat"),
        ("set_rest_host", "http://host:99999"),
        ("set_timeout", 0),
        ("set_timeout", -1),
        ("set_timeout", float("nan")),
        ("set_rest_base_path", "/v1?x=1"),
    ],
)
def test_bad_configuration_is_a_value_error_when_set(setter: str, value: object) -> None:
    with pytest.raises(ValueError, match=r"must|valid"):
        getattr(Crisp(), setter)(value)


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": 0},
        {"max_retries": -1},
        {"rate_limit": -5},
        {"rate_limit": 0},
        {"burst": 0},
        {"cache_ttl": -1},
        {"cache_size": 0},
        {"pool_size": 0},
    ],
)
def test_bad_constructor_options_are_value_errors(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Crisp(**options)  # type: ignore[arg-type]


def test_empty_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Crisp().authenticate("", "key")


def test_configuration_getters_and_base_path(server: ScriptedServer, client: Crisp) -> None:
    client.set_rest_base_path("v2/")
    client.set_timeout(3)
    assert client.get_rest_base_path() == "/v2"
    assert client.get_timeout() == 3.0
    assert client.get_rest_host() == server.url
    client.website.get_website("w1")
    assert server.seen[0].path == "/v2/website/w1"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, UnauthorizedError),
        (402, ForbiddenError),
        (403, ForbiddenError),
        (404, NotFoundError),
        (409, BadRequestError),
        (500, ServerError),
    ],
)
def test_error_statuses_map_to_classes(
    server: ScriptedServer, client: Crisp, status: int, error: type[RouteError]
) -> None:
    server.push(
        Reply(status, body=b'{"error":true,"reason":"some_reason","data":{}}'),
    )
    with pytest.raises(error) as raised:
        client.website.send_message_in_conversation("w1", "s1", {"content": "x"})
    assert isinstance(raised.value, SeedRouteError)
    assert (raised.value.status, raised.value.reason) == (status, "some_reason")
    assert (raised.value.method, raised.value.route) == (
        "POST",
        "/website/{website_id}/conversation/{session_id}/message",
    )


@pytest.mark.parametrize(
    ("reply", "snippet"),
    [
        (Reply(200, body=b'{"error":false,"data":{"a":'), '{"error":false,"data":{"a":'),
        (Reply(200, body=b""), ""),
        (
            Reply(200, body=b'{"error":false,"data":"\xff\xfe"}'),
            '{"error":false,"data":"\ufffd\ufffd"}',
        ),
        (Reply(200, body=b'{"error":false,"reason":"ok"}'), '{"error":false,"reason":"ok"}'),
        (Reply(200, body=b"[1,2]"), "[1,2]"),
        (Reply(200, body=b"<html>ok</html>", content_type="text/html"), "<html>ok</html>"),
        (Reply(200, body=b'{"data":{}}', content_type="text/plain"), '{"data":{}}'),
    ],
)
def test_unreadable_answers_are_invalid_response_errors(
    server: ScriptedServer, client: Crisp, reply: Reply, snippet: str
) -> None:
    server.push(reply)
    with pytest.raises(InvalidResponseError) as raised:
        client.website.send_message_in_conversation("w1", "s1", {})
    assert raised.value.status == 200
    assert raised.value.snippet == snippet


def test_an_html_error_page_keeps_its_status_class(server: ScriptedServer, client: Crisp) -> None:
    server.push(Reply(502, body=b"<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"))
    with pytest.raises(ServerError) as raised:
        client.website.send_message_in_conversation("w1", "s1", {})
    assert raised.value.status == 502
    assert "Bad Gateway" in str(raised.value.snippet)


def test_a_body_over_the_limit_is_refused_unread(server: ScriptedServer) -> None:
    server.push(Reply(200, body=b'{"error":false,"data":"' + b"x" * 5000 + b'"}'))
    with Crisp(max_body=1024) as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        with pytest.raises(ResponseTooLargeError):
            client.website.get_website("w1")
        assert client.website.get_website("w1") == {"path": "/v1/website/w1"}


def test_head_routes_return_empty_or_not_found(server: ScriptedServer, client: Crisp) -> None:
    assert client.website.check_conversation_exists("w1", "s1") == {}
    server.push(Reply(404))
    with pytest.raises(NotFoundError):
        client.website.check_conversation_exists("w1", "s2")


def test_a_silent_server_times_out(server: ScriptedServer) -> None:
    server.push(Hang(5), Hang(5))
    with Crisp(timeout=0.3, max_retries=1) as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        with pytest.raises(RequestTimeoutError) as raised:
            client.website.send_message_in_conversation("w1", "s1", {})
    assert raised.value.status is None
    assert server.count() == 1  # a POST that may have arrived is not sent again


def test_keep_alive_reuses_one_connection(server: ScriptedServer, client: Crisp) -> None:
    for index in range(20):
        client.website.get_website(f"w{index}")
    assert len({seen.connection for seen in server.seen}) == 1


def test_shared_across_threads(server: ScriptedServer, client: Crisp) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(25):
                path = client.website.get_conversation(f"w{worker}", f"s{index}")["path"]
                assert path == f"/v1/website/w{worker}/conversation/s{index}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert server.count() == 16 * 25


def test_context_manager_and_close(server: ScriptedServer) -> None:
    with Crisp() as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        client.website.get_website("w1")
    client.website.get_website("w2")  # usable after close: reconnects
    assert server.count() == 2


def test_secrets_stay_out_of_reprs_and_errors(server: ScriptedServer, client: Crisp) -> None:
    server.push(Reply(401, body=b'{"error":true,"reason":"unauthorized","data":{}}'))
    with pytest.raises(UnauthorizedError) as raised:
        client.website.get_website("w1")
    texts = [repr(client), str(raised.value), repr(raised.value), repr(client.middleware)]
    for text in texts:
        assert KEY not in text
        assert IDENTIFIER not in text
        assert base64.b64encode(f"{IDENTIFIER}:{KEY}".encode()).decode() not in text
