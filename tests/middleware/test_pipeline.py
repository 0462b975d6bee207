"""The pipeline: composition order, user middleware at named positions, stack changes."""

from __future__ import annotations

import pytest

from crisp_api import Crisp
from middleware import Handler, Pipeline, Request, Response, compose
from tests.scripted_server import ScriptedServer


class Tag:
    """A middleware that records when it sees the request and the response."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def __call__(self, request: Request, call_next: Handler) -> Response:
        self.log.append(f"{self.name}>")
        response = call_next(request)
        self.log.append(f"<{self.name}")
        return response


def _transport(log: list[str]) -> Handler:
    def answer(request: Request) -> Response:
        log.append("transport")
        return Response(200, {}, b"")

    return answer


def test_compose_runs_outermost_first() -> None:
    log: list[str] = []
    handler = compose([Tag("a", log), Tag("b", log)], _transport(log))
    handler(Request("GET", "http://h", "/"))
    assert log == ["a>", "b>", "transport", "<b", "<a"]


def test_insert_remove_and_errors() -> None:
    log: list[str] = []
    pipeline = Pipeline([Tag("a", log), Tag("c", log)], _transport(log))
    pipeline.insert(Tag("b", log), before="c")
    pipeline.insert(Tag("d", log), after="c")
    pipeline.insert(Tag("e", log))
    assert [m.name for m in pipeline.stack] == ["a", "b", "c", "d", "e"]
    assert pipeline.remove("d").name == "d"
    pipeline(Request("GET", "http://h", "/"))
    assert log[:4] == ["a>", "b>", "c>", "e>"]
    with pytest.raises(ValueError, match="no middleware named 'zzz'"):
        pipeline.insert(Tag("x", log), before="zzz")
    with pytest.raises(ValueError, match="either"):
        pipeline.insert(Tag("x", log), before="a", after="a")
    with pytest.raises(TypeError, match="not a middleware"):
        pipeline.replace([object()])  # type: ignore[list-item]


def test_default_stack_order_and_user_middleware(server: ScriptedServer) -> None:
    log: list[str] = []
    with Crisp() as client:
        assert [m.name for m in client.middleware] == [
            "logging",
            "cache",
            "retry",
            "rate_limit",
            "auth",
        ]
        client.set_rest_host(server.url)
        client.authenticate("id", "key")
        client.use(Tag("metrics", log), after="logging")
        client.website.get_website("w1")
        client.website.get_website("w1")  # a cache hit still passes the outer layer
        assert log == ["metrics>", "<metrics", "metrics>", "<metrics"]
        client.remove_middleware("metrics")
        assert "metrics" not in [m.name for m in client.middleware]
    assert server.count() == 1


def test_a_custom_stack_keeps_authentication(server: ScriptedServer) -> None:
    log: list[str] = []
    with Crisp(middleware=[Tag("only", log)]) as client:
        client.set_rest_host(server.url)
        client.authenticate("id", "key")
        client.website.get_website("w1")
        assert [m.name for m in client.middleware] == ["only", "auth"]
    assert server.seen[0].headers["Authorization"].startswith("Basic ")
