"""The ``/_fake/...`` endpoints: control a fake running in another process.

They need no credentials, are never faulted nor counted, and answer in Crisp's envelope:

- ``GET /_fake/info``: website ids, credentials, plugin id, seed.
- ``GET /_fake/stats``, ``DELETE /_fake/stats`` (reset).
- ``GET /_fake/faults``; ``PUT``/``POST /_fake/faults`` replaces them (absent fields take their
  defaults, ``{}`` clears every fault); ``PATCH /_fake/faults`` changes only the given fields.
- ``GET /_fake/clock``: ``{"now_ms": N}``, the server's clock.
- ``POST /_fake/messages`` ``{"session_id", "website_id"?, "content"?, "from"?, "type"?,
  "origin"?}``: add a message.
- ``POST /_fake/messages/many`` ``{"session_id", "count"?, "website_id"?, "timestamp"?,
  "fingerprint"?, "content"?, "from"?}``: add messages (`Controls.add_messages`).
- ``PATCH /_fake/message`` ``{"session_id", "fingerprint", "content", "website_id"?}``: edit
  a message; ``DELETE /_fake/message`` ``{"session_id", "fingerprint", "website_id"?}``:
  remove one.
- ``POST /_fake/conversations`` ``{"count"?, "messages"?, "website_id"?}``: new conversations.
- ``POST /_fake/touch`` ``{"count"?, "website_id"?}``: add a message to random conversations.
- ``GET /_fake/truth?website_id=...``: every conversation with all its messages.
- ``POST /_fake/sockets/drop``: cut every RTM socket's connection now; ``{"dropped": N}``.
- ``POST /_fake/events`` ``{"name", "data"}``: push a raw RTM event (any JSON ``data``).

The RTM events' delay is a fault field (``event_delay_ms``), set through ``/_fake/faults``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from crisp_api.testing.api import failure, success
from crisp_api.testing.context import Raw
from crisp_api.testing.controls import Controls
from crisp_api.testing.faults import NO_FAULT, Decision, Faults
from crisp_api.testing.http11 import Request, Response
from crisp_api.testing.stats import Stats

PREFIX = "/_fake/"


class FaultSetting(Protocol):
    """Reading and replacing the faults in force (as `Api` does)."""

    @property
    def faults(self) -> Faults:
        """The faults in force."""

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults."""


@dataclass(frozen=True, slots=True)
class _AdminCall:
    admin: Admin
    request: Request
    decision: Decision = NO_FAULT

    def respond(self) -> Response:
        return self.admin.answer(self.request)


class Admin:
    """Serves the ``/_fake/`` endpoints for one fake."""

    def __init__(self, faults: FaultSetting, stats: Stats, controls: Controls,
                 info: Callable[[], dict[str, Any]],
                 sockets: tuple[Callable[[], int], Callable[[str, object], None]]) -> None:
        drop_sockets, self._push_event = sockets
        self._faults = faults
        self._stats = stats
        self._controls = controls
        self._routes: dict[tuple[str, str], Callable[[Request], object]] = {
            ("GET", "info"): lambda request: info(),
            ("GET", "stats"): lambda request: stats.snapshot().to_json(),
            ("DELETE", "stats"): self._reset_stats,
            ("GET", "faults"): lambda request: faults.faults.to_json(),
            ("PUT", "faults"): self._replace_faults,
            ("POST", "faults"): self._replace_faults,
            ("PATCH", "faults"): self._change_faults,
            ("GET", "clock"): lambda request: {"now_ms": controls.now_ms()},
            ("POST", "messages"): self._add_message,
            ("POST", "messages/many"): self._add_messages,
            ("PATCH", "message"): self._edit_message,
            ("DELETE", "message"): self._remove_message,
            ("POST", "conversations"): self._create_conversations,
            ("POST", "touch"): self._touch,
            ("GET", "truth"): self._truth,
            ("POST", "sockets/drop"): lambda request: {"dropped": drop_sockets()},
            ("POST", "events"): self._push,
        }

    def admit(self, request: Request) -> _AdminCall:
        """Admin requests meet no faults."""
        return _AdminCall(self, request)

    def answer(self, request: Request) -> Response:
        """The endpoint's answer; 404 for unknown ones, 400 for bad bodies, 409 for what
        this fake cannot do (RTM calls to a fake without RTM)."""
        endpoint = self._routes.get((request.method, request.path[len(PREFIX):]))
        if endpoint is None:
            return failure(404, "route_not_found")
        try:
            return success(endpoint(request))
        except KeyError:
            return failure(404, "not_found")
        except (TypeError, ValueError):
            return failure(400, "invalid_data")
        except RuntimeError:
            return failure(409, "no_rtm")

    def _reset_stats(self, request: Request) -> object:
        self._stats.reset()
        return {}

    def _replace_faults(self, request: Request) -> object:
        self._faults.set_faults(Faults.from_json(_body(request)))
        return self._faults.faults.to_json()

    def _change_faults(self, request: Request) -> object:
        self._faults.set_faults(dataclasses.replace(self._faults.faults, **_body(request)))
        return self._faults.faults.to_json()

    def _add_message(self, request: Request) -> object:
        body = _body(request)
        return self._controls.add_message(
            _text(body, "session_id"), website_id=body.get("website_id"),
            content=body.get("content"), sender=body.get("from", "user"),
            kind=body.get("type", "text"), origin=body.get("origin", "chat"),
        )

    def _add_messages(self, request: Request) -> object:
        body = _body(request)
        return self._controls.add_messages(
            _text(body, "session_id"), _integer(body, "count", 1),
            website_id=body.get("website_id"), timestamp=_optional_integer(body, "timestamp"),
            fingerprint=_optional_integer(body, "fingerprint"), content=body.get("content"),
            sender=body.get("from", "user"),
        )

    def _edit_message(self, request: Request) -> object:
        body = _body(request)
        return self._controls.edit_message(
            _text(body, "session_id"), _integer(body, "fingerprint"),
            body.get("content"), website_id=body.get("website_id"))

    def _remove_message(self, request: Request) -> object:
        body = _body(request)
        self._controls.remove_message(_text(body, "session_id"),
                                      _integer(body, "fingerprint"),
                                      website_id=body.get("website_id"))
        return {}

    def _create_conversations(self, request: Request) -> object:
        body = _body(request)
        return {"session_ids": self._controls.create_conversations(
            int(body.get("count", 1)), website_id=body.get("website_id"),
            messages=int(body.get("messages", 1)))}

    def _touch(self, request: Request) -> object:
        body = _body(request)
        return {"session_ids": self._controls.touch_conversations(
            int(body.get("count", 1)), website_id=body.get("website_id"))}

    def _push(self, request: Request) -> object:
        body = _body(request)
        self._push_event(_text(body, "name"), body.get("data"))
        return {}

    def _truth(self, request: Request) -> object:
        website_id = dict(parse_qsl(request.query)).get("website_id")
        return Raw(self._controls.ground_truth_json(website_id=website_id))


def _body(request: Request) -> dict[str, Any]:
    body = json.loads(request.body or b"{}")
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _optional_integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer")
    return value


def _integer(body: dict[str, Any], name: str, default: int | None = None) -> int:
    value = _optional_integer(body, name)
    if value is not None:
        return value
    if default is None:
        raise ValueError(f"{name} is required")
    return default


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
