"""Recognise the routes of the Crisp REST API v1 from the bundled catalogue.

The fake reads ``crisp_api/catalogue.json`` itself rather than reusing the client's route
tables, so that a mistake in the client's routing cannot be mirrored (and hidden) by the
server it is tested against.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from urllib.parse import unquote

_PARAM = re.compile(r"^\{(\w+)\}$")


@dataclass(frozen=True, slots=True)
class Route:
    """One catalogue route: ``method`` plus a path template such as ``/website/{website_id}``."""

    method: str
    template: str
    name: str
    params: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = []
        for segment in self.template.split("/")[1:]:
            found = _PARAM.match(segment)
            if found:
                names.append(found.group(1))
        object.__setattr__(self, "params", tuple(names))

    @property
    def lists(self) -> bool:
        """Whether the route answers a list (it pages, or its path says ``list``)."""
        return "page_number" in self.params or "/list" in self.template


@dataclass(frozen=True, slots=True)
class Match:
    """A concrete path recognised as ``route``, with its decoded path parameters."""

    route: Route
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class WrongMethod:
    """The path is known, but not for this method; ``allowed`` lists the methods it takes."""

    allowed: tuple[str, ...]


class _Node:
    __slots__ = ("literals", "param", "routes")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.routes: dict[str, Route] = {}


class Router:
    """Matches ``(method, path)`` against route templates, literal segments before parameters.

    Templates share prefixes (``/conversations/{page_number}`` and
    ``/conversations/suggest/data/{page_number}``), so matching backtracks: a literal branch
    that leads nowhere falls back to the parameter branch at the same depth.
    """

    def __init__(self, routes: list[Route]) -> None:
        self._root = _Node()
        for route in routes:
            node = self._root
            for segment in route.template.split("/")[1:]:
                if _PARAM.match(segment):
                    if node.param is None:
                        node.param = _Node()
                    node = node.param
                else:
                    node = node.literals.setdefault(segment, _Node())
            node.routes.setdefault(route.method, route)

    def match(self, method: str, path: str) -> Match | WrongMethod | None:
        """The route for ``method`` and a raw (still percent-encoded) ``path``, if any.

        A ``HEAD`` on a path that only has a ``GET`` route matches that ``GET`` route, as
        HTTP allows; the server then answers with the status alone.
        """
        raw = path.split("/")
        if raw[0]:
            return None
        segments = [unquote(segment) if "%" in segment else segment for segment in raw[1:]]
        values: list[str] = []
        node = self._walk(self._root, segments, 0, values)
        if node is None:
            return None
        route = node.routes.get(method)
        if route is None and method == "HEAD":
            route = node.routes.get("GET")
        if route is None:
            return WrongMethod(tuple(sorted(node.routes)))
        return Match(route, dict(zip(route.params, values, strict=True)))

    def _walk(self, node: _Node, segments: list[str], depth: int, values: list[str]
              ) -> _Node | None:
        if depth == len(segments):
            return node if node.routes else None
        segment = segments[depth]
        literal = node.literals.get(segment)
        if literal is not None:
            found = self._walk(literal, segments, depth + 1, values)
            if found is not None:
                return found
        if node.param is not None and segment:
            values.append(segment)
            found = self._walk(node.param, segments, depth + 1, values)
            if found is not None:
                return found
            values.pop()
        return None


def load_routes() -> list[Route]:
    """Every distinct ``(method, template)`` of ``crisp_api/catalogue.json``, in order."""
    text = resources.files("crisp_api").joinpath("catalogue.json").read_text("utf-8")
    seen: set[tuple[str, str]] = set()
    routes = []
    for entry in json.loads(text):
        key = (entry["method"], entry["path"])
        if key not in seen:
            seen.add(key)
            routes.append(Route(entry["method"], entry["path"], entry["name"]))
    return routes
