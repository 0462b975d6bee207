"""Reading the keys of Crisp's rows, for every store: what identifies a row, checked once.

A row without its key cannot be stored anywhere; the error names the field, never the data.
"""

from __future__ import annotations

import json

from crisp_api.sync.store import Row


def document(row: Row) -> str:
    """A row as canonical JSON text (sorted keys, no spaces), so equal rows compare equal."""
    return json.dumps(row, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def text(row: Row, field: str) -> str:
    """A non-empty string field."""
    value = row.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"row has no {field}: cannot store it")
    return value


def integer(row: Row, field: str) -> int:
    """An integer field (a boolean is not one)."""
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"row has no integer {field}: cannot store it")
    return value


def optional_integer(row: Row, field: str) -> int | None:
    """An integer field, or None when absent or null."""
    return integer(row, field) if row.get(field) is not None else None


def fingerprint(message: Row) -> int:
    """A message's fingerprint (which names it within its conversation only)."""
    return integer(message, "fingerprint")


def operator_id(operator: Row) -> str:
    """An operator's user id, under ``details`` as Crisp lists operators, or at the top."""
    details = operator.get("details")
    user_id = details.get("user_id") if isinstance(details, dict) else operator.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("operator has no user_id: cannot store it")
    return user_id
