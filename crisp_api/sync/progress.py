"""``crisp-sync``'s progress bars (tqdm, on a terminal only).

A bar shows a total and an ETA where one can be known, and a count and a rate elsewhere:

- with ``--all-websites``, one bar over the websites (their number is known once listed);
- an incremental run walks a known time span, from the newest change down to the checkpoint:
  its bar is the share of that span walked, with the conversations handled beside it;
- a first run has no total to show (Crisp's listing gives no count and no oldest date): its bar
  counts conversations and their rate.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from crisp_api.sync.engine import SyncProgress

if TYPE_CHECKING:
    from collections.abc import Callable

_STEPS = 1000
"""A known share is drawn in this many steps (tqdm's ETA comes from their rate)."""
_SHARE_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"
"""tqdm's own layout, with the conversations handled where a count of steps would mislead."""


def shown(enabled: bool, stream: TextIO | None = None) -> bool:
    """Whether bars are drawn: asked for, on a terminal, and tqdm installed (``[sync]``)."""
    if not enabled or not (stream or sys.stderr).isatty():
        return False
    try:
        import tqdm  # noqa: F401, PLC0415 - optional dependency, terminal only
    except ImportError:
        return False
    return True


@contextmanager
def websites_bar(count: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A bar over ``count`` websites; yields the tick to call after each one."""
    if not enabled:
        yield _nothing
        return
    from tqdm import tqdm  # noqa: PLC0415 - optional dependency, terminal only

    with tqdm(total=count, desc="websites", unit=" websites", file=sys.stderr) as bar:

        def tick() -> None:
            bar.update(1)

        yield tick


@contextmanager
def website_bar(
    website_id: str, enabled: bool, *, nested: bool = False
) -> Iterator[Callable[[SyncProgress], None] | None]:
    """A bar for one website's sync, fed the engine's `SyncProgress` reports (any thread);
    None when bars are off (the engine then builds no report at all).

    The bar is drawn at the first report, once it is known whether the run has a total;
    ``nested`` draws it under the websites bar and clears it when done.
    """
    if not enabled:
        yield None
        return
    from tqdm import tqdm  # noqa: PLC0415 - optional dependency, terminal only

    lock = threading.Lock()
    bar: Any = None
    options: dict[str, Any] = {
        "desc": website_id[:13], "file": sys.stderr, "position": int(nested), "leave": not nested,
    }

    def report(progress: SyncProgress) -> None:
        nonlocal bar
        with lock:
            if bar is None:
                if progress.window is None:
                    bar = tqdm(unit=" conversations", **options)
                else:
                    bar = tqdm(total=_STEPS, bar_format=_SHARE_FORMAT, **options)
            if progress.window is None:
                bar.update(progress.conversations - bar.n)
                return
            bar.set_postfix_str(f"{progress.conversations} conversations", refresh=False)
            bar.update(round(progress.window * _STEPS) - bar.n)

    try:
        yield report
    finally:
        with lock:
            if bar is not None:
                bar.close()


def _nothing() -> None:
    return None

