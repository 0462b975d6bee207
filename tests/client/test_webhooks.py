"""Web hook verification: signatures, replays, malformed input, constant-time comparison."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crisp_api.webhooks import (
    MAX_DEPTH,
    MAX_INT,
    MalformedWebhookError,
    ReplayedWebhookError,
    ReplayGuard,
    WebhookError,
    parse,
    sign,
    verify,
)

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


def _signed_headers(body: bytes, stamp: int = STAMP) -> dict[str, str]:
    return {"X-Crisp-Signature": sign(SECRET, body, stamp), "X-Crisp-Request-Timestamp": str(stamp)}


def _hook(data: bytes) -> bytes:
    return b'{"event": "message:send", "data": ' + data + b"}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "deeper"),
        (b"[" * 100_000 + b"]" * 100_000, "deeper"),
        (b"%d" % (MAX_INT + 1), "64 bits"),
        (b"-%d" % (MAX_INT + 1), "64 bits"),
        (b"1" * 5000, "64 bits"),
        (b"1e400", "out of range"),
        (b"NaN", "not JSON"),
        (b"-Infinity", "not JSON"),
        (b'"\xff"', "not UTF-8"),
        (b"[1,]", "not JSON"),
    ],
)
def test_signed_hooks_that_are_not_well_formed_are_refused(data: bytes, message: str) -> None:
    body = _hook(data)
    with pytest.raises(MalformedWebhookError, match=message):
        parse(SECRET, body, _signed_headers(body), now=NOW)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1),  # the object around it is one more
        b'"' + b"[{" * 1000 + b'\\"]"',  # brackets inside a string do not nest
        b"[%d, -%d, 1.5e300]" % (MAX_INT, MAX_INT),
    ],
)
def test_well_formed_hooks_within_the_limits_pass(data: bytes) -> None:
    body = _hook(data)
    assert parse(SECRET, body, _signed_headers(body), now=NOW)[0] == "message:send"


def test_an_exact_replay_is_refused_while_fresh_and_forgotten_after_twice_the_window() -> None:
    clock = [0.0]
    guard = ReplayGuard(window=300, timer=lambda: clock[0])
    headers = _signed_headers(BODY)
    assert parse(SECRET, BODY, headers, now=NOW, replays=guard)[0] == "message:send"
    clock[0] = 599.0
    with pytest.raises(ReplayedWebhookError, match="replayed"):
        parse(SECRET, BODY, headers, now=NOW + 299, replays=guard)
    with pytest.raises(WebhookError, match="stale"):  # later: refused as stale anyway
        parse(SECRET, BODY, headers, now=NOW + 301, replays=guard)
    clock[0] = 601.0  # forgotten: memory stays bounded
    parse(SECRET, BODY, headers, now=NOW, replays=guard)


def test_a_refused_hook_does_not_count_as_seen() -> None:
    guard = ReplayGuard()
    headers = _signed_headers(BODY)
    with pytest.raises(WebhookError, match="signature"):
        parse(SECRET, BODY + b" ", headers, now=NOW, replays=guard)
    assert parse(SECRET, BODY, headers, now=NOW, replays=guard)[0] == "message:send"


def test_the_replay_guard_is_bounded_and_matches_the_window() -> None:
    guard = ReplayGuard(max_size=2)
    for name in ("a", "b", "c"):
        guard.admit(name)
    guard.admit("a")  # the oldest was forgotten to stay within max_size
    with pytest.raises(ReplayedWebhookError):
        guard.admit("C")
    with pytest.raises(ValueError, match="shorter"):
        parse(SECRET, BODY, _signed_headers(BODY), now=NOW, window=600,
              replays=ReplayGuard(window=300))


def test_concurrent_copies_of_one_hook_pass_once() -> None:
    guard = ReplayGuard()
    headers = _signed_headers(BODY)
    start = threading.Barrier(16)
    passed: list[str] = []

    def deliver() -> None:
        start.wait()
        with contextlib.suppress(ReplayedWebhookError):
            passed.append(parse(SECRET, BODY, headers, now=NOW, replays=guard)[0])

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert passed == ["message:send"]
