"""Reading Crisp's rows for every store: what identifies a row, and the text it is kept as.

A row's key (a session id, a fingerprint, a timestamp) must fit the database's key columns: a
non-empty text that UTF-8 can carry without U+0000, an integer within 64 bits. A row whose key
does not is `Quarantined` rather than stored: put aside with its raw answer and the reason,
so that one odd row never blocks the rest of its conversation. Reasons name the field, never
the data.

Everything else Crisp sends is kept as it came: `document` writes a row as JSON text whose
lone UTF-16 surrogates (JavaScript strings may hold them; Crisp's JSON escapes them as
``\\ud800``) are escaped again, so any UTF-8 database holds the text and decoding it gives
back the same value; integers of any size are JSON numbers as they are.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from crisp_api.json_codec import canonical_text

Row = Mapping[str, Any]
"""A row as Crisp answers it: a JSON object."""

KEY_MIN, KEY_MAX = -(2**63), 2**63 - 1
"""The integers a key column holds (SQLite's INTEGER, PostgreSQL's BIGINT)."""

CONVERSATION, MESSAGE, PERSON, OPERATOR = "conversation", "message", "person", "operator"
"""The kinds of rows, as the quarantine names them."""

_SURROGATE = re.compile("[\ud800-\udfff]")
"""A lone UTF-16 surrogate in a Python string (JSON's escaped pairs decode to one character)."""


class UnkeyableError(ValueError):
    """A row whose key the stores cannot hold (absent, of the wrong type, out of range)."""


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A row put aside instead of stored, and why.

    ``ident`` tells it from the other rows put aside (the key as JSON text when the row has
    one, else a digest of the raw answer), so that the same row met again keeps one entry.
    ``session_id`` is empty for people and operators (and for a session id no store can
    hold). ``raw`` is the row as JSON text in ASCII (every other character escaped), which
    any database holds.
    """

    kind: str
    session_id: str
    ident: str
    raw: str
    reason: str


def document(row: Any) -> str:
    """A row as canonical JSON text (sorted keys, no spaces), so equal rows compare equal;
    lone surrogates are written as JSON escapes, so UTF-8 can carry the text."""
    text, unchecked = canonical_text(row)
    if not (unchecked and holds_surrogate(text)):
        return text
    return _SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", text)


def holds_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (ASCII text, the common case, is told at once)."""
    return not text.isascii() and _SURROGATE.search(text) is not None




def text(row: Row, field: str) -> str:
    """A non-empty string field that a key column can hold."""
    return key_text(row.get(field), field)


def key_text(value: Any, field: str) -> str:
    """``value`` if a key column can hold it (non-empty text, no U+0000, no lone surrogate)."""
    if not isinstance(value, str) or not value:
        raise UnkeyableError(f"row has no {field}: cannot store it")
    if "\x00" in value or _SURROGATE.search(value) is not None:
        raise UnkeyableError(f"{field} holds a character a key cannot hold (U+0000 or a "
                             "lone surrogate): cannot store it")
    return value


def integer(row: Row, field: str) -> int:
    """An integer field (a boolean is not one) that a key column can hold."""
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnkeyableError(f"row has no integer {field}: cannot store it")
    if not KEY_MIN <= value <= KEY_MAX:
        raise UnkeyableError(f"{field} is outside the 64-bit range: cannot store it")
    return value


def optional_integer(row: Row, field: str) -> int | None:
    """An integer field, or None when absent or null."""
    return integer(row, field) if row.get(field) is not None else None


def fingerprint(message: Row) -> int:
    """A message's fingerprint (which names it within its conversation only)."""
    return integer(message, "fingerprint")


def is_key(value: Any) -> bool:
    """Whether ``value`` (a key given on its own: a fingerprint, a session or people id) is
    one a store can hold; a row under any other key cannot be stored."""
    if isinstance(value, str):  # ASCII text (a session id) holds no surrogate: told at once
        return bool(value) and "\x00" not in value and (
            value.isascii() or _SURROGATE.search(value) is None)
    return not isinstance(value, bool) and isinstance(value, int) and KEY_MIN <= value <= KEY_MAX


def bounded(value: int | None) -> int | None:
    """A time bound clamped to what a key column holds (every stored timestamp is within)."""
    return None if value is None else min(max(value, KEY_MIN), KEY_MAX)


def operator_id(operator: Row) -> str:
    """An operator's user id, under ``details`` as Crisp lists operators, or at the top."""
    details = operator.get("details")
    user_id = details.get("user_id") if isinstance(details, dict) else operator.get("user_id")
    return key_text(user_id, "operator user_id")


def quarantine(kind: str, session_id: Any, row: Any, key: Any, reason: str) -> Quarantined:
    """``row`` put aside: ``key`` is what names it (its fingerprint, people id, ...) or None."""
    raw = json.dumps(row, separators=(",", ":"), ensure_ascii=True)
    ident = (json.dumps(key, ensure_ascii=True) if isinstance(key, str | int | float)
             else "sha256:" + hashlib.sha256(raw.encode("ascii")).hexdigest())
    session = session_id if is_key(session_id) and isinstance(session_id, str) else ""
    return Quarantined(kind, session, ident, raw, reason)


class KeyedMessage(NamedTuple):
    """A message a store can key: its fingerprint, timestamp and the row (a tuple: one is
    made for every message a sync stores)."""

    fingerprint: int
    timestamp: int
    row: Row


def key_messages(
    session_id: str | None, messages: Sequence[Row]
) -> tuple[list[KeyedMessage], list[Quarantined]]:
    """The messages a store can key (a fingerprint given twice: the last one wins), and the
    others put aside; every message when ``session_id`` is None (not a key either)."""
    keyed: dict[int, KeyedMessage] = {}
    aside: list[Quarantined] = []
    for message in messages:
        if session_id is not None and type(message) is dict:  # the common case, told at once
            found_fingerprint, stamp = message.get("fingerprint"), message.get("timestamp")
            if (type(found_fingerprint) is int and type(stamp) is int
                    and KEY_MIN <= found_fingerprint <= KEY_MAX and KEY_MIN <= stamp <= KEY_MAX):
                keyed[found_fingerprint] = KeyedMessage(found_fingerprint, stamp, message)
                continue
        try:
            if session_id is None:
                raise UnkeyableError("its conversation's session_id cannot be stored")
            if not isinstance(message, dict):
                raise UnkeyableError("the message is not a JSON object: cannot store it")
            found = KeyedMessage(fingerprint(message), integer(message, "timestamp"), message)
        except UnkeyableError as exc:
            key = message.get("fingerprint") if isinstance(message, dict) else None
            aside.append(quarantine(MESSAGE, session_id, message, key, str(exc)))
        else:
            keyed[found.fingerprint] = found
    return list(keyed.values()), aside


def fingerprints(messages: Sequence[Any]) -> frozenset[int]:
    """The fingerprints a store keys ``messages`` by (those it cannot key left out)."""
    return frozenset(found for message in messages if isinstance(message, dict)
                     and type(found := message.get("fingerprint")) is int
                     and KEY_MIN <= found <= KEY_MAX)


def key_conversation(conversation: Row) -> tuple[str | None, int | None, Quarantined | None]:
    """A conversation's session id (None when no store can hold it) and ``updated_at``, and
    the conversation put aside when either cannot be stored (its messages may still be)."""
    try:
        session_id = text(conversation, "session_id")
    except UnkeyableError as exc:
        key = conversation.get("session_id")
        return None, None, quarantine(CONVERSATION, None, conversation, key, str(exc))
    try:
        return session_id, optional_integer(conversation, "updated_at"), None
    except UnkeyableError as exc:
        return session_id, None, quarantine(
            CONVERSATION, session_id, conversation, session_id, str(exc))


@dataclass(frozen=True, slots=True)
class Listed:
    """Rows keyed by website and one text key (people, operators): their table, key column,
    kind, and how the key is read from a row."""

    table: str
    column: str
    kind: str
    key_of: Callable[[Row], str]


def key_rows(listed: Listed, found: Sequence[Row]) -> tuple[dict[str, Row], list[Quarantined]]:
    """Rows by their key (a key given twice: the last row wins), and those put aside."""
    keyed: dict[str, Row] = {}
    aside: list[Quarantined] = []
    for row in found:
        try:
            keyed[listed.key_of(row)] = row
        except UnkeyableError as exc:
            aside.append(quarantine(listed.kind, None, row, None, str(exc)))
    return keyed, aside


def people_id(profile: Row) -> str:
    """A people profile's id."""
    return text(profile, "people_id")


PEOPLE = Listed("people", "people_id", PERSON, people_id)
OPERATORS = Listed("operators", "user_id", OPERATOR, operator_id)
