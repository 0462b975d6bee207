"""Verifying and reading Crisp web hooks (``X-Crisp-Signature``).

Crisp signs a hook with HMAC-SHA256 of the string ``[<timestamp>;<raw body>]`` under the
plugin's signing secret, sends the hex digest in ``X-Crisp-Signature`` and the timestamp
(epoch milliseconds) in ``X-Crisp-Request-Timestamp``. Verify against the raw body, exactly
as received: parsing and re-serialising JSON changes the bytes and breaks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "X-Crisp-Signature"
TIMESTAMP_HEADER = "X-Crisp-Request-Timestamp"
DEFAULT_WINDOW = 300.0
"""Seconds a hook's timestamp may differ from our clock before it is refused as a replay."""
_SECONDS_BELOW = 10**11
"""Timestamps below this are read as seconds rather than milliseconds (year 5138 in seconds)."""


class WebhookError(ValueError):
    """A hook that must not be trusted: bad signature, stale timestamp, or malformed."""


def sign(secret: str | bytes, raw_body: bytes | str, timestamp: int | str) -> str:
    """The hex signature Crisp would send for ``raw_body`` at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    body = raw_body.encode() if isinstance(raw_body, str) else raw_body
    message = b"[" + str(timestamp).encode() + b";" + body + b"]"
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(
    secret: str | bytes,
    raw_body: bytes | str,
    timestamp: int | str,
    signature: str,
    *,
    window: float = DEFAULT_WINDOW,
    now: float | None = None,
) -> None:
    """Raise `WebhookError` unless ``signature`` is Crisp's for this body and timestamp.

    The comparison takes the same time whatever the signature holds, and a timestamp more
    than ``window`` seconds away from ``now`` (default: this machine's clock) is refused, so
    a captured hook cannot be replayed later.
    """
    if not secret:
        raise WebhookError("no signing secret configured")
    if window < 0:
        raise ValueError(f"window must not be negative, got {window}")
    moment = _seconds(timestamp)
    current = time.time() if now is None else now
    if abs(current - moment) > window:
        raise WebhookError(f"stale web hook: timestamp is {current - moment:.0f} s away")
    expected = sign(secret, raw_body, timestamp)
    given = signature.strip().lower() if isinstance(signature, str) else ""
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise WebhookError("bad web hook signature")


def parse(
    secret: str | bytes,
    raw_body: bytes,
    headers: Mapping[str, str],
    *,
    window: float = DEFAULT_WINDOW,
    now: float | None = None,
) -> tuple[str, Any]:
    """Verify a hook from its raw body and headers, then return ``(event, data)``.

    ``headers`` may use any letter case. The body must be a JSON object with a string
    ``event`` (e.g. ``message:send``) and a ``data`` member.
    """
    folded = {name.lower(): value for name, value in headers.items()}
    signature = folded.get(SIGNATURE_HEADER.lower())
    timestamp = folded.get(TIMESTAMP_HEADER.lower())
    if signature is None or timestamp is None:
        raise WebhookError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    verify(secret, raw_body, timestamp, signature, window=window, now=now)
    try:
        payload = json.loads(raw_body)
    except ValueError:
        raise WebhookError("web hook body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookError("web hook body is not a JSON object")
    event = payload.get("event")
    if not isinstance(event, str) or "data" not in payload:
        raise WebhookError("web hook body has no event or no data")
    return event, payload["data"]


def _seconds(timestamp: int | str) -> float:
    try:
        value = int(str(timestamp).strip())
    except ValueError:
        raise WebhookError(f"web hook timestamp is not a number: {timestamp!r}") from None
    return value if value < _SECONDS_BELOW else value / 1000.0
