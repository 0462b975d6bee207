"""Web hook verification: signatures, replays, malformed input, constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crisp_api.webhooks import WebhookError, parse, sign, verify

SECRET = "plugin-signing-secret"
NOW = 1_795_000_000.0
STAMP = int(NOW * 1000)
BODY = json.dumps(
    {"website_id": "w1", "event": "message:send", "data": {"content": "hi"}, "timestamp": STAMP}
).encode()


def test_signature_is_hmac_sha256_hex_over_bracketed_timestamp_and_body() -> None:
    expected = hmac.new(SECRET.encode(), b"[%d;" % STAMP + BODY + b"]", hashlib.sha256)
    assert sign(SECRET, BODY, STAMP) == expected.hexdigest()


def test_a_good_hook_verifies_and_parses() -> None:
    headers = {
        "x-crisp-signature": sign(SECRET, BODY, STAMP),
        "X-CRISP-REQUEST-TIMESTAMP": str(STAMP),
    }
    assert parse(SECRET, BODY, headers, now=NOW) == ("message:send", {"content": "hi"})


@pytest.mark.parametrize(
    ("body", "stamp", "signature"),
    [
        (BODY + b" ", STAMP, None),  # body changed
        (BODY, STAMP + 1, None),  # timestamp changed
        (BODY, STAMP, "0" * 64),
        (BODY, STAMP, ""),
    ],
)
def test_tampering_is_refused(body: bytes, stamp: int, signature: str | None) -> None:
    good = sign(SECRET, BODY, STAMP)
    with pytest.raises(WebhookError, match="signature"):
        verify(SECRET, body, stamp, good if signature is None else signature, now=NOW)


def test_another_secret_is_refused() -> None:
    with pytest.raises(WebhookError, match="signature"):
        verify("other", BODY, STAMP, sign(SECRET, BODY, STAMP), now=NOW)


@pytest.mark.parametrize("offset", [-301.0, 301.0, -86400.0])
def test_stale_or_future_timestamps_are_refused(offset: float) -> None:
    stamp = int((NOW + offset) * 1000)
    with pytest.raises(WebhookError, match="stale"):
        verify(SECRET, BODY, stamp, sign(SECRET, BODY, stamp), now=NOW)


def test_the_window_is_configurable_and_seconds_are_accepted() -> None:
    stamp = int(NOW) - 3600
    verify(SECRET, BODY, stamp, sign(SECRET, BODY, stamp), now=NOW, window=3601)
    with pytest.raises(WebhookError, match="stale"):
        verify(SECRET, BODY, stamp, sign(SECRET, BODY, stamp), now=NOW)


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (BODY, {}, "missing"),
        (b"not json", None, "not JSON"),
        (b"[1]", None, "not a JSON object"),
        (b'{"data": {}}', None, "no event"),
    ],
)
def test_malformed_hooks_are_refused(
    body: bytes, headers: dict[str, str] | None, message: str
) -> None:
    if headers is None:
        headers = {
            "X-Crisp-Signature": sign(SECRET, body, STAMP),
            "X-Crisp-Request-Timestamp": str(STAMP),
        }
    with pytest.raises(WebhookError, match=message):
        parse(SECRET, body, headers, now=NOW)


def test_no_secret_and_bad_timestamp_are_refused() -> None:
    with pytest.raises(WebhookError, match="secret"):
        verify("", BODY, STAMP, "x", now=NOW)
    with pytest.raises(WebhookError, match="not a number"):
        verify(SECRET, BODY, "yesterday", "x", now=NOW)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check goes through hmac.compare_digest, the stdlib's constant-time comparison."""
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    with pytest.raises(WebhookError):
        verify(SECRET, BODY, STAMP, "f" * 64, now=NOW)
    assert calls == [(sign(SECRET, BODY, STAMP).encode(), b"f" * 64)]


@given(st.binary(max_size=512), st.text(max_size=64))
def test_only_the_right_signature_passes(body: bytes, forged: str) -> None:
    good = sign(SECRET, body, STAMP)
    verify(SECRET, body, STAMP, good, now=NOW)
    if forged.strip().lower() != good:
        with pytest.raises(WebhookError):
            verify(SECRET, body, STAMP, forged, now=NOW)
