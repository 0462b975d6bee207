"""The response cache: hits, misses, invalidation by writes, bypass, partitions and bounds."""

from __future__ import annotations

import threading

import pytest

from crisp_api import Crisp, NotFoundError
from middleware import InMemoryCache, Request, Response, ResponseCache
from tests.conftest import IDENTIFIER, KEY
from tests.scripted_server import Reply, ScriptedServer


def test_a_repeated_get_is_answered_from_the_cache(server: ScriptedServer, client: Crisp) -> None:
    first = client.website.get_conversation("w1", "s1")
    second = client.website.get_conversation("w1", "s1")
    assert first == second
    assert server.count() == 1


def test_query_order_does_not_matter_but_values_do(server: ScriptedServer, client: Crisp) -> None:
    client.website.list_conversations("w1", 1, {"per_page": 20, "filter_unread": 1})
    client.website.list_conversations("w1", 1, {"filter_unread": 1, "per_page": 20})
    assert server.count() == 1
    client.website.list_conversations("w1", 1, {"filter_unread": 1, "per_page": 30})
    assert server.count() == 2


def test_errors_are_never_cached(server: ScriptedServer, client: Crisp) -> None:
    server.push(Reply(404), Reply(404))
    for _ in range(2):
        with pytest.raises(NotFoundError):
            client.website.get_conversation("w1", "gone")
    assert server.count() == 2


def test_a_write_to_a_website_drops_its_entries_only(server: ScriptedServer, client: Crisp) -> None:
    client.website.get_conversation("w1", "s1")
    client.website.get_conversation("w2", "s1")
    client.website.change_conversation_state("w1", "s1", {"state": "resolved"})
    client.website.get_conversation("w1", "s1")
    client.website.get_conversation("w2", "s1")
    assert [s.path for s in server.seen if s.method == "GET"] == [
        "/v1/website/w1/conversation/s1",
        "/v1/website/w2/conversation/s1",
        "/v1/website/w1/conversation/s1",
    ]


def test_a_failed_write_still_invalidates(server: ScriptedServer, client: Crisp) -> None:
    client.website.get_conversation("w1", "s1")
    server.push(Reply(500))
    with pytest.raises(Exception, match="scripted"):
        client.website.send_message_in_conversation("w1", "s1", {"type": "text"})
    client.website.get_conversation("w1", "s1")
    assert server.count("GET") == 2


def test_raw_path_writes_invalidate_typed_reads(server: ScriptedServer, client: Crisp) -> None:
    client.website.get_conversation("w1", "s1")
    client.patch("/website/w1/conversation/s1/state", {"state": "resolved"})
    client.website.get_conversation("w1", "s1")
    assert server.count("GET") == 2


def test_per_call_bypass_refreshes_the_entry(server: ScriptedServer, client: Crisp) -> None:
    client.website.get_website("w1")
    client.website.get_website("w1", use_cache=False)
    client.website.get_website("w1")
    assert server.count() == 2


def test_entries_are_partitioned_by_credentials_and_tier(
    server: ScriptedServer, client: Crisp
) -> None:
    client.website.get_website("w1")
    client.set_tier("plugin")
    client.website.get_website("w1")
    client.authenticate("another-identifier", KEY)
    client.website.get_website("w1")
    client.authenticate(IDENTIFIER, KEY)
    client.set_tier("user")
    client.website.get_website("w1")
    assert server.count() == 3


def test_cache_ttl_zero_disables_the_cache(server: ScriptedServer) -> None:
    with Crisp(cache_ttl=0) as client:
        client.set_rest_host(server.url)
        client.authenticate(IDENTIFIER, KEY)
        client.website.get_website("w1")
        client.website.get_website("w1")
        assert "cache" not in [m.name for m in client.middleware]
    assert server.count() == 2


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _request(path: str, method: str = "GET", group: str | None = "w1") -> Request:
    return Request(method, "http://h", path, partition=("id", "user"), group=group)


def _answer(status: int = 200) -> Response:
    return Response(status, {}, b"{}")


def test_entries_expire_after_the_ttl() -> None:
    timer = Timer()
    cache = ResponseCache(InMemoryCache(maxsize=8, ttl=5.0, timer=timer))
    calls: list[str] = []

    def origin(request: Request) -> Response:
        calls.append(request.path)
        return _answer()

    cache(_request("/a"), origin)
    timer.now = 4.9
    cache(_request("/a"), origin)
    timer.now = 5.1
    cache(_request("/a"), origin)
    assert calls == ["/a", "/a"]


def test_the_cache_is_bounded() -> None:
    backend = InMemoryCache(maxsize=16, ttl=60)
    cache = ResponseCache(backend)
    for index in range(1000):
        cache(_request(f"/{index}", group=f"w{index % 50}"), lambda _r: _answer())
    assert len(backend) == 16


def test_the_cache_is_bounded_in_bytes_too() -> None:
    """Large answers: the bodies kept never exceed ``max_bytes`` (the oldest make room), and
    an answer larger than the bound is not kept at all."""
    backend = InMemoryCache(maxsize=1024, ttl=60, max_bytes=100_000)
    cache = ResponseCache(backend)
    body = b"x" * 30_000
    for index in range(50):
        cache(_request(f"/{index}"), lambda _r: Response(200, {}, body))
        assert backend.size_bytes <= 100_000
    assert len(backend) == 3
    calls: list[str] = []

    def origin(request: Request) -> Response:
        calls.append(request.path)
        return Response(200, {}, body if request.path == "/49" else b"y" * 100_001)

    cache(_request("/49"), origin)  # a hit: among the newest kept
    for _ in range(2):
        cache(_request("/huge"), origin)
    assert calls == ["/huge", "/huge"]
    assert backend.size_bytes <= 100_000


def test_a_read_in_flight_during_a_write_is_not_stored() -> None:
    backend = InMemoryCache(maxsize=8, ttl=60)
    cache = ResponseCache(backend)
    reading = threading.Event()
    written = threading.Event()

    def slow_origin(request: Request) -> Response:
        reading.set()
        written.wait(5)
        return _answer()

    reader = threading.Thread(target=cache, args=(_request("/a"), slow_origin))
    reader.start()
    reading.wait(5)
    cache(_request("/a/state", method="PATCH"), lambda _r: _answer())
    written.set()
    reader.join()

    fetched: list[str] = []
    cache(_request("/a"), lambda r: fetched.append(r.path) or _answer())
    assert fetched == ["/a"]  # the stale in-flight answer was not kept


def test_a_write_without_a_group_drops_everything() -> None:
    backend = InMemoryCache(maxsize=8, ttl=60)
    cache = ResponseCache(backend)
    cache(_request("/a", group="w1"), lambda _r: _answer())
    cache(_request("/b", group="w2"), lambda _r: _answer())
    cache(_request("/website", method="POST", group=None), lambda _r: _answer())
    assert len(backend) == 0


class KeepsLastAnswer:
    """An outer layer of a user's that answers the second call with the first call's Response
    object (as a home-made cache would)."""

    name = "keeps_last"

    def __init__(self) -> None:
        self.last: Response | None = None

    def __call__(self, request: Request, call_next: object) -> Response:
        if self.last is None:
            self.last = call_next(request)  # type: ignore[operator]
        return self.last


def test_two_callers_never_share_decoded_objects(server: ScriptedServer, client: Crisp) -> None:
    server.default = Reply(200, body=b'{"error":false,"reason":"ok","data":{"n":1}}')
    client.use(KeepsLastAnswer(), before=client.middleware[0].name)
    first = client.website.get_website("w")
    first["n"] = 99  # the caller owns what it got
    second = client.website.get_website("w")
    assert second == {"n": 1}
    assert second is not first
