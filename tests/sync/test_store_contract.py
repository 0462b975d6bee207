"""The `Store` contract, run against every store implementation.

Each implementation is one entry of `FACTORIES`: given the test's request, it returns an
opener of stores on one fresh, empty database (a file under the test's directory, a new
PostgreSQL database on the session's private server), which may be called several times
(each call a new store object on the same data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import pytest

from crisp_api.sync.engine import _not_newer, _page_states
from crisp_api.sync.sqlite_store import SQLiteStore
from crisp_api.sync.store import (
    BatchStates,
    Changes,
    ConversationState,
    MessageSpan,
    Store,
    WebsiteLockedError,
)

WEBSITE = "website-a"
OTHER_WEBSITE = "website-b"


pytest_plugins = ["tests.postgres_server"]

Opener = Callable[[], AbstractContextManager[Store]]


def _sqlite(request: pytest.FixtureRequest) -> Opener:
    path: Path = request.getfixturevalue("tmp_path") / "store.sqlite3"
    return lambda: SQLiteStore(path)


def _postgres(request: pytest.FixtureRequest) -> Opener:
    url: str = request.getfixturevalue("postgres_url")  # skips, saying why, without a server
    from crisp_api.sync.postgres_store import PostgresStore  # noqa: PLC0415 - optional extra

    return lambda: PostgresStore(url, pool_size=4)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest], Opener]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}

StoreFactory = Callable[[], Store]


@pytest.fixture(params=sorted(FACTORIES))
def store_factory(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Opens stores of one implementation on one database; all are closed after the test."""
    opener = FACTORIES[request.param](request)
    with ExitStack() as stack:
        yield lambda: stack.enter_context(opener())


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()


def conversation(session_id: str, updated_at: int = 1_000, **extra: object) -> dict[str, object]:
    return {"session_id": session_id, "updated_at": updated_at, "state": "resolved", **extra}


def message(
    session_id: str, fingerprint: int, timestamp: int, content: str = "hello"
) -> dict[str, object]:
    return {
        "session_id": session_id,
        "fingerprint": fingerprint,
        "timestamp": timestamp,
        "content": content,
    }


def save(
    store: Store, session_id: str, messages: list[dict[str, object]], since: int | None = None
) -> tuple[Changes, Changes]:
    return store.save_conversation(
        WEBSITE, conversation(session_id), MessageSpan(messages=messages, since=since)
    )


def test_new_rows_are_added_then_unchanged_then_updated(store: Store) -> None:
    first = [message("s1", 1, 100), message("s1", 2, 200)]
    assert save(store, "s1", first) == (Changes(added=1), Changes(added=2))
    assert save(store, "s1", first) == (Changes(), Changes())

    edited = [message("s1", 1, 100, "edited"), message("s1", 2, 200)]
    changed = store.save_conversation(
        WEBSITE, conversation("s1", 2_000), MessageSpan(messages=edited, since=None)
    )
    assert changed == (Changes(updated=1), Changes(updated=1))


def test_conversation_state(store: Store) -> None:
    assert store.conversation_state(WEBSITE, "s1") == ConversationState(None, None)
    store.save_conversation(
        WEBSITE,
        conversation("s1", 5_000),
        MessageSpan(messages=[message("s1", 1, 300), message("s1", 2, 100)], since=None),
    )
    assert store.conversation_state(WEBSITE, "s1") == ConversationState(5_000, 300)
    assert store.conversation_state(WEBSITE, "s2") == ConversationState(None, None)


def test_the_batch_reads_say_what_conversation_state_says(store: Store) -> None:
    assert isinstance(store, BatchStates)  # both built-in stores read a page's states at once
    save(store, "s1", [message("s1", 1, 300), message("s1", 2, 100)])
    store.save_conversation(WEBSITE, {"session_id": "s2"}, MessageSpan([], None))
    store.save_message(WEBSITE, "s3", message("s3", 1, 700))  # from an event: not read
    store.save_message(WEBSITE, "s1", message("s1", 3, 900))
    asked = ["s1", "s2", "s3", "s4", "", "s1"]  # s4 unknown; "" no store can key
    updated = store.updated_at_of(WEBSITE, asked)
    newest = store.newest_messages(WEBSITE, asked)
    for session_id in asked:
        assert ConversationState(updated.get(session_id), newest.get(session_id)) == (
            store.conversation_state(WEBSITE, session_id))
    assert updated == {"s1": 1_000}
    assert newest == {"s1": 300}


def test_stale_of_names_what_changed_and_nothing_else(store: Store) -> None:
    assert isinstance(store, BatchStates)
    save(store, "s1", [message("s1", 1, 300)])  # updated_at 1,000
    store.save_conversation(WEBSITE, {"session_id": "s2"}, MessageSpan([], None))
    store.save_message(WEBSITE, "s3", message("s3", 1, 700))  # a message alone: no row
    listed = {"s1": 1_000, "s2": 5, "s3": 1, "s4": 1, "": 1, "s\ud800": 1}
    assert store.stale_of(WEBSITE, listed) == dict.fromkeys(["s2", "s3", "s4", "", "s\ud800"])
    assert store.stale_of(WEBSITE, {"s1": 999}) == {}
    assert store.stale_of(WEBSITE, {"s1": 1_001}) == {"s1": 1_000}
    assert store.stale_of(WEBSITE, {"s1": -(2**63), "s4": 2**63 - 1}) == {"s4": None}
    assert store.stale_of(WEBSITE, {}) == {}


def test_stale_of_reads_any_id_a_store_can_key(store: Store) -> None:
    """The page's ids travel as JSON text (SQLite) or an array (PostgreSQL): quotes,
    backslashes, control characters and characters beyond the BMP come back as they went."""
    assert isinstance(store, BatchStates)
    odd = ['s"q', "s\\b", "s\U0001F600", "s\x01", "s'q", "s\u00e9"]
    for session_id in odd:
        store.save_conversation(WEBSITE, conversation(session_id, 500), MessageSpan([], None))
    assert store.stale_of(WEBSITE, dict.fromkeys(odd, 500)) == {}
    assert store.stale_of(WEBSITE, dict.fromkeys(odd, 501)) == dict.fromkeys(odd, 500)


def test_a_pages_states_judge_each_row_as_conversation_state_does(store: Store) -> None:
    """The engine's batch read of a listing page (`stale_of`, then what the store holds of
    the stale alone) finds unchanged exactly the rows a read of each row's own state does:
    a repeated id, stamps beyond 64 bits or no integer, ids no store can key."""
    assert isinstance(store, BatchStates)
    save(store, "s1", [message("s1", 1, 300)])  # updated_at 1,000
    store.save_conversation(WEBSITE, conversation("s2", 5), MessageSpan([], None))
    store.save_conversation(WEBSITE, conversation("s3", 2**63 - 1), MessageSpan([], None))
    page: list[dict[str, Any]] = [
        conversation("s1", 1_000), conversation("s1", 1_001), conversation("s1", 999),
        {"session_id": "s1", "updated_at": "1000"}, conversation("s3", -(2**64)),
        conversation("s2", -(2**64)), conversation("s2", 2**64), conversation("s3", 2**63 - 1),
        conversation("s4", 1), {"session_id": "s2", "updated_at": True},
        {"session_id": "s2"}, {"updated_at": 1}, {"session_id": ["s1"], "updated_at": 1},
        conversation("", 1),
    ]
    unchanged, changed = _page_states(store, WEBSITE, page)
    expected = [row for row in page if isinstance(row.get("session_id"), str) and _not_newer(
        row.get("updated_at"), store.conversation_state(WEBSITE, row["session_id"]).updated_at)]
    assert sorted(map(repr, unchanged)) == sorted(map(repr, expected))
    assert [row for row, _ in changed] == [row for row in page if row not in expected]
    for row, state in changed:
        sid = row.get("session_id")
        if isinstance(sid, str) and sid:
            assert state == store.conversation_state(WEBSITE, sid)


def test_a_fingerprint_names_a_message_within_its_conversation_only(store: Store) -> None:
    assert save(store, "s1", [message("s1", 7, 100, "first")])[1] == Changes(added=1)
    assert save(store, "s2", [message("s2", 7, 900, "second")])[1] == Changes(added=1)

    assert save(store, "s1", [message("s1", 7, 100, "first")])[1] == Changes()
    assert store.conversation_state(WEBSITE, "s1").newest_message == 100
    assert store.conversation_state(WEBSITE, "s2").newest_message == 900


def test_span_reconciles_edits_and_removals_after_since(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100), message("s1", 2, 200), message("s1", 3, 300)])

    changes = save(store, "s1", [message("s1", 2, 200, "edited")], since=150)

    assert changes[1] == Changes(updated=1, removed=1)
    assert store.conversation_state(WEBSITE, "s1").newest_message == 200
    kept = [message("s1", 1, 100), message("s1", 2, 200, "edited")]
    assert save(store, "s1", kept)[1] == Changes()


def test_span_never_removes_messages_at_or_before_since(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100), message("s1", 2, 200), message("s1", 3, 300)])

    assert save(store, "s1", [], since=200)[1] == Changes(removed=1)

    assert save(store, "s1", [message("s1", 1, 100), message("s1", 2, 200)])[1] == Changes()


def test_span_since_none_removes_every_absent_message(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100), message("s1", 2, 200), message("s1", 3, 300)])
    save(store, "s2", [message("s2", 1, 100)])

    assert save(store, "s1", [message("s1", 2, 200)])[1] == Changes(removed=2)

    assert store.conversation_state(WEBSITE, "s1").newest_message == 200
    assert save(store, "s2", [message("s2", 1, 100)])[1] == Changes()  # other conversations


def test_people_of_two_websites_with_one_people_id_are_kept_apart(store: Store) -> None:
    assert store.save_people(WEBSITE, [{"people_id": "p1", "nickname": "Ann"}]) == Changes(added=1)
    assert store.save_people(OTHER_WEBSITE, [{"people_id": "p1", "nickname": "Bob"}]) == Changes(
        added=1
    )

    assert store.save_people(WEBSITE, [{"people_id": "p1", "nickname": "Ann"}]) == Changes()
    assert store.save_people(WEBSITE, [{"people_id": "p1", "nickname": "Anna"}]) == Changes(
        updated=1
    )
    assert store.save_people(OTHER_WEBSITE, [{"people_id": "p1", "nickname": "Bob"}]) == Changes()


def test_operators_are_keyed_by_website_and_user_id(store: Store) -> None:
    operators: list[dict[str, Any]] = [
        {"details": {"user_id": "u1", "role": "owner"}},
        {"user_id": "u2"},
    ]
    assert store.save_operators(WEBSITE, operators) == Changes(added=2)
    assert store.save_operators(OTHER_WEBSITE, operators[:1]) == Changes(added=1)
    assert store.save_operators(WEBSITE, operators) == Changes()
    demoted = [{"details": {"user_id": "u1", "role": "member"}}]
    assert store.save_operators(WEBSITE, demoted) == Changes(updated=1)
    assert store.save_operators(OTHER_WEBSITE, operators[:1]) == Changes()


def test_checkpoint_and_people_listed_at_are_independent(store: Store) -> None:
    assert store.checkpoint(WEBSITE) is None
    assert store.people_listed_at(WEBSITE) is None

    store.set_people_listed_at(WEBSITE, 500)
    assert store.checkpoint(WEBSITE) is None
    store.set_checkpoint(WEBSITE, 1_000)
    store.set_checkpoint(WEBSITE, 2_000)
    assert store.people_listed_at(WEBSITE) == 500
    store.set_people_listed_at(WEBSITE, 600)

    assert (store.checkpoint(WEBSITE), store.people_listed_at(WEBSITE)) == (2_000, 600)
    assert (store.checkpoint(OTHER_WEBSITE), store.people_listed_at(OTHER_WEBSITE)) == (None, None)


def test_state_survives_reopening(store_factory: StoreFactory) -> None:
    first = store_factory()
    first.set_checkpoint(WEBSITE, 1_000)
    save(first, "s1", [message("s1", 1, 100)])
    again = store_factory()
    assert again.checkpoint(WEBSITE) == 1_000
    assert again.conversation_state(WEBSITE, "s1") == ConversationState(1_000, 100)


def test_a_message_that_cannot_be_keyed_is_put_aside_and_the_rest_stored(store: Store) -> None:
    good = [message("s1", 1, 100), message("s1", 2, 200)]
    bad = {"session_id": "s1", "fingerprint": 3, "timestamp": "yesterday"}

    assert save(store, "s1", [good[0], bad, good[1]]) == (
        Changes(added=1), Changes(added=2, quarantined=1))

    assert store.conversation_state(WEBSITE, "s1") == ConversationState(1_000, 200)
    assert store.quarantined(WEBSITE) == 1
    assert save(store, "s1", [good[0], bad, good[1]])[1] == Changes(quarantined=1)
    assert store.quarantined(WEBSITE) == 1  # the same row put aside again: one entry
    assert store.quarantined(OTHER_WEBSITE) == 0


def test_profiles_and_operators_without_an_id_are_put_aside(store: Store) -> None:
    profiles = [{"people_id": "p1"}, {"nickname": "no id"}, {"people_id": "p2"}]
    assert store.save_people(WEBSITE, profiles) == Changes(added=2, quarantined=1)
    assert store.save_operators(WEBSITE, [{"user_id": "u1"}, {"details": {}}]) == Changes(
        added=1, quarantined=1)

    assert store.save_people(WEBSITE, [profiles[0], profiles[2]]) == Changes()
    assert store.quarantined(WEBSITE) == 2


def test_a_conversation_without_session_id_is_put_aside_with_its_messages(
    store: Store,
) -> None:
    assert store.save_conversation(
        WEBSITE, {"updated_at": 1}, MessageSpan(messages=[message("s1", 1, 1)], since=None)
    ) == (Changes(quarantined=1), Changes(quarantined=1))
    assert store.conversation_state(WEBSITE, "s1") == ConversationState(None, None)
    assert store.quarantined(WEBSITE) == 2


def test_a_held_website_is_refused_to_other_runs_until_released(
    store_factory: StoreFactory,
) -> None:
    first, second = store_factory(), store_factory()
    with first.lock(WEBSITE):
        with pytest.raises(WebsiteLockedError) as refused, second.lock(WEBSITE):
            pass
        assert refused.value.website_id == WEBSITE
        with pytest.raises(WebsiteLockedError), first.lock(WEBSITE):
            pass  # the same store: a second run all the same
        with second.lock(OTHER_WEBSITE):
            pass  # other websites stay free
    with second.lock(WEBSITE):
        pass


# Live events (follow mode) -----------------------------------------------------------------


def test_a_message_from_an_event_is_stored_but_does_not_count_as_read(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100)])
    assert store.save_message(WEBSITE, "s1", message("s1", 2, 500)) == Changes(added=1)
    assert store.save_message(WEBSITE, "s1", message("s1", 2, 500)) == Changes()  # idempotent
    # A walk starting after the event's message would skip what a dropped socket missed.
    assert store.conversation_state(WEBSITE, "s1").newest_message == 100
    # Once a sync reads it, it counts.
    save(store, "s1", [message("s1", 1, 100), message("s1", 2, 500)])
    assert store.conversation_state(WEBSITE, "s1").newest_message == 500


def test_a_sync_reading_messages_events_stored_counts_only_the_changed_ones(
    store: Store,
) -> None:
    """A sync that reads messages live events stored makes them count as read; one that
    reads them as stored is no change, one that reads them edited is an update."""
    save(store, "s1", [message("s1", 1, 100)])
    store.save_message(WEBSITE, "s1", message("s1", 2, 500))
    store.save_message(WEBSITE, "s1", message("s1", 3, 600))

    read = [message("s1", 1, 100), message("s1", 2, 500), message("s1", 3, 600, "edited")]
    assert save(store, "s1", read) == (Changes(), Changes(updated=1))
    assert store.conversation_state(WEBSITE, "s1").newest_message == 600
    assert save(store, "s1", read) == (Changes(), Changes())


def test_an_event_on_a_message_a_sync_read_keeps_it_read(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100)])
    assert store.save_message(WEBSITE, "s1", message("s1", 1, 100, "again")) == Changes(
        updated=1
    )
    assert store.conversation_state(WEBSITE, "s1").newest_message == 100


def test_edits_and_removals_from_events_are_idempotent(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100), message("s1", 2, 200)])
    assert store.edit_message(WEBSITE, "s1", 1, "edited") == Changes(updated=1)
    assert store.edit_message(WEBSITE, "s1", 1, "edited") == Changes()
    assert store.edit_message(WEBSITE, "s1", 9, "nobody") == Changes()  # not stored: nothing
    assert store.remove_message(WEBSITE, "s1", 2) == Changes(removed=1)
    assert store.remove_message(WEBSITE, "s1", 2) == Changes()
    kept = [message("s1", 1, 100, "edited")]
    assert save(store, "s1", kept)[1] == Changes()  # the store holds exactly that


def test_conversation_updates_and_removal_from_events(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100)])
    save(store, "s2", [message("s2", 1, 100)])
    assert store.update_conversation(WEBSITE, "s1", {"state": "unresolved"}) == Changes(
        updated=1
    )
    assert store.update_conversation(WEBSITE, "s1", {"state": "unresolved"}) == Changes()
    assert store.update_conversation(WEBSITE, "s9", {"state": "pending"}) == Changes()
    # updated_at is unchanged, so the next sync still reads a conversation that changed.
    assert store.conversation_state(WEBSITE, "s1").updated_at == 1_000
    assert store.remove_conversation(WEBSITE, "s1") == Changes(removed=2)
    assert store.remove_conversation(WEBSITE, "s1") == Changes()
    assert store.conversation_state(WEBSITE, "s1") == ConversationState(None, None)
    assert store.conversation_state(WEBSITE, "s2").newest_message == 100


def test_a_person_removed_by_an_event(store: Store) -> None:
    store.save_people(WEBSITE, [{"people_id": "p1", "email": "a@example.com"}])
    store.save_people(OTHER_WEBSITE, [{"people_id": "p1", "email": "b@example.com"}])
    assert store.remove_person(WEBSITE, "p1") == Changes(removed=1)
    assert store.remove_person(WEBSITE, "p1") == Changes()
    assert store.save_people(OTHER_WEBSITE, [{"people_id": "p1", "email": "b@example.com"}]) == (
        Changes()
    )


def test_a_span_does_not_judge_messages_newer_than_what_it_could_see(store: Store) -> None:
    save(store, "s1", [message("s1", 1, 100)])
    store.save_message(WEBSITE, "s1", message("s1", 2, 5_000))  # arrived after the listing
    changes = store.save_conversation(
        WEBSITE,
        conversation("s1", 2_000),
        MessageSpan(messages=[message("s1", 1, 100)], since=None, until=2_000),
    )
    assert changes[1] == Changes()  # the event's message is not "absent from Crisp"
    assert store.save_message(WEBSITE, "s1", message("s1", 2, 5_000)) == Changes()


def test_the_quota_ledger_adds_up_what_every_store_handle_counts(
    store_factory: StoreFactory,
) -> None:
    first, second = store_factory(), store_factory()  # two workers on one database
    for handle in (first, second, first):
        handle.count_requests("ledger-token", 20_000, 40)  # type: ignore[attr-defined]
    first.count_requests("ledger-token", 20_001, 3)  # type: ignore[attr-defined]
    assert second.requests_on("ledger-token", 20_000) == 120  # type: ignore[attr-defined]
    assert second.requests_on("ledger-token", 20_001) == 3  # type: ignore[attr-defined]
    assert second.requests_on("other-token", 20_000) == 0  # type: ignore[attr-defined]


def test_the_allowance_and_the_last_complete_run_are_kept(store: Store) -> None:
    from crisp_api.sync.store import CredentialAllowance  # noqa: PLC0415

    assert store.allowance("kept-token") == CredentialAllowance()  # type: ignore[attr-defined]
    kept = CredentialAllowance(spent_until_ms=1_800_000_000_000, learnt_rate=17.5,
                               daily_quota=5_000, quota_reset=3600.0, reached_rate=64.25)
    store.set_allowance("kept-token", kept)  # type: ignore[attr-defined]
    assert store.allowance("kept-token") == kept  # type: ignore[attr-defined]
    cleared = CredentialAllowance(None, 17.5, None, 0.0, None)
    store.set_allowance("kept-token", cleared)  # type: ignore[attr-defined]
    assert store.allowance("kept-token") == cleared  # type: ignore[attr-defined]

    store.set_checkpoint(WEBSITE, 5_000)
    store.set_last_run(WEBSITE, 6_000, "kept-token")  # type: ignore[attr-defined]
    [status] = [s for s in store.statuses() if s.website_id == WEBSITE]  # type: ignore[attr-defined]
    assert (status.checkpoint_ms, status.last_run_ms, status.credential) == (
        5_000, 6_000, "kept-token")
    store.set_last_run(WEBSITE, None, "new-token")  # type: ignore[attr-defined]
    [status] = [s for s in store.statuses() if s.website_id == WEBSITE]  # type: ignore[attr-defined]
    assert (status.last_run_ms, status.credential) == (6_000, "new-token")
