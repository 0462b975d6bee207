"""Routes: the catalogue of the Crisp API, path templates, and safe URL building.

``catalogue.json`` beside this module is the one description of every route (service, name,
method, path template, reference title, query options, seed-compatible names). Routes are
compiled from it once, at import.

Path parameters are percent-escaped with nothing left safe, so an id holding ``/``, ``?``,
``#`` or ``%`` stays inside its own path segment; empty values and the dot segments ``.`` and
``..`` (which URL normalisation would resolve to another route) are refused outright.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

QueryValue = str | int | float | bool | datetime | date | None
"""What a query option may be given as; ``None`` leaves the option out of the URL."""

_PARAM = re.compile(r"\{(\w+)\}")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
"""Values made only of these characters need no escaping (the common case: ids, numbers).

They are exactly the characters ``quote(text, safe="")`` leaves alone, so skipping ``quote``
for them changes nothing but the cost: this runs for every path parameter and query option.
"""
_DOT_SEGMENTS = ("", ".", "..")


@dataclass(frozen=True, slots=True)
class Route:
    """One route of the API, compiled for building URLs fast."""

    service: str
    name: str
    method: str
    template: str
    title: str
    section: str = ""
    seed_name: str | None = None
    query: tuple[str, ...] = ()
    positional_query: tuple[str, ...] = ()
    params: tuple[str, ...] = field(init=False)
    group_index: int | None = field(init=False)
    _format: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        params = tuple(_PARAM.findall(self.template))
        object.__setattr__(self, "params", params)
        object.__setattr__(
            self, "group_index", params.index("website_id") if "website_id" in params else None
        )
        object.__setattr__(self, "_format", _PARAM.sub("%s", self.template.replace("%", "%%")))

    @property
    def has_body(self) -> bool:
        """Whether the route takes a JSON body (POST, PUT, PATCH)."""
        return self.method in ("POST", "PUT", "PATCH")

    def expand(self, values: tuple[Any, ...]) -> str:
        """The concrete path for ``values`` (one per path parameter, in order), escaped."""
        if len(values) != len(self.params):
            raise TypeError(
                f"{self.name}() takes {len(self.params)} path parameters "
                f"({', '.join(self.params)}), got {len(values)}"
            )
        if not values:
            return self.template
        for value in values:
            if type(value) is not str or value in _DOT_SEGMENTS or not _UNRESERVED(value):
                break
        else:  # every value is a plain id (the common case): nothing to check or escape
            return self._format % tuple(values)
        return self._format % tuple([
            escape_segment(name, value) for name, value in zip(self.params, values, strict=True)
        ])

    def group(self, values: tuple[Any, ...]) -> str | None:
        """The cache group of a call: its website id, if the route has one."""
        return None if self.group_index is None else str(values[self.group_index])


def escape_segment(name: str, value: Any) -> str:
    """``value`` as one escaped path segment; a clear error for anything that is not an id."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise TypeError(f"{name} must be a str or int, got {type(value).__name__}")
    if text in _DOT_SEGMENTS:
        raise ValueError(f"{name} must be a non-empty id, got {text!r}")
    return text if _UNRESERVED(text) else quote(text, safe="")


def encode_query(options: Mapping[str, QueryValue] | Iterable[tuple[str, QueryValue]]) -> str:
    """A query string with keys sorted (so equal queries give equal cache keys), or ``""``.

    Options whose value is ``None`` are left out; booleans become ``1``/``0``; dates and
    datetimes become ISO 8601 (naive datetimes are taken as UTC).
    """
    items = (
        options.items() if type(options) is dict or isinstance(options, Mapping) else options
    )
    pairs = [
        (_escape_query(str(key)), _escape_query(value if type(value) is str
                                                else _query_text(key, value)))
        for key, value in items
        if value is not None
    ]
    pairs.sort()
    return "&".join([f"{key}={value}" for key, value in pairs])


def _escape_query(text: str) -> str:
    return text if _UNRESERVED(text) else quote(text, safe="")


def _query_text(key: str, value: QueryValue) -> str:
    if type(value) is int:  # the common case (page numbers, sizes, timestamps) first
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"query option {key} must be a str, number, bool or date, got {value!r}")


def route_of(entry: Mapping[str, Any]) -> Route:
    """One catalogue entry as a `Route` (the code generator compiles entries the same way)."""
    return Route(
        service=entry["service"],
        name=entry["name"],
        method=entry["method"],
        template=entry["path"],
        title=entry["title"],
        section=entry.get("section", ""),
        seed_name=entry.get("seed_name"),
        query=tuple(entry.get("query", ())),
        positional_query=tuple(entry.get("positional_query", ())),
    )


def load_catalogue() -> tuple[Route, ...]:
    """Every route of the catalogue, in catalogue order."""
    text = resources.files("crisp_api").joinpath("catalogue.json").read_text("utf-8")
    return tuple(route_of(entry) for entry in json.loads(text))


CATALOGUE: tuple[Route, ...] = load_catalogue()
ROUTES: dict[tuple[str, str], Route] = {(r.service, r.name): r for r in CATALOGUE}
"""Routes by (service, name)."""


class _Matcher:
    """Finds the catalogue route of a concrete path (for the raw ``get``/``post``... calls)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._by_method: dict[str, list[tuple[re.Pattern[str], Route]]] = {}
        seen: set[tuple[str, str]] = set()
        for route in routes:
            if (route.method, route.template) in seen:
                continue
            seen.add((route.method, route.template))
            pattern = "^" + _PARAM.sub("([^/]+)", re.escape(route.template).replace(
                r"\{", "{").replace(r"\}", "}")) + "$"
            self._by_method.setdefault(route.method, []).append((re.compile(pattern), route))
        for candidates in self._by_method.values():
            candidates.sort(key=lambda item: -_literal_length(item[1].template))

    def match(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        """The route and its raw parameter values for ``method path``, if any matches."""
        for pattern, route in self._by_method.get(method, ()):
            found = pattern.match(path)
            if found:
                return route, found.groups()
        return None


def _literal_length(template: str) -> int:
    return len(_PARAM.sub("", template))


@cache
def matcher() -> _Matcher:
    """The matcher of every catalogue route, built at its first use: its regular expressions
    are a fifth of what the client's own modules take to import, and only raw calls
    (``client.get(path)``...) need them."""
    return _Matcher(CATALOGUE)
