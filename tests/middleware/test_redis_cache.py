"""The Redis response cache against a real redis-server: InMemoryCache's rules, shared."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from crisp_api.testing import FakeCrisp, Faults
from middleware import RedisCache, RedisLink, Response

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]

KEY = (("ident-secret", "plugin"), "http://api.test", "/v1/website/w1/conversation/s1")
CONVERSATION = ("GET", "/website/{website_id}/conversation/{session_id}")


def cache(url: str, ttl: float = 30.0) -> RedisCache:
    """A cache on a link of its own, as another process would have."""
    return RedisCache(RedisLink(url, prefix="test"), ttl, keep_headers={"Content-Type"})


def answer(body: bytes = b'{"error":false,"data":{}}') -> Response:
    headers = {"Content-Type": "application/json; charset=utf-8", "Set-Cookie": "s=1"}
    return Response(200, headers, body)


def test_an_answer_stored_by_one_holder_is_read_by_another(redis_url: str) -> None:
    first, second = cache(redis_url), cache(redis_url)
    body = b'{"error":false,"data":"\n\x00binary-safe"}'
    first.put(KEY, "w1", answer(body), first.snapshot("w1"))

    found = second.get(KEY)
    assert found is not None
    assert (found.status, found.body) == (200, body)
    assert found.headers.get("content-type") == "application/json; charset=utf-8"
    assert "Set-Cookie" not in found.headers  # only the headers asked for are kept
    assert second.get((("someone else", "plugin"), KEY[1], KEY[2])) is None


def test_a_write_invalidates_its_group_and_the_ungrouped_for_everyone(redis_url: str) -> None:
    writer, reader = cache(redis_url), cache(redis_url)
    other = (KEY[0], KEY[1], "/v1/website/w2")
    ungrouped = (KEY[0], KEY[1], "/v1/plugins/list")
    for key, group in ((KEY, "w1"), (other, "w2"), (ungrouped, None)):
        reader.put(key, group, answer(), reader.snapshot(group))

    writer.invalidate("w1")
    assert reader.get(KEY) is None
    assert reader.get(ungrouped) is None
    assert reader.get(other) is not None

    writer.invalidate(None)  # a write without a group drops everything
    assert reader.get(other) is None


def test_a_read_in_flight_during_a_write_is_not_stored(
    redis_server: RedisServer, redis_url: str
) -> None:
    reader, writer = cache(redis_url), cache(redis_url)
    token = reader.snapshot("w1")
    writer.invalidate("w1")
    reader.put(KEY, "w1", answer(), token)
    assert redis_server.client().keys("test:*:cache:*") == []
    assert reader.get(KEY) is None
    reader.put(KEY, "w1", answer(), reader.snapshot("w1"))
    assert reader.get(KEY) is not None


def test_entries_expire_with_the_ttl_and_name_no_credential(
    redis_server: RedisServer, redis_url: str
) -> None:
    short = cache(redis_url, ttl=0.2)
    short.put(KEY, "w1", answer(), short.snapshot("w1"))
    redis = redis_server.client()
    [entry] = [key.decode() for key in redis.keys("test:*:cache:*")]
    assert "ident-secret" not in entry
    assert "/v1/" not in entry
    assert 0 < redis.pttl(entry) <= 200
    time.sleep(0.25)
    assert short.get(KEY) is None


def test_too_many_groups_start_a_new_epoch(redis_server: RedisServer, redis_url: str) -> None:
    bounded = RedisCache(RedisLink(redis_url, prefix="test"), 30, max_groups=5)
    bounded.put(KEY, "w1", answer(), bounded.snapshot("w1"))
    for number in range(10):
        bounded.invalidate(f"group-{number}")
    assert redis_server.client().hlen("test:cache:generations") <= 5
    assert bounded.get(KEY) is None  # the new epoch dropped everything, w1 included


def test_clients_in_flight_while_another_writes_do_not_cache_stale_data(redis_url: str) -> None:
    """A slow read overlapping another client's write: its answer may predate the write."""
    with FakeCrisp(conversations=2, messages=1) as fake:
        website_id, session_id = fake.website_id, next(iter(fake.ground_truth()))
        slow, writer = (fake.client(redis_url=redis_url, cache_ttl=30) for _ in range(2))
        fake.set_faults(Faults(latency_ms=400, methods=["GET"]))
        reading = threading.Thread(target=slow.website.get_conversation,
                                   args=(website_id, session_id))
        reading.start()
        time.sleep(0.1)
        writer.website.change_conversation_state(website_id, session_id, {"state": "pending"})
        reading.join()
        fake.set_faults()

        assert writer.website.get_conversation(website_id, session_id)["state"] == "pending"
        assert fake.stats.count(*CONVERSATION) == 2  # the slow answer was not stored
        assert slow.website.get_conversation(website_id, session_id)["state"] == "pending"
        assert fake.stats.count(*CONVERSATION) == 2  # the fresh one was, for both


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_non_positive_ttl_is_refused(redis_url: str, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl must be positive"):
        RedisCache(RedisLink(redis_url), ttl)
