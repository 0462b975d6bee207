"""`crisp_api.json_codec`: orjson (the ``fast`` extra) and the standard library give the same
values and the same stored text, on odd inputs and on a whole sync."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson  # the test extra installs the fast path, so that both paths are tested
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisp_api import json_codec
from crisp_api.json_codec import (
    NonFinite,
    canonical,
    canonical_text,
    compact_text,
    parse,
)
from crisp_api.sync import SQLiteStore, rows, sync_website
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import fast_client

BOTH = pytest.mark.parametrize("fast", [True, False], ids=["orjson", "stdlib"])


@pytest.fixture
def codec() -> Iterator[Callable[[bool], None]]:
    """Switch the path for the test; the one found is back after it."""
    kept = json_codec.FAST
    try:
        yield json_codec.use_fast
    finally:
        json_codec.use_fast(kept)


def _both(codec: Callable[[bool], None], work: Callable[[], Any]) -> tuple[Any, Any]:
    """What ``work`` gives (or raises, as its class) with orjson, then with the stdlib."""
    found = []
    for fast in (True, False):
        codec(fast)
        assert json_codec.FAST is fast
        try:
            found.append(work())
        except (ValueError, RecursionError) as exc:
            found.append(type(exc))
    return found[0], found[1]


def _typed(value: Any) -> Any:
    """``value`` with each scalar's type beside it (1 and 1.0 and True compare equal)."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return (type(value), "nan")
    return (type(value), value)


@pytest.mark.parametrize("body", [
    b'{"data":[1,-1,0,9223372036854775807,-9223372036854775808,18446744073709551615]}',
    b'{"big":123456789012345678901234567890,"negative":-9999999999999999999}',
    b'{"in_text":"order 12345678901234567890","float":1.5}',
    b'{"nan":NaN,"inf":Infinity,"minus":-Infinity}',
    b'{"overflow":1e400,"tiny":1e-400,"small":0.00001,"large":1e16}',
    b'{"lone":"\\ud800","pair":"\\ud83d\\ude00","nul":"\\u0000"}',
    b'{"a":1,"a":2}',
    '{"accents":"\u00e9\u2028\U0001f600"}'.encode(),
    b'\xff\xfe{}',
    b'{"truncated":[1,2',
    b"<html><body>502 Bad Gateway</body></html>",
    b"",
    b"[" * 5000 + b"]" * 5000,
])
def test_both_paths_parse_the_same_values_and_refuse_the_same_bodies(
        codec: Callable[[bool], None], body: bytes) -> None:
    fast, stdlib = _both(codec, lambda: _typed(parse(body)))
    assert fast == stdlib


def test_an_integer_orjson_would_round_is_parsed_exactly(
        codec: Callable[[bool], None]) -> None:
    # orjson alone makes it a float; the digit guard hands the body to the stdlib
    assert isinstance(orjson.loads(b"[123456789012345678901234567890]")[0], float)
    codec(True)
    assert parse(b"[123456789012345678901234567890]") == [123456789012345678901234567890]


def test_non_finite_numbers_are_written_back_as_they_came(
        codec: Callable[[bool], None]) -> None:
    for fast in (True, False):
        codec(fast)
        parsed = parse(b'{"b":NaN,"a":[Infinity,-Infinity,1e400]}')
        assert isinstance(parsed["b"], NonFinite)
        assert canonical(parsed) == '{"a":[Infinity,-Infinity,Infinity],"b":NaN}'
        assert compact_text(parsed)[0] == '{"b":NaN,"a":[Infinity,-Infinity,Infinity]}'


ODD_ROWS: list[Any] = [
    {"z": 1, "a": {"y": [1, 2, {"b": None, "a": True}], "x": False}, "": ""},
    {"text": "".join(map(chr, range(0x800))) + "\ufeff\uffff\U0001f600"},
    {"\u00e9": 1, "e": 2, "Z": 3, "\U0001f600": 4, "\uffff": 5},
    {"edges": [2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**30]},
    {"lone": "\ud800 and \udfff"},
    {"floats": [0.1, -2.5, 123.0, 1e-4, 9.999999999999998e15, 48.8566, 2.0**52]},
    {1: "a key that is not text"},
]


@pytest.mark.parametrize("row", ODD_ROWS)
def test_both_paths_write_the_same_text(codec: Callable[[bool], None], row: Any) -> None:
    assert len(set(_both(codec, lambda: canonical(row)))) == 1
    assert len(set(_both(codec, lambda: compact_text(row)[0]))) == 1


def test_floats_outside_the_common_range_differ_as_text_but_not_as_values(
        codec: Callable[[bool], None]) -> None:
    row = {"tiny": 1e-05, "huge": 1e16, "small": -2.5e-07}
    fast, stdlib = _both(codec, lambda: canonical(row))
    assert fast != stdlib  # the documented difference: equal as JSON
    assert json.loads(fast) == json.loads(stdlib) == row


_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text()
            | st.floats(allow_nan=False, allow_infinity=False).filter(
                lambda x: x == 0 or 1e-4 <= abs(x) < 1e16))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_any_value_is_written_the_same_and_parsed_back_the_same(value: Any) -> None:
    kept = json_codec.FAST
    try:
        texts = []
        for fast in (True, False):
            json_codec.use_fast(fast)
            texts.append((canonical(value), compact_text(value)[0]))
        assert texts[0] == texts[1]
        parsed = []
        for fast in (True, False):
            json_codec.use_fast(fast)
            try:
                parsed.append(_typed(parse(texts[0][0].encode("utf-8"))))
            except UnicodeEncodeError:  # a lone surrogate: no UTF-8 body can carry it
                parsed.append(None)
        assert parsed[0] == parsed[1]
    finally:
        json_codec.use_fast(kept)


def _contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {name: sorted(db.execute(f"SELECT * FROM {name}"), key=repr)
                for name in tables
                if not name.startswith("sync_") and name not in ("quota_ledger", "allowance")}


def test_a_sync_stores_the_same_bytes_on_either_path(
        codec: Callable[[bool], None], tmp_path: Path) -> None:
    contents = []
    with FakeCrisp(conversations=30, messages=25, seed=5) as fake:
        for fast in (True, False):
            codec(fast)
            path = tmp_path / f"{fast}.sqlite3"
            with SQLiteStore(path) as store:
                report = sync_website(fast_client(fake), fake.website_id, store, workers=4)
            assert report.complete
            assert report.messages.added > 0
            contents.append(_contents(path))
    assert contents[0] == contents[1]
    assert sum(len(rows) for rows in contents[0].values()) > 30 * 25


def test_a_lone_surrogate_is_flagged_and_stored_escaped_on_either_path(
        codec: Callable[[bool], None]) -> None:
    for fast in (True, False):
        codec(fast)
        assert canonical_text({"a": "é"}) == ('{"a":"é"}', not fast)  # orjson's: no look
        assert canonical_text({"a": "\ud800"}) == ('{"a":"\ud800"}', True)
        assert compact_text({"b": 1, "a": "\udfff"}) == ('{"b":1,"a":"\udfff"}', True)
        assert rows.document({"a": "\ud800", "b": "é"}) == '{"a":"\\ud800","b":"é"}'
