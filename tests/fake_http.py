"""Raw HTTP against the fake Crisp, for tests of the fake itself: one request, one `Reply`."""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from crisp_api.testing import DEFAULT_IDENTIFIER, DEFAULT_KEY, FakeCrisp

AUTH = "Basic " + base64.b64encode(f"{DEFAULT_IDENTIFIER}:{DEFAULT_KEY}".encode()).decode()
HEADERS = {"Authorization": AUTH, "X-Crisp-Tier": "plugin", "Content-Type": "application/json"}


@dataclass
class Reply:
    """An answer as the fake sent it (header names lower-cased)."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def data(self) -> Any:
        """The ``data`` of a success envelope (asserting it is one)."""
        envelope = self.json
        assert envelope["error"] is False, envelope
        assert envelope["reason"] == "resolved"
        return envelope["data"]

    @property
    def date_ms(self) -> int:
        """The ``Date`` header, in epoch ms."""
        return int(parsedate_to_datetime(self.headers["date"]).timestamp() * 1000)


def call(fake: FakeCrisp, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> Reply:
    """``method path`` (the whole path, ``/v1`` included) with ``body`` (JSON unless bytes)
    and ``headers`` (default: the fake's credentials, plugin tier)."""
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        encoded = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=encoded,
                           headers=HEADERS if headers is None else headers)
        response = connection.getresponse()
        return Reply(response.status, response.reason,
                     {name.lower(): value for name, value in response.getheaders()},
                     response.read())
    finally:
        connection.close()
