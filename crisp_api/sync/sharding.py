"""Splitting a set of websites between N machines, stably, with no coordination."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (1 <= i <= N) as ``(i, N)``; a ValueError saying what is wrong otherwise."""
    found = _SHARD.match(text)
    if found is None:
        raise ValueError(f"--shard takes i/N (e.g. 2/4), got {text!r}")
    index, count = int(found.group(1)), int(found.group(2))
    if not 1 <= index <= count:
        raise ValueError(f"--shard i/N needs 1 <= i <= N, got {text!r}")
    return index, count


def in_shard(website_id: str, index: int, count: int) -> bool:
    """Whether ``website_id`` belongs to shard ``index`` of ``count`` (1-based).

    A hash of the id, not of its position in a listing: the same website lands on the same
    machine whatever order or subset the API returns.
    """
    digest = hashlib.sha256(website_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count == index - 1


def select(website_ids: Iterable[str], index: int, count: int) -> Iterator[str]:
    """The ids of ``website_ids`` that belong to shard ``index`` of ``count``."""
    return (w for w in website_ids if in_shard(w, index, count))
