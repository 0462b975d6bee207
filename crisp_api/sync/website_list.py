"""The websites of a fleet worker's run, listed in a thread of their own while the first ones
sync.

Crisp lists a plugin token's websites a page at a time, each page a request. A worker that
waited for the whole list before its first sync spent that many answers' time doing nothing:
at 500 ms an answer, 40 websites in pages of 20 (and the empty page that ends the list) held
every worker of a fleet 1.5 s. `WebsiteList` fetches the pages in a thread while the worker
claims among the websites listed so far (`crisp_api.sync.fleet.sync_once`); the requests are
the same. A listing that fails fails the run: `snapshot` raises its error, so no run ends as
if the websites it never saw were all there were.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from types import TracebackType


class WebsiteList:
    """The website ids of ``source`` (an iterator that may block on requests), listed in a
    thread from ``with`` (or `start`) to `close`; or, with `fixed`, a list known whole."""

    def __init__(self, source: Iterator[str]) -> None:
        self._source = source
        self._known: list[str] = []
        self._done = False
        self._error: BaseException | None = None
        self._stopping = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = threading.Thread(
            target=self._list, name="crisp-sync website list", daemon=True)

    @classmethod
    def fixed(cls, website_ids: Sequence[str]) -> WebsiteList:
        """A list known whole already (no thread)."""
        listed = cls(iter(()))
        listed._known, listed._done, listed._thread = list(website_ids), True, None
        return listed

    def start(self) -> WebsiteList:
        """Begin listing (once)."""
        if self._thread is not None and not self._thread.is_alive() and not self._done:
            self._thread.start()
        return self

    def snapshot(self) -> tuple[list[str], bool]:
        """The websites listed so far, and whether that is all of them, read together (a
        page landing in between cannot make a part look whole). Raises what ended the
        listing when it failed."""
        with self._changed:
            if self._error is not None:
                raise self._error
            return list(self._known), self._done

    def wait_for_more(self, known: int, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for more than ``known`` websites, or the list's end."""
        with self._changed:
            self._changed.wait_for(lambda: self._done or len(self._known) > known, timeout)

    def close(self) -> None:
        """Stop listing (after the page being fetched) and wait for the thread."""
        with self._changed:
            self._stopping = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> WebsiteList:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _list(self) -> None:
        try:
            for website_id in self._source:
                with self._changed:
                    if self._stopping:  # never taken for whole: the run is ending anyway
                        self._error = RuntimeError("the website list was stopped before its end")
                        return
                    self._known.append(website_id)
                    self._changed.notify_all()
        except BaseException as exc:  # handed to the run's thread, raised there
            with self._changed:
                self._error = exc
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()
