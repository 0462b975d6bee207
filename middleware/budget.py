"""A retry budget: retries may add only a fraction on top of first attempts, plus a small floor.

Modelled on Finagle's RetryBudget: every first attempt deposits ``ratio`` of a token, every
retry withdraws a whole one, and a floor of ``min_per_second`` retries is always allowed so a
quiet client can still retry. Deposits expire after ``window`` seconds, so a burst of healthy
traffic long ago does not fund a retry storm now.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RetryBudget:
    """Thread-safe; one instance may be shared by several clients to budget them together."""

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 5.0,
        window: float = 10.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= ratio <= 1000.0:
            raise ValueError(f"ratio must be between 0 and 1000, got {ratio}")
        if min_per_second < 0:
            raise ValueError(f"min_per_second must not be negative, got {min_per_second}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window = window
        self._timer = timer
        self._lock = threading.Lock()
        self._slots = max(1, int(window))
        self._slot_width = window / self._slots
        self._deposits: deque[tuple[int, int]] = deque()
        self._withdrawals: deque[tuple[int, int]] = deque()
        self._deposited = 0
        self._withdrawn = 0
        self._expired_at = -1
        """The slot counts were last expired at: within one slot there is nothing to expire."""

    def deposit(self) -> None:
        """Count a first attempt (and forget those older than the window, so a client that
        never retries keeps one window of counts, not one per second it ever ran)."""
        slot = int(self._timer() / self._slot_width)
        with self._lock:
            if slot != self._expired_at:
                self._expire(slot)
            self._deposited += 1
            deposits = self._deposits
            if deposits and deposits[-1][0] == slot:
                deposits[-1] = (slot, deposits[-1][1] + 1)
            else:
                deposits.append((slot, 1))

    def try_withdraw(self) -> bool:
        """Take one retry from the budget; ``False`` means: do not retry."""
        slot = self._slot(self._timer())
        with self._lock:
            self._expire(slot)
            allowed = self._deposited * self.ratio + self.min_per_second * self.window
            if self._withdrawn + 1 > allowed:
                return False
            self._withdrawn += 1
            if self._withdrawals and self._withdrawals[-1][0] == slot:
                self._withdrawals[-1] = (slot, self._withdrawals[-1][1] + 1)
            else:
                self._withdrawals.append((slot, 1))
            return True

    def _slot(self, now: float) -> int:
        return int(now / self._slot_width)

    def _expire(self, slot: int) -> None:
        self._expired_at = slot
        oldest = slot - self._slots
        while self._deposits and self._deposits[0][0] <= oldest:
            self._deposited -= self._deposits.popleft()[1]
        while self._withdrawals and self._withdrawals[0][0] <= oldest:
            self._withdrawn -= self._withdrawals.popleft()[1]

    def __repr__(self) -> str:
        return (
            f"<RetryBudget ratio={self.ratio} min_per_second={self.min_per_second} "
            f"window={self.window}s>"
        )
