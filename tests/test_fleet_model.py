"""The fleet's schedule model (`benchmarks.fleet_model`): its arithmetic on shapes small enough
to work out by hand, and the shapes it reads from a real copy of the fake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fleet import cli_environment
from benchmarks.fleet_model import (
    SIDE_TASKS,
    Modelled,
    Timing,
    Way,
    balanced,
    bound,
    measure_shapes,
    model,
    shapes_from_log,
    simulate,
)

HALF = 0.5
"""Seconds per answer in these shapes: a website's listing, then rounds of its tasks."""


def website(long_at: int, conversations: int = 20, pages: int = 3) -> list[int]:
    """A website of single-page conversations but one, of ``pages`` pages, at ``long_at``."""
    chains = [1] * conversations
    chains[long_at] = pages
    return [1] * SIDE_TASKS + chains


def one(shapes: list[list[int]], order: list[int], processes: int = 1,
        way: Way = Way.WHOLE) -> float:
    return simulate(shapes, order, processes=processes, workers=8, latency=HALF, startup=0.0,
                    tail=0.0, way=way)


def test_a_website_lasts_its_listing_then_rounds_of_workers_and_its_longest_chain() -> None:
    # 22 tasks on 8 workers: rounds of 8, 8 and 6 after the listing; a chain of 3 pages
    # begun in round 1 ends with round 3, in round 2 one round later, in round 3 two.
    assert one([website(long_at=0)], [0]) == 2.0
    assert one([website(long_at=6)], [0]) == 2.5
    assert one([website(long_at=19)], [0]) == 3.0


def test_one_process_syncs_its_websites_one_after_another() -> None:
    shapes = [website(long_at=0), website(long_at=19), website(long_at=6)]
    assert one(shapes, [0, 1, 2]) == 2.0 + 3.0 + 2.5


def test_processes_claim_the_next_website_as_they_come_free() -> None:
    # Two processes: A takes the 3.0 s website, B the 2.0 s one, then the 2.5 s one at
    # 2.0 s, ending at 4.5 s; the fleet ends when B does.
    shapes = [website(long_at=19), website(long_at=0), website(long_at=6)]
    assert one(shapes, [0, 1, 2], processes=2) == 4.5
    # Start-up and tail add to every process alike.
    assert simulate(shapes, [0, 1, 2], processes=2, workers=8, latency=HALF, startup=1.0,
                    tail=0.25) == 5.75


def test_helpers_take_waiting_conversations_of_another_process_website() -> None:
    # One big website (100 conversations of one page: 13 rounds), one small: the process
    # done with the small one helps with the big one's conversations not yet begun.
    big, small = [1] * (SIDE_TASKS + 100), website(long_at=0)
    alone = one([big, small], [0, 1], processes=2)
    helped = one([big, small], [0, 1], processes=2, way=Way.HELPERS)
    assert alone == HALF + 13 * HALF
    assert helped < alone
    # A chain already begun cannot be shared: a website that is one long chain gains nothing.
    chain = [1] * SIDE_TASKS + [12]
    assert one([chain, small], [0, 1], processes=2, way=Way.HELPERS) == one(
        [chain, small], [0, 1], processes=2)


def test_overlap_begins_the_next_website_while_the_last_chain_of_one_is_read() -> None:
    shapes = [website(long_at=19), website(long_at=19)]
    # Each: 0.5 s of listing, then 2.5 s; the second's listing and first rounds run while
    # the first's chain of 3 pages is read (from 1.5 s to 3.0 s).
    assert one(shapes, [0, 1]) == 6.0
    assert one(shapes, [0, 1], way=Way.OVERLAP) < 6.0


def test_the_model_draws_the_same_orders_for_every_way_and_stays_under_its_bound() -> None:
    shapes = [website(long_at=k % 20) for k in range(12)]
    timing = Timing(processes=3, workers=8, latency=HALF, single_startup=0.5,
                    fleet_startup=0.6, single_tail=0.05, fleet_tail=0.1)
    found = model(shapes, timing, orders=20, seed=7)
    assert [result.way for result in found] == list(Way)
    assert all(len(result.fleet_s) == 20 for result in found)
    limit = balanced(shapes, timing)
    whole = found[0]
    assert whole.worst <= whole.speedup <= whole.best <= limit * (1 + 1e-9)  # float sums
    assert model(shapes, timing, orders=20, seed=7) == found  # seeded: the same figures
    summary = bound(shapes, timing, orders=20)  # the model's own seed
    whole, helpers, _ = model(shapes, timing, orders=20)
    assert (summary.balanced, summary.whole, summary.helpers) == (
        limit, whole.speedup, helpers.speedup)


def test_a_fleet_as_fast_in_every_order_has_one_speed_up() -> None:
    # Equal times: a float sum of them may round just past each, and the mean must not.
    found = Modelled(Way.WHOLE, 60.0, [15.367617525666288] * 200)  # sums to just below
    assert found.worst == found.speedup == found.best


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        simulate([website(0)], [0], processes=0, workers=8, latency=HALF, startup=0, tail=0)
    with pytest.raises(ValueError, match="latency positive"):
        simulate([website(0)], [0], processes=1, workers=8, latency=0.0, startup=0, tail=0)


def test_shapes_are_read_from_the_request_log_in_hand_out_order() -> None:
    targets = [
        "/v1/plugin/connect/websites/all/1",
        "/v1/website/w1/conversations/1?per_page=50",
        "/v1/website/w1/conversation/session_a/messages",
        "/v1/website/w1/conversation/session_b/messages",
        "/v1/website/w1/conversation/session_a/messages?timestamp_before=5",
        "/v1/website/w2/conversation/session_c/messages",
    ]
    assert shapes_from_log(targets) == [[1, 1, 2, 1], [1, 1, 1]]


def test_the_shapes_of_a_real_copy_of_the_fake_hold_every_conversation(tmp_path: Path) -> None:
    shapes = measure_shapes(websites=2, conversations=3, messages=2, seed=62,
                            environment=cli_environment(tmp_path))
    assert len(shapes) == 2
    assert all(len(shape) == SIDE_TASKS + 3 and min(shape) >= 1 for shape in shapes)


def test_the_command_prints_every_way() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.fleet_model", "--websites", "3",
         "--conversations", "4", "--messages", "2", "--processes", "2", "--orders", "5"],
        capture_output=True, text=True, check=True, timeout=300).stdout
    assert "3 websites, 12 conversations" in out
    assert "perfect balance (the bound)" in out
    for way in Way:
        assert f"{way.value}: one process" in out
