"""Reading the ``Retry-After`` header (RFC 9110, section 10.2.3), once per answer.

The retry layer parses it into the attempt's `Outcome`, which every later decision reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait, from delta-seconds or an HTTP date; None if absent.

    ``headers`` must be case-insensitive (a `Response`'s are). A malformed value is treated as
    absent rather than an error, so the caller falls back to its own backoff, the safe reading
    of a header the server got wrong. RFC 9110 allows only a non-negative integer of seconds
    or a date: a negative number is malformed, while a date already past means "now" (0).
    """
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - time.time())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
