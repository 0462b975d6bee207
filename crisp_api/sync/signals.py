"""Stopping ``crisp-sync`` on SIGTERM, SIGINT or SIGHUP, whatever it is doing.

One request to stop serves the whole process (`Stop`, a `threading.Event`): `stop_on_signals`
sets it at the first of those signals, and every phase reads it (a one-shot run, the demo,
follow mode's first sync and its reconciliations). The engine then starts no new conversation;
those in flight finish and are committed; the checkpoint moves only if the run was complete.
Logs go to stderr, so SIGHUP has nothing to reopen: it stops, like SIGTERM. A signal that was
ignored when the process started (SIGHUP under ``nohup``) stays ignored.

Whatever blocks the run, it ends within `GRACE` seconds of the signal: a database that stopped
answering holds a worker for its pool's whole timeout, and a request for its own. Past that
grace, or at a second signal, the program is told (``on_overdue``) to end at once. Work still
in flight is then abandoned, never half-written: each conversation is saved in one transaction,
and the checkpoint moves only at the end of a complete run.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""The signals that stop crisp-sync."""
GRACE = 5.0
"""Seconds a run has, after the signal, to end on its own."""


class Stop(threading.Event):
    """The process-wide request to stop: set by the first stop signal (`signal_name` names it,
    e.g. ``"SIGTERM"``), or by the program itself (follow mode's fatal conditions), in which
    case `signal_name` stays None."""

    def __init__(self) -> None:
        super().__init__()
        self.signal_name: str | None = None


@contextmanager
def stop_on_signals(
    stop: Stop, on_overdue: Callable[[str], None], grace: float = GRACE
) -> Iterator[None]:
    """Within the block, a stop signal sets ``stop`` instead of ending the process; if the
    block is still running ``grace`` seconds later, or at a second signal, ``on_overdue`` is
    called with the signal's name from another thread (it is expected to end the process).
    The previous handlers are back after the block. Signals can only be handled by the main
    thread: elsewhere the block runs without handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    watchdog = _Watchdog(stop, on_overdue, grace)
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, watchdog.handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        watchdog.finish()


class _Watchdog:
    """Sets the stop on a signal, then waits the grace out in a thread of its own."""

    def __init__(self, stop: Stop, on_overdue: Callable[[str], None], grace: float) -> None:
        self._stop = stop
        self._on_overdue = on_overdue
        self._grace = grace
        self._signalled = threading.Event()
        self._hurry = threading.Event()  # a second signal, or the block's end
        self._lock = threading.Lock()  # the block's end and the overdue call exclude each other
        self._finished = False
        self._thread = threading.Thread(target=self._watch, name="crisp-sync-stop", daemon=True)
        self._thread.start()

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        """The signal handler: runs in the main thread, between two bytecodes of whatever it
        was doing, so it only sets events (no lock, no I/O)."""
        if self._stop.signal_name is None:
            self._stop.signal_name = signal.Signals(signum).name
            self._stop.set()
            self._signalled.set()
        else:
            self._hurry.set()

    def finish(self) -> None:
        """The block has ended: nothing is overdue any more."""
        with self._lock:
            self._finished = True
        self._hurry.set()
        self._signalled.set()
        self._thread.join()

    def _watch(self) -> None:
        self._signalled.wait()
        self._hurry.wait(self._grace)
        with self._lock:
            if not self._finished and self._stop.signal_name is not None:
                self._on_overdue(self._stop.signal_name)
