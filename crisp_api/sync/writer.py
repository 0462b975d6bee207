"""`GroupWriter`: the one thread that saves a sync's conversations into a store that commits
many of them in one transaction (`crisp_api.sync.store.GroupCommit`: the SQLite store).

**Why.** With a transaction per conversation, every worker took its turn at the one SQLite
connection: a ``BEGIN``, a ``COMMIT`` and a lock hand-off between threads per conversation.
Here workers hand each conversation they read to the writer and go on reading: none waits for
the database, and the writer commits everything handed to it meanwhile (up to `MOST` saves) in
one transaction.

**What stays promised.** Each save inside a group is atomic on its own (a savepoint): one
that fails is reported as that conversation's failure, and the rest of its group is committed.
An outcome is handed to ``done`` only once its group is committed, so a conversation reported
stored is stored; if the group's transaction itself fails (it cannot begin or commit, or the
database rolled it back), every save of it is reported failed, with that error unless it had
failed on its own first. The engine moves the checkpoint only after `close`, and only if no
conversation failed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")

MOST = 64
"""Saves committed in one transaction at most (other threads wait for the connection while a
group is written)."""


class GroupWriter(Generic[K, T]):
    """Saves handed over with `put`, each with what it is for (``key``), run a group at a time
    inside ``together()`` on one thread; each outcome (what the save returned, or what it
    raised) goes to ``done(key, outcome)`` once its group is over, on that thread. `close`
    saves what is left and ends the thread; ``failure`` is then the first error ``done``
    itself raised, if any (the writer goes on with the next outcome)."""

    def __init__(
        self,
        together: Callable[[], AbstractContextManager[object]],
        done: Callable[[K, T | BaseException], None],
        *,
        most: int = MOST,
    ) -> None:
        self._together = together
        self._done = done
        self._most = most
        self._queue: deque[tuple[K, Callable[[], T]]] = deque()
        self._changed = threading.Condition(threading.Lock())
        self._waiting = False
        self._closing = False
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="crisp-sync-writer", daemon=True)
        self._thread.start()

    def put(self, key: K, save: Callable[[], T]) -> None:
        """Queue ``save``; the writer is woken only if it waits (a busy writer takes it with
        the rest of its next group: no thread hand-off per save)."""
        with self._changed:
            self._queue.append((key, save))
            if self._waiting:
                self._changed.notify()

    def close(self) -> None:
        """Save everything queued, then end the writer's thread."""
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closing:
                    self._waiting = True
                    self._changed.wait()
                    self._waiting = False
                if not self._queue:
                    return
                group = [self._queue.popleft() for _ in range(min(self._most, len(self._queue)))]
            for (key, _), outcome in zip(group, self._save(group), strict=True):
                try:
                    self._done(key, outcome)
                except BaseException as exc:  # kept for close's caller to report
                    if self.failure is None:
                        self.failure = exc

    def _save(self, group: list[tuple[K, Callable[[], T]]]) -> list[T | BaseException]:
        """Every save of ``group`` in one transaction; their outcomes, in order."""
        outcomes: list[T | BaseException] = []
        try:
            with self._together():
                for _, save in group:
                    try:
                        outcomes.append(save())
                    except BaseException as exc:  # this save's own failure
                        outcomes.append(exc)
        except BaseException as exc:  # the group's: none of it is stored
            failed: list[T | BaseException] = [
                outcome if isinstance(outcome, BaseException) else exc for outcome in outcomes]
            return failed + [exc] * (len(group) - len(outcomes))
        return outcomes
