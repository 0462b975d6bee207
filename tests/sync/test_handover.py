"""The engine's hand-over of listed conversations to its workers: bounded, woken in steps."""

from __future__ import annotations

import threading

from crisp_api.sync.engine import _Handover


def test_a_full_handover_lets_the_listing_go_on_only_once_low_remain() -> None:
    room = _Handover(high=4, low=2)
    for _ in range(4):
        room.take()
    taken = threading.Event()

    def list_one_more() -> None:
        room.take()
        taken.set()

    listing = threading.Thread(target=list_one_more, daemon=True)
    listing.start()

    room.give_back()
    assert not taken.wait(0.2)  # 3 handed over: more than low, the listing still waits
    room.give_back()
    assert taken.wait(10)  # 2 left: the listing goes on and hands one more over (3)
    listing.join(10)
    room.take()  # 4: full again, without waiting
