"""Live events that could not be applied yet, retried in order: `PendingEvents`.

A passing store failure (PostgreSQL restarting, its pool handing out dead connections, a
lock held too long) must not lose the event that met it. The event waits in a bounded
queue, and so does every event after it, so that they still reach the store in the order
Crisp sent them (an edit never lands before its message). The head of the queue is tried
again after a backoff that doubles while the store keeps failing.

An event is given up when the queue is full (`MAX_PENDING_EVENTS`: the newest one is not
queued), when it waited longer than `GIVE_UP_AFTER`, or when applying it failed otherwise
than by the store's passing failure (a value the store cannot hold): ``on_dropped`` is told,
so that its conversation is read again in full from the REST API at the next
reconciliation. A permanent store failure (read-only, disk full) is not retried: it is
raised to the caller, which stops the service; nor is an invalid event
(`InvalidEventError`), raised to the caller, which logs it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from crisp_api.sync.engine import describe
from crisp_api.sync.event_applier import InvalidEventError
from crisp_api.sync.store import StoreError

MAX_PENDING_EVENTS = 10_000
"""Events waiting for the store at most; more are dropped (and their conversations re-read)."""
GIVE_UP_AFTER = 120.0
"""Seconds an event may wait for the store before it is dropped (and its conversation
re-read)."""
RETRY_DELAY = 0.5
RETRY_DELAY_MAX = 10.0
"""The head event is tried again RETRY_DELAY seconds after a failure, then twice as late
after each further one, up to RETRY_DELAY_MAX."""

Apply = Callable[[str, object], object]
"""Applies one event to the store (raises `StoreError` when the store fails)."""
Dropped = Callable[[str, object, str], None]
"""Told of each event given up: its name, data and why."""


@dataclass(frozen=True, slots=True)
class _Pending:
    name: str
    data: object
    since: float


class PendingEvents:
    """Applies events through ``apply``, queueing those the store cannot take yet, dropping
    those it can never take (see the module docstring); thread-safe: the socket's and the
    web hooks' events share one order.

    ``pending`` is the queue's length; ``retried`` counts the events applied on a later try,
    ``dropped`` those given up (``overflowed`` of them because the queue was full).
    """

    def __init__(
        self,
        apply: Apply,
        on_dropped: Dropped,
        *,
        bound: int = MAX_PENDING_EVENTS,
        give_up_after: float = GIVE_UP_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._apply = apply
        self._on_dropped = on_dropped
        self._bound = bound
        self._give_up_after = give_up_after
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self.retried = 0
        self.dropped = 0
        self.overflowed = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Events waiting for the store."""
        return len(self._queue)

    def submit(self, name: str, data: object) -> object:
        """Apply an event now, or queue it behind those waiting; what ``apply`` returned, or
        None when it was queued or dropped. A permanent `StoreError` and any error that is
        not the store's (an invalid event) propagate."""
        with self._lock:
            if self._queue:
                self._enqueue(name, data)
                return None
            try:
                return self._apply(name, data)
            except StoreError as exc:
                if exc.permanent:
                    raise
                self._failed(exc)
                self._enqueue(name, data)
            except InvalidEventError:
                raise
            except Exception as exc:  # the event cannot be stored as it is: re-read instead
                self._drop(name, data, describe(exc))
            return None

    def retry(self) -> None:
        """Apply the waiting events whose turn came, in order, until the store fails again
        (then back off) or none waits; give up those that waited too long. A permanent
        `StoreError` propagates (the event stays at the head)."""
        with self._lock:
            self._give_up_stale()
            while self._queue and self._clock() >= self._retry_at:
                head = self._queue[0]
                try:
                    self._apply(head.name, head.data)
                except StoreError as exc:
                    if exc.permanent:
                        raise
                    self._failed(exc)
                    return
                except Exception as exc:  # the event cannot be stored as it is: re-read
                    self._queue.popleft()
                    self._drop(head.name, head.data, describe(exc))
                    continue
                self._queue.popleft()
                self.retried += 1
                self._failures = 0
                self.last_error = None

    def _enqueue(self, name: str, data: object) -> None:
        if len(self._queue) >= self._bound:
            self.overflowed += 1
            self._drop(name, data, f"more than {self._bound} events wait for the store")
            return
        self._queue.append(_Pending(name, data, self._clock()))

    def _give_up_stale(self) -> None:
        limit = self._clock() - self._give_up_after
        while self._queue and self._queue[0].since < limit:
            stale = self._queue.popleft()
            self._drop(stale.name, stale.data,
                       f"the store failed for {self._give_up_after:g} s ({self.last_error})")

    def _drop(self, name: str, data: object, reason: str) -> None:
        self.dropped += 1
        self._on_dropped(name, data, reason)

    def _failed(self, exc: StoreError) -> None:
        self._failures += 1
        self.last_error = str(exc)
        delay = min(RETRY_DELAY_MAX, RETRY_DELAY * 2 ** (self._failures - 1))
        self._retry_at = self._clock() + delay
