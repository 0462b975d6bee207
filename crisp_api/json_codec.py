"""JSON in and out: every answer parsed and every stored row written, with orjson when the
``fast`` extra is installed and the standard library otherwise, with the same values.

Parsing and writing JSON is a quarter of a sync's CPU (the answers, and each row's canonical
text for the store); orjson does both 3-9x faster. It is used only where it gives what the
standard library gives, so a store written with one reads the same with the other:

- **Parsing**: orjson turns an integer beyond 64 bits into a float, so a body holding a run
  of 19 or more digits (in a number or a string: it is not worth telling which) is parsed by
  the standard library. What orjson refuses (NaN and Infinity, lone surrogates, invalid
  UTF-8, nesting beyond 1,024, anything that is not JSON) is parsed by the standard library
  too, which keeps its own errors and results. Crisp (Node.js) writes no NaN, but an
  answer holding one (or a float beyond the double range) has it parsed as a `NonFinite`
  float, which either path writes back as the standard library always has (``NaN``).
- **Writing**: orjson refuses integers beyond 64 bits, lone surrogates and float subclasses
  (`NonFinite` included): such a row is written by the standard library. Otherwise both
  write the same text, but for floats below 1e-4 or from 1e16 in magnitude (``1e16`` for
  ``1e+16``, ``0.00001`` for ``1e-05``): equal as JSON, they differ as text, so a store
  kept by one and synced by the other rewrites such a row once (and counts it updated).
  Crisp's floats (coordinates, scores) are within that range.

`FAST` says which path runs; ``use_fast(False)`` forces the standard library (the tests run
both paths on the same data).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # the `fast` extra is not installed: the standard library alone
    _orjson = None

FAST = _orjson is not None
"""Whether orjson parses and writes (the ``fast`` extra installed, and not turned off)."""


class NonFinite(float):
    """A NaN or an infinity the standard library parsed from a non-standard JSON constant: a
    float, that orjson refuses to write (so the standard library writes it back as it came)."""

    __slots__ = ()


def _float(text: str) -> float:
    """A float token, as `NonFinite` when it overflows to an infinity (``1e400``)."""
    value = float(text)
    return value if math.isfinite(value) else NonFinite(value)


_std_parse = json.JSONDecoder(parse_constant=NonFinite, parse_float=_float).decode
_std_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True,
                                  ensure_ascii=False).encode
_std_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")
_LONG_NUMBER = b"0" * 19
"""A run of digits that may be an integer orjson cannot hold (its range is -2**63 to 2**64-1)."""


def use_fast(enabled: bool) -> None:
    """Parse and write with orjson (``True``, if installed) or the standard library alone."""
    global FAST  # noqa: PLW0603 - the one switch, read on every call
    FAST = enabled and _orjson is not None


def parse(body: bytes) -> Any:
    """A JSON document from its UTF-8 bytes. Raises `ValueError` (invalid UTF-8 or JSON) or
    `RecursionError` (nested too deeply), as `json.loads` does."""
    if FAST and _orjson is not None and _LONG_NUMBER not in body.translate(_DIGITS):
        try:
            return _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass  # the standard library has the last word (and its own error)
    return _std_parse(body.decode("utf-8"))


def parse_text(text: str) -> Any:
    """A JSON document from text (a stored row: not a hot path, so the standard library),
    NaN and infinities as `NonFinite`."""
    return _std_parse(text)


def canonical(value: Any) -> str:
    """``value`` as canonical JSON text: sorted keys, no spaces, non-ASCII characters as they
    are (the text a store keeps, so that equal rows compare equal)."""
    return canonical_text(value)[0]


def canonical_text(value: Any) -> tuple[str, bool]:
    """`canonical`'s text, and whether it may hold a lone surrogate, which UTF-8 cannot
    carry: never when orjson wrote it (it refuses them), so a store need not look."""
    return _written(value, _SORTED, _std_canonical)


def compact_text(value: Any) -> tuple[str, bool]:
    """``value`` as JSON text without spaces, keys in their order (for JSONB, which orders
    them itself), and whether it may hold a lone surrogate (see `canonical_text`)."""
    return _written(value, 0, _std_compact)


_SORTED = 0 if _orjson is None else _orjson.OPT_SORT_KEYS


def _written(value: Any, option: int, standard: Callable[[Any], str]) -> tuple[str, bool]:
    """``value`` written by orjson with ``option`` (no lone surrogate possible), or by
    ``standard`` when orjson is off or refuses it."""
    if FAST and _orjson is not None:
        try:
            text: str = _orjson.dumps(value, option=option).decode()
        except TypeError:  # orjson.JSONEncodeError is one: the standard library writes it
            pass
        else:
            return text, False
    return standard(value), True
