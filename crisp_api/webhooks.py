"""Verifying and reading Crisp web hooks (``X-Crisp-Signature``).

Crisp signs a hook with HMAC-SHA256 of the string ``[<timestamp>;<raw body>]`` under the
plugin's signing secret, sends the hex digest in ``X-Crisp-Signature`` and the timestamp
(epoch milliseconds) in ``X-Crisp-Request-Timestamp``. Verify against the raw body, exactly
as received: parsing and re-serialising JSON changes the bytes and breaks the signature.

A hook is refused (`WebhookError`) unless it is signed and fresh; a signed one is refused
(`MalformedWebhookError`) unless its body is well-formed: UTF-8, strict JSON (no ``NaN``),
nested at most `MAX_DEPTH` deep, integers within a signed 64-bit range (`MAX_INT`: Crisp's
ids are strings and its timestamps fit; a larger number is refused rather than stored
wrong, and the next reconciliation reads the truth over REST), floats finite. Given a
`ReplayGuard`, `parse` also refuses (`ReplayedWebhookError`) an exact replay of a hook already
accepted (same signature, hence same timestamp and body) while its timestamp is still fresh;
a later replay is refused as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cachetools import TTLCache

SIGNATURE_HEADER = "X-Crisp-Signature"
TIMESTAMP_HEADER = "X-Crisp-Request-Timestamp"
DEFAULT_WINDOW = 300.0
"""Seconds a hook's timestamp may differ from our clock before it is refused as a replay."""
_SECONDS_BELOW = 10**11
"""Timestamps below this are read as seconds rather than milliseconds (year 5138 in seconds)."""
MAX_DEPTH = 32
"""The deepest nesting of arrays and objects a hook body may have (Crisp's nest a few levels)."""
MAX_INT = 2**63 - 1
"""The largest integer magnitude a hook body may hold (signed 64 bits, what the stores hold)."""
REPLAY_CACHE_SIZE = 50_000
"""Signatures a `ReplayGuard` remembers at most (a few MB); beyond it the oldest are forgotten,
so a replay is caught unless more than this many hooks came within twice the window."""
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class WebhookError(ValueError):
    """A hook that must not be trusted: bad signature, stale timestamp, or missing headers."""


class MalformedWebhookError(WebhookError):
    """A signed hook whose body is not well-formed (see the module docstring)."""


class ReplayedWebhookError(WebhookError):
    """An exact replay of a hook already accepted, inside the window."""


class ReplayGuard:
    """Remembers the signatures of accepted hooks while their timestamps are fresh.

    A hook is fresh from ``window`` seconds before its timestamp to ``window`` after, so a
    signature is kept for twice the window after it is first seen (a `TTLCache` of at most
    ``max_size`` entries: memory stays bounded whatever arrives). Thread-safe.
    """

    def __init__(
        self,
        window: float = DEFAULT_WINDOW,
        *,
        max_size: int = REPLAY_CACHE_SIZE,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._seen: TTLCache[str, bool] = TTLCache(max_size, ttl=2 * window, timer=timer)
        self._lock = threading.Lock()

    def admit(self, signature: str) -> None:
        """Remember ``signature``, or raise `ReplayedWebhookError` if it is already known."""
        key = signature.strip().lower()
        with self._lock:
            if key in self._seen:
                raise ReplayedWebhookError("web hook replayed: already received")
            self._seen[key] = True


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
    replays: ReplayGuard | None = None,
) -> tuple[str, Any]:
    """Verify a hook from its raw body and headers, then return ``(event, data)``.

    ``headers`` may use any letter case. The body must be a well-formed JSON object with a
    string ``event`` (e.g. ``message:send``) and a ``data`` member. With ``replays``, a hook
    seen before is refused; a server taking hooks should always pass one.
    """
    if replays is not None and replays.window < window:
        raise ValueError(f"the replay guard's window ({replays.window} s) is shorter than "
                         f"the accepted window ({window} s)")
    folded = {name.lower(): value for name, value in headers.items()}
    signature = folded.get(SIGNATURE_HEADER.lower())
    timestamp = folded.get(TIMESTAMP_HEADER.lower())
    if signature is None or timestamp is None:
        raise WebhookError(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER} header")
    verify(secret, raw_body, timestamp, signature, window=window, now=now)
    payload = _load(raw_body)
    if not isinstance(payload, dict):
        raise MalformedWebhookError("web hook body is not a JSON object")
    event = payload.get("event")
    if not isinstance(event, str) or "data" not in payload:
        raise MalformedWebhookError("web hook body has no event or no data")
    if replays is not None:
        replays.admit(signature)
    return event, payload["data"]


def _load(raw_body: bytes) -> Any:
    """The JSON value of a body, or `MalformedWebhookError` saying why it is not well-formed."""
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedWebhookError("web hook body is not UTF-8") from None
    if _deeper_than(text, MAX_DEPTH):
        raise MalformedWebhookError(f"web hook body nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_int=_integer, parse_float=_finite, parse_constant=_refuse)
    except MalformedWebhookError:
        raise
    except ValueError:
        raise MalformedWebhookError("web hook body is not JSON") from None


def _deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects outside strings nest deeper than ``limit`` (checked before
    parsing: the parser would recurse once per level)."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > len(str(MAX_INT)) or abs(value := int(digits)) > MAX_INT:
        raise MalformedWebhookError("web hook body has an integer beyond 64 bits")
    return value


def _finite(digits: str) -> float:
    value = float(digits)
    if not math.isfinite(value):
        raise MalformedWebhookError("web hook body has a number out of range")
    return value


def _refuse(name: str) -> Any:
    raise MalformedWebhookError(f"web hook body is not JSON ({name})")


def _seconds(timestamp: int | str) -> float:
    try:
        value = int(str(timestamp).strip())
    except ValueError:
        raise WebhookError(f"web hook timestamp is not a number: {timestamp!r}") from None
    return value if value < _SECONDS_BELOW else value / 1000.0
