"""Traps a newcomer fell into (issue 15), each shown closed against a real loopback server."""

from __future__ import annotations

import json
import logging
import pydoc
from typing import Any

import pytest
import structlog

from crisp_api import Crisp
from tests.conftest import IDENTIFIER, KEY
from tests.scripted_server import Reply, ScriptedServer


def _client(server: ScriptedServer, **options: Any) -> Crisp:
    client = Crisp(**options)
    client.set_rest_host(server.url)
    client.authenticate(IDENTIFIER, KEY)
    return client


def test_a_stdlib_logger_is_accepted_and_logs(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app")
    with _client(server, logger=logging.getLogger("app")) as client:
        assert client.website.get_website("w1") is not None
    records = [r for r in caplog.records if r.name == "app"]
    assert len(records) == 1
    assert "http.attempt" in records[0].getMessage()
    assert "status=200" in records[0].getMessage()


def test_a_logger_that_fails_never_fails_the_call(server: ScriptedServer) -> None:
    class Broken:
        def log(self, level: int, event: str, **fields: Any) -> None:
            raise RuntimeError("the log collector is down")

    with _client(server, logger=Broken()) as client:
        server.push(Reply(200, json.dumps({"error": False, "reason": "dispatched",
                                           "data": {"ok": 1}}).encode()))
        sent = client.website.send_message_in_conversation("w1", "s1", {"content": "hi"})
        assert sent == {"ok": 1}  # delivered, and said so: no resend invited
        layer = next(m for m in client.middleware if m.name == "logging")
        assert getattr(layer, "failures", 0) == 1


def test_something_that_is_not_a_logger_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"logger must be a structlog logger or a logging\.Logger"):
        Crisp(logger="crisp")


def test_configuring_structlog_alone_makes_the_client_log(server: ScriptedServer) -> None:
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[capture])
    with _client(server) as client:
        client.website.get_website("w1")
    assert [entry["event"] for entry in capture.entries] == ["http.attempt"]
    assert capture.entries[0]["status"] == 200


def test_unconfigured_the_client_stays_silent(
    server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with _client(server) as client:
        client.website.get_website("w1")
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_set_middleware_keeps_the_auth_layer(server: ScriptedServer) -> None:
    with _client(server) as client:
        logging_layer = next(m for m in client.middleware if m.name == "logging")
        client.set_middleware([logging_layer])  # a stack of one's own, without auth
        assert [m.name for m in client.middleware] == ["logging", "auth"]
        client.website.get_website("w1")
    assert server.seen[-1].headers.get("Authorization", "").startswith("Basic ")


class _Tagging:
    """A middleware whose second parameter is not called ``call_next``."""

    name = "tagging"

    def __call__(self, request: Any, handler: Any) -> Any:
        request.headers["X-Tag"] = "yes"
        return handler(request)


def test_a_middleware_may_name_its_parameters_as_it_likes(server: ScriptedServer) -> None:
    with _client(server) as client:
        client.use(_Tagging(), before="auth")
        client.website.get_website("w1")
    assert server.seen[-1].headers.get("X-Tag") == "yes"


def test_two_middlewares_with_one_name_are_refused(server: ScriptedServer) -> None:
    with _client(server) as client:
        client.use(_Tagging())
        with pytest.raises(ValueError, match="two middlewares are named 'tagging'"):
            client.use(_Tagging(), before="auth")
        assert [m.name for m in client.middleware].count("tagging") == 1


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"rate_limit": "5"}, TypeError, r"rate_limit must be 'adaptive', None or a number"),
        ({"pool_size": "32"}, TypeError, r"pool_size must be a whole number, got '32' \(str\)"),
        ({"pool_size": 1.5}, TypeError, r"pool_size must be a whole number, got 1.5"),
        ({"pool_size": 0}, ValueError, r"pool_size must be a whole number >= 1, got 0"),
        ({"burst": "3"}, TypeError, r"burst must be a whole number"),
        ({"cache_size": -1}, ValueError, r"cache_size must be a whole number >= 1"),
        ({"rate_limit_wait": -1}, ValueError, r"rate_limit_wait must be a number of seconds"),
        ({"max_retries": True}, TypeError, r"max_retries must be a whole number"),
        ({"timeout": "3"}, TypeError, r"timeout must be a number of seconds"),
        ({"daily_quota": 0}, ValueError, r"daily_quota must be a whole number >= 1"),
        ({"quota_reserve": 1}, ValueError, r"quota_reserve must be a share from 0 to below 1"),
        ({"quota_reserve": "10%"}, TypeError, r"quota_reserve must be a share"),
        ({"quota_reset": -60}, ValueError, r"quota_reset must be a number of seconds >= 0"),
        ({"quota_reset": 86400}, ValueError, r"quota_reset must be seconds after UTC midnight"),
        ({"quota_pace": "no"}, TypeError, r"quota_pace must be True or False, got .no. \(str\)"),
        ({"redis_prefix": ""}, ValueError, r"redis_prefix must not be empty"),
    ],
)
def test_options_are_checked_once_under_their_public_names(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Crisp(**options)


def test_a_rest_host_with_the_base_path_is_not_doubled(server: ScriptedServer) -> None:
    with _client(server) as client:
        client.set_rest_host(server.url + "/v1/")
        assert client.get_rest_host() == server.url
        client.website.get_website("w1")
    assert server.seen[-1].path == "/v1/website/w1"


def test_a_rest_host_error_never_repeats_its_credentials() -> None:
    with Crisp() as client:
        for host in ("https://admin:hunter2@api.example:99999", "https://admin:hunter2@x/?a=1"):
            with pytest.raises(ValueError, match=r"rest_host") as refused:
                client.set_rest_host(host)
            assert "hunter2" not in str(refused.value)
            assert "admin" not in str(refused.value)


def test_help_lists_the_resources_and_the_stack_reads_as_a_user_expects() -> None:
    text = pydoc.plain(pydoc.render_doc(Crisp))
    listed = {line[4:].strip() for line in text.splitlines() if line.startswith(" |  ")}
    assert {"website", "plugin", "plan", "media", "bucket"} <= listed
    with Crisp() as client:
        shown = repr(client.middleware)
    assert "<StructuredLogging to logging 'crisp_api'>" in shown
    assert len(shown) < 400
    assert "frozenset" not in shown
    assert "BoundLoggerLazyProxy(" not in repr(Crisp(logger=structlog.get_logger()).middleware)
