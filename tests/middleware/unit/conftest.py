"""The socket-free tier: every test here runs its layers against a canned terminal handler.

A test that opens a connection fails at once, so this tier stays what it says it is; the
loopback tests beside it (``tests/middleware/test_*.py``) run the same layers over real sockets.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a unit test of the middleware opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
