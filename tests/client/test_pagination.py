"""The lazy page iterators, against the fake Crisp over real sockets.

Request counts are read from the fake's log: an iterator must ask for each page once, stop
at the end, and never ask more than one page past it. Two answers no Crisp would give (a
page that is not a list, a server that ignores ``timestamp_before``) come from the scripted
loopback server instead.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from crisp_api import Crisp, InvalidResponseError
from crisp_api.pagination import MESSAGES_PAGE_SIZE, paginate, walk_conversations
from crisp_api.testing import FakeCrisp
from tests.scripted_server import Reply, ScriptedServer

pytest_plugins = ["crisp_api.testing.pytest_plugin"]

StartFake = Callable[..., FakeCrisp]


@pytest.fixture
def connect() -> Iterator[Callable[..., Crisp]]:
    """Clients for fakes (no cache unless asked), closed after the test."""
    clients: list[Crisp] = []

    def make(fake: FakeCrisp, **options: Any) -> Crisp:
        client = fake.client(**{"cache_ttl": 0, **options})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def requests(fake: FakeCrisp) -> list[str]:
    """The targets the fake received since the last reset."""
    return [entry.target for entry in fake.stats.log]


def ids(items: list[dict[str, Any]], key: str) -> list[str]:
    return [item[key] for item in items]


# Conversations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "per_page", "pages_asked"),
    [
        (0, 20, 1),  # empty: one request finds the empty first page
        (40, 20, 3),  # exact multiple: two full pages, then one empty page
        (45, 20, 3),  # partial last page: 20 + 20 + 5, nothing asked past it
        (120, 50, 3),  # 50 + 50 + 20
        (50, 50, 2),
    ],
)
def test_conversations_walk_every_page_once(
    fake_crisp_factory: StartFake,
    connect: Callable[..., Crisp],
    count: int,
    per_page: int,
    pages_asked: int,
) -> None:
    fake = fake_crisp_factory(conversations=count, messages=2, seed=count)
    client = connect(fake)
    fake.reset_stats()

    found = list(client.website.iter_conversations(fake.website_id, per_page=per_page))

    assert ids(found, "session_id") == ids(fake.conversations(), "session_id")
    base = f"/v1/website/{fake.website_id}/conversations"
    assert requests(fake) == [
        f"{base}/{page}?per_page={per_page}" for page in range(1, pages_asked + 1)
    ]


def test_conversation_filters_and_start_page_pass_through(
    fake_crisp_factory: StartFake, connect: Callable[..., Crisp]
) -> None:
    fake = fake_crisp_factory(conversations=90, messages=2, seed=4)
    client = connect(fake)
    resolved = [c for c in fake.conversations() if c["state"] == "resolved"]
    assert len(resolved) > 20
    fake.reset_stats()

    found = list(client.website.iter_conversations(fake.website_id, start=2, filter_resolved=True))

    assert ids(found, "session_id") == ids(resolved[20:], "session_id")
    assert requests(fake)[0].endswith("/conversations/2?filter_resolved=1&per_page=20")


def test_conversations_are_fetched_lazily(
    fake_crisp_factory: StartFake, connect: Callable[..., Crisp]
) -> None:
    fake = fake_crisp_factory(conversations=60, messages=2, seed=2)
    client = connect(fake)
    fake.reset_stats()

    walk = client.website.iter_conversations(fake.website_id)
    assert requests(fake) == []
    first = next(walk)
    assert first["session_id"] == fake.conversations()[0]["session_id"]
    assert len(requests(fake)) == 1  # the other 40 conversations are never asked for


@pytest.mark.parametrize("per_page", [19, 51, 0, True, 20.0, "20"])
def test_per_page_outside_20_to_50_is_refused_before_any_request(
    fake_crisp: FakeCrisp, connect: Callable[..., Crisp], per_page: Any
) -> None:
    client = connect(fake_crisp)
    fake_crisp.reset_stats()
    with pytest.raises(ValueError, match="per_page"):
        client.website.iter_conversations(fake_crisp.website_id, per_page=per_page)
    assert requests(fake_crisp) == []


def test_unknown_filter_fails_on_the_first_page(
    fake_crisp: FakeCrisp, connect: Callable[..., Crisp]
) -> None:
    walk = connect(fake_crisp).website.iter_conversations(fake_crisp.website_id, filter_bogus=1)
    with pytest.raises(TypeError, match="filter_bogus"):
        next(walk)


def test_use_cache_is_passed_through(fake_crisp: FakeCrisp, connect: Callable[..., Crisp]) -> None:
    client = connect(fake_crisp, cache_ttl=60)
    website_id = fake_crisp.website_id
    first = list(client.website.iter_conversations(website_id))
    fake_crisp.reset_stats()

    assert list(client.website.iter_conversations(website_id)) == first
    assert requests(fake_crisp) == []
    assert list(client.website.iter_conversations(website_id, use_cache=False)) == first
    assert len(requests(fake_crisp)) == 3  # 20 + 20 + 10 of the 50 conversations


# Conversations by keyset ---------------------------------------------------------------


def lister(client: Crisp, website_id: str) -> Callable[[int, Any], Any]:
    """``fetch(page_number, query)`` for `walk_conversations`: the website's listing route."""
    return partial(client.website.list_conversations, website_id, use_cache=False)


def test_the_keyset_walk_reads_each_conversation_once_past_a_crowded_millisecond(
    fake_crisp_factory: StartFake, connect: Callable[..., Crisp]
) -> None:
    fake = fake_crisp_factory(conversations=60, messages=1, seed=31)
    client = connect(fake)
    crowded = fake.now_ms() + 60_000
    for conversation in fake.conversations()[10:35]:  # 25 > a page share one updated_at
        fake.add_messages(conversation["session_id"], timestamp=crowded)
    fake.reset_stats()

    pages = list(walk_conversations(lister(client, fake.website_id), None, per_page=20))

    walked = [row["session_id"] for page in pages for row in page.conversations]
    assert Counter(walked) == Counter(ids(fake.conversations(), "session_id"))  # each once
    assert [page.last for page in pages] == [False] * (len(pages) - 1) + [True]
    assert pages[0].newest == crowded
    asked = requests(fake)
    assert len(asked) == len(pages)
    assert "filter_date_end" not in asked[0]
    assert all("filter_date_start" not in target for target in asked)
    assert any("/2?" in target and "filter_date_end" in target for target in asked)


def test_the_keyset_walk_is_not_shifted_by_conversations_updated_meanwhile(
    fake_crisp_factory: StartFake, connect: Callable[..., Crisp]
) -> None:
    fake = fake_crisp_factory(conversations=70, messages=1, seed=32)
    client = connect(fake)
    start = fake.conversations()[-1]["updated_at"] + 1  # the oldest one is left out
    walk = walk_conversations(lister(client, fake.website_id), start)
    first = next(walk)
    touched = set(fake.touch_conversations(10))  # newer than the walk: above it now

    walked = [row["session_id"] for page in [first, *walk] for row in page.conversations]

    assert len(walked) == len(set(walked))
    untouched = set(ids(fake.conversations()[:-1], "session_id")) - touched
    assert untouched <= set(walked)
    assert fake.conversations()[-1]["session_id"] not in walked
    assert all("filter_date_start" in target for target in requests(fake))


@pytest.mark.parametrize(
    ("per_page", "start", "error"),
    [(19, None, ValueError), (51, None, ValueError), (True, None, ValueError),
     (50, "yesterday", TypeError), (50, 1.5, TypeError), (50, False, TypeError)],
)
def test_the_keyset_walk_refuses_bad_arguments_before_any_request(
    fake_crisp: FakeCrisp, connect: Callable[..., Crisp], per_page: Any, start: Any,
    error: type[Exception],
) -> None:
    fake_crisp.reset_stats()
    with pytest.raises(error, match="per_page" if error is ValueError else "start"):
        walk_conversations(lister(connect(fake_crisp), fake_crisp.website_id), start,
                           per_page=per_page)
    assert requests(fake_crisp) == []


def test_a_conversation_listing_that_is_not_a_list_is_an_invalid_response(
    server: ScriptedServer, client: Crisp
) -> None:
    walk = walk_conversations(lister(client, "w"), None)
    with pytest.raises(InvalidResponseError, match="not a list"):
        next(walk)
    assert server.count() == 1


# Messages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat() -> Iterator[FakeCrisp]:
    """A fake whose conversations are added by the tests, with known message counts."""
    with FakeCrisp(conversations=0, seed=9) as fake:
        yield fake


def conversation_with(fake: FakeCrisp, count: int) -> str:
    (session_id,) = fake.create_conversations(1, messages=count)
    return session_id


def timestamps(messages: list[dict[str, Any]]) -> list[int]:
    return [message["timestamp"] for message in messages]


@pytest.mark.parametrize(
    ("count", "page_sizes", "requests_made"),
    [
        (0, [], 1),
        (1, [1], 1),
        # A full page answered 200, from a server not yet seen answering 206: one more page
        # (holding only the boundary message again) proves it was the last.
        (40, [40], 2),
        # Each next page is asked with the oldest timestamp + 1, so it repeats the boundary
        # message (dropped by fingerprint) and never skips one sharing its millisecond.
        (41, [40, 1], 2),
        (80, [40, 39, 1], 3),
        (81, [40, 39, 2], 3),
    ],
)
def test_message_pages_walk_back_from_the_newest(
    chat: FakeCrisp,
    connect: Callable[..., Crisp],
    count: int,
    page_sizes: list[int],
    requests_made: int,
) -> None:
    session_id = conversation_with(chat, count)
    truth = chat.messages(session_id)  # oldest first
    client = connect(chat)
    chat.reset_stats()

    pages = list(client.website.iter_message_pages(chat.website_id, session_id))

    assert [len(page) for page in pages] == page_sizes
    newest_first = [message for page in reversed(pages) for message in page]
    assert timestamps(newest_first) == timestamps(truth)
    for page in pages:
        assert timestamps(page) == sorted(timestamps(page))
    assert len(requests(chat)) == requests_made
    cursors = [target.partition("?")[2] for target in requests(chat)]
    assert cursors[0] == ""
    assert (
        cursors[1:]
        == [f"timestamp_before={page[0]['timestamp'] + 1}" for page in pages][: len(cursors) - 1]
    )


@pytest.mark.parametrize("count", [0, 40, 41, 80])
def test_messages_come_newest_first(
    chat: FakeCrisp, connect: Callable[..., Crisp], count: int
) -> None:
    session_id = conversation_with(chat, count)
    truth = chat.messages(session_id)

    found = list(connect(chat).website.iter_messages(chat.website_id, session_id))

    assert ids(found, "fingerprint") == ids(truth[::-1], "fingerprint")


@pytest.mark.parametrize(
    ("after_index", "expected_newer", "requests_made"),
    [
        (79, 0, 1),  # nothing newer: the first page reaches it
        (59, 20, 1),  # within the newest page
        (40, 39, 1),
        (39, 40, 2),  # exactly the page boundary: the next page shows nothing newer
        (20, 59, 2),
        (0, 79, 3),  # pages after the first repeat their boundary message: 40 + 39 + 1
    ],
)
def test_after_stops_at_a_known_message(
    chat: FakeCrisp,
    connect: Callable[..., Crisp],
    after_index: int,
    expected_newer: int,
    requests_made: int,
) -> None:
    session_id = conversation_with(chat, 80)
    truth = chat.messages(session_id)
    after = truth[after_index]["timestamp"]
    client = connect(chat)
    chat.reset_stats()

    found = list(client.website.iter_messages(chat.website_id, session_id, after=after))

    assert ids(found, "fingerprint") == ids(truth[after_index + 1 :][::-1], "fingerprint")
    assert len(found) == expected_newer
    assert len(requests(chat)) == requests_made


def test_incremental_sync_fetches_only_new_messages(
    chat: FakeCrisp, connect: Callable[..., Crisp]
) -> None:
    session_id = conversation_with(chat, 45)
    client = connect(chat)
    stored = list(client.website.iter_messages(chat.website_id, session_id))[::-1]
    newest = stored[-1]["timestamp"]
    added = [chat.add_message(session_id, content=f"new {n}") for n in range(3)]
    chat.reset_stats()

    fresh = list(client.website.iter_messages(chat.website_id, session_id, after=newest))

    assert ids(fresh[::-1], "fingerprint") == ids(added, "fingerprint")
    assert len(requests(chat)) == 1


@pytest.mark.parametrize("after", ["1700000000000", True, 1.5])
def test_after_must_be_a_timestamp(
    chat: FakeCrisp, connect: Callable[..., Crisp], after: Any
) -> None:
    with pytest.raises(TypeError, match="after"):
        connect(chat).website.iter_messages(chat.website_id, "session_x", after=after)


def test_messages_use_cache_is_passed_through(
    chat: FakeCrisp, connect: Callable[..., Crisp]
) -> None:
    session_id = conversation_with(chat, 50)
    client = connect(chat, cache_ttl=60)
    first = list(client.website.iter_messages(chat.website_id, session_id))
    chat.reset_stats()
    assert list(client.website.iter_messages(chat.website_id, session_id)) == first
    assert requests(chat) == []
    assert list(client.website.iter_messages(chat.website_id, session_id, use_cache=False)) == (
        first
    )
    assert len(requests(chat)) == 2


def envelope(data: Any) -> Reply:
    return Reply(body=json.dumps({"error": False, "reason": "success", "data": data}).encode())


def messages_at(stamps: range | list[int]) -> list[dict[str, Any]]:
    return [{"fingerprint": stamp, "timestamp": stamp} for stamp in stamps]


def test_a_repeated_boundary_message_is_not_yielded_twice(
    server: ScriptedServer, client: Crisp
) -> None:
    server.push(
        envelope(messages_at(range(41, 81))),
        envelope(messages_at(range(2, 42))),  # repeats 41, the previous page's oldest
        envelope(messages_at([1, 2])),
    )
    found = list(client.website.iter_messages("w", "s", use_cache=False))
    assert timestamps(found) == list(range(80, 0, -1))
    assert server.count() == 3


def test_a_server_ignoring_timestamp_before_raises_instead_of_looping(
    server: ScriptedServer, client: Crisp
) -> None:
    server.default = envelope(messages_at(range(1, MESSAGES_PAGE_SIZE + 1)))
    walk = client.website.iter_messages("w", "s", use_cache=False)
    assert len([next(walk) for _ in range(MESSAGES_PAGE_SIZE)]) == MESSAGES_PAGE_SIZE
    with pytest.raises(InvalidResponseError, match="timestamp_before"):
        next(walk)
    assert server.count() == 2


# The generic helper --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("people", "pages_asked"),
    [(40, 3), (41, 3), (20, 2), (19, 1)],
)
def test_paginate_people_profiles_stops_at_a_short_or_empty_page(
    fake_crisp_factory: StartFake, connect: Callable[..., Crisp], people: int, pages_asked: int
) -> None:
    fake = fake_crisp_factory(conversations=3, people=people, seed=people)
    client = connect(fake)
    fake.reset_stats()

    found = list(paginate(client.website.list_people_profiles, fake.website_id, per_page=20))

    assert len({profile["people_id"] for profile in found}) == people
    assert len(requests(fake)) == pages_asked


def test_paginate_without_a_page_size_ends_on_the_empty_page(
    fake_crisp_factory: StartFake, connect: Callable[..., Crisp]
) -> None:
    fake = fake_crisp_factory(conversations=60, seed=6)
    client = connect(fake)
    person = next(c for c in fake.conversations() if c["people_id"])["people_id"]
    theirs = [c["session_id"] for c in fake.conversations() if c["people_id"] == person]
    assert 0 < len(theirs) < 20
    fake.reset_stats()

    found = list(paginate(client.website.list_people_conversations, fake.website_id, person))
    assert sorted(found) == sorted(theirs)
    assert len(requests(fake)) == 2  # the short first page, then the empty second

    fake.reset_stats()
    found = list(
        paginate(client.website.list_people_conversations, fake.website_id, person, page_size=20)
    )
    assert sorted(found) == sorted(theirs)
    assert len(requests(fake)) == 1


def test_paginate_an_empty_list_asks_once(
    fake_crisp: FakeCrisp, connect: Callable[..., Crisp]
) -> None:
    client = connect(fake_crisp)
    fake_crisp.reset_stats()
    assert list(paginate(client.website.list_campaigns, fake_crisp.website_id)) == []
    assert requests(fake_crisp) == [f"/v1/website/{fake_crisp.website_id}/campaigns/list/1"]


def test_paginate_any_resource_from_any_start_page(
    fake_crisp_factory: StartFake, connect: Callable[..., Crisp]
) -> None:
    fake = fake_crisp_factory(websites=3, conversations=2, seed=3)
    client = connect(fake)
    fake.reset_stats()
    found = list(paginate(client.plugin.list_all_connect_websites, filter_configured=True))
    assert sorted(ids(found, "website_id")) == sorted(fake.website_ids)
    assert requests(fake) == [
        "/v1/plugin/connect/websites/all/1?filter_configured=1",
        "/v1/plugin/connect/websites/all/2?filter_configured=1",
    ]
    fake.reset_stats()
    assert list(paginate(client.plugin.list_all_connect_websites, start=2)) == []
    assert requests(fake) == ["/v1/plugin/connect/websites/all/2"]


@pytest.mark.parametrize(("option", "value"), [("start", 0), ("page_size", 0), ("start", True)])
def test_paginate_refuses_page_numbers_below_one(
    fake_crisp: FakeCrisp, connect: Callable[..., Crisp], option: str, value: Any
) -> None:
    client = connect(fake_crisp)
    with pytest.raises(ValueError, match=option):
        paginate(client.website.list_visitors, fake_crisp.website_id, **{option: value})


def test_a_page_that_is_not_a_list_is_an_invalid_response(
    server: ScriptedServer, client: Crisp
) -> None:
    walk = paginate(client.website.list_visitors, "w", use_cache=False)
    with pytest.raises(InvalidResponseError, match="list_visitors"):
        next(walk)
    assert server.count() == 1
