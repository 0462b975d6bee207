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

import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
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
    thread: elsewhere the block runs without handlers.

    The signals are acted on by a thread of their own, woken through Python's signal wakeup
    file descriptor, not by the Python-level handler: the kernel may deliver a signal to any
    thread, and a Python handler runs only once the main thread runs Python code again, which
    a main thread blocked in a lock or a long sleep may not do for a long time (a signal would
    then wait with it). The wakeup descriptor is written by the C handler whatever the thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    handled = [sig for sig, handler in previous.items() if handler is not signal.SIG_IGN]
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    watchdog = _Watchdog(stop, on_overdue, grace, reader, writer)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for sig in handled:
        signal.signal(sig, _noted)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        watchdog.finish()
        reader.close()
        writer.close()


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: nothing to do, the wakeup descriptor has told the watchdog
    (installing it is what keeps the signal from ending the process)."""


_FINISHED = b"\x00"
"""What `_Watchdog.finish` writes to wake its thread (no signal has the number 0)."""


class _Watchdog:
    """Reads the stop signals from the wakeup descriptor in a thread of its own: sets the
    stop at the first, then waits the grace out (or a second signal) before ``on_overdue``."""

    def __init__(self, stop: Stop, on_overdue: Callable[[str], None], grace: float,
                 reader: socket.socket, writer: socket.socket) -> None:
        self._stop = stop
        self._on_overdue = on_overdue
        self._grace = grace
        self._reader = reader
        self._writer = writer
        self._lock = threading.Lock()  # the block's end and the overdue call exclude each other
        self._finished = False
        self._thread = threading.Thread(target=self._watch, name="crisp-sync-stop", daemon=True)
        self._thread.start()

    def finish(self) -> None:
        """The block has ended: nothing is overdue any more."""
        with self._lock:
            self._finished = True
        with suppress(OSError):
            self._writer.send(_FINISHED)
        self._thread.join()

    def _watch(self) -> None:
        first = self._next(None)
        if first is None:
            return
        self._stop.signal_name = first
        self._stop.set()
        self._next(self._grace)  # a second signal, the grace over, or the block's end
        with self._lock:
            if not self._finished:
                self._on_overdue(first)

    def _next(self, timeout: float | None) -> str | None:
        """The name of the next stop signal within ``timeout`` seconds (None: no limit);
        None once the block has ended or the time is up."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._reader], [], [], left)
            if not ready:
                return None
            for number in self._reader.recv(64):
                if number == _FINISHED[0]:
                    return None
                if number in _NUMBERS:
                    return signal.Signals(number).name


_NUMBERS = frozenset(int(sig) for sig in SIGNALS)
"""The signal numbers that stop crisp-sync, as the wakeup descriptor writes them."""
