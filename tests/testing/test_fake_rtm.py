"""The fake Crisp's RTM server: discovery, the Socket.IO protocol as a stock python-socketio
client meets it, the admin mirror of `FakeCrispProcess`, and running without RTM."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import socketio

from crisp_api.testing import DEFAULT_IDENTIFIER, DEFAULT_KEY, FakeCrisp, FakeCrispProcess
from crisp_api.testing.cli import build_parser, faults_from

FAST = {"reconnect_delay": 0.02, "reconnect_delay_max": 0.1, "connect_timeout": 3.0}


class Socket:
    """A stock python-socketio client recording what the fake sends it."""

    def __init__(self, url: str) -> None:
        self.received: list[tuple[str, Any]] = []
        self.disconnected = threading.Event()
        self.arrived = threading.Event()
        self.client = socketio.Client(reconnection=False, handle_sigint=False)
        self.client.on("*", self._record)
        self.client.on("disconnect", lambda *_: self.disconnected.set())
        self.client.connect(url, transports=["websocket"], socketio_path="/")

    def _record(self, name: str, data: Any = None) -> None:
        self.received.append((name, data))
        self.arrived.set()

    def authenticate(self, payload: Any) -> tuple[str, Any]:
        """Send ``authentication``; the first answer."""
        self.arrived.clear()
        self.client.emit("authentication", payload)
        assert self.arrived.wait(5), "no answer to the authentication"
        return self.received[-1]

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCrisp]:
    with FakeCrisp(conversations=5, messages=2, seed=4) as server:
        yield server


def credentials(**changes: Any) -> dict[str, Any]:
    return {"username": DEFAULT_IDENTIFIER, "password": DEFAULT_KEY, "tier": "plugin",
            "events": ["message:send"], **changes}


def test_the_endpoints_route_hands_out_the_rtm_url(fake):
    assert fake.rtm_url is not None
    assert fake.rtm_url.startswith("http://127.0.0.1:")
    assert fake.rtm_url.endswith("/")
    assert fake.rtm_url != fake.url + "/"
    assert fake.client().plugin.get_connect_endpoints() == {"socket": {"app": fake.rtm_url}}


def test_valid_credentials_are_authenticated_and_get_their_events(fake):
    socket = Socket(fake.rtm_url)
    try:
        assert socket.authenticate(credentials()) == ("authenticated", True)
        session_id = fake.conversations()[0]["session_id"]
        socket.arrived.clear()
        fake.add_message(session_id, sender="operator")  # message:received: not asked for
        added = fake.add_message(session_id)
        assert socket.arrived.wait(5)
        assert socket.received[-1] == ("message:send", added)
        assert [name for name, _ in socket.received] == ["authenticated", "message:send"]
    finally:
        socket.close()


@pytest.mark.parametrize("payload", [
    credentials(password="wrong"),
    credentials(username="someone-else"),
    credentials(tier="user"),
    credentials(tier=None),
    credentials(events="message:send"),
    {"username": DEFAULT_IDENTIFIER, "tier": "plugin", "events": []},
    "not an object",
])
def test_anything_else_is_unauthorized_and_disconnected(fake, payload):
    socket = Socket(fake.rtm_url)
    try:
        name, data = socket.authenticate(payload)
        assert name == "unauthorized"
        assert DEFAULT_KEY not in str(data)
        assert socket.disconnected.wait(5)
    finally:
        socket.close()


def test_sockets_that_did_not_authenticate_get_nothing(fake):
    socket = Socket(fake.rtm_url)
    try:
        fake.add_message(fake.conversations()[1]["session_id"])
        time.sleep(0.2)
        assert socket.received == []
    finally:
        socket.close()


def test_a_fake_on_the_user_tier_takes_user_sockets_only():
    with FakeCrisp(conversations=1, messages=1, tier="user") as fake:
        for tier, answer in (("user", "authenticated"), ("plugin", "unauthorized")):
            socket = Socket(fake.rtm_url)
            try:
                assert socket.authenticate(credentials(tier=tier))[0] == answer
            finally:
                socket.close()


def test_the_process_mirrors_rtm_over_its_admin_routes():
    with FakeCrispProcess(conversations=3, messages=1, seed=2) as fake:
        assert fake.tier == "plugin"
        assert fake.rtm_url is not None
        client = fake.client()
        assert client.plugin.get_connect_endpoints() == {"socket": {"app": fake.rtm_url}}
        session_id = next(iter(fake.ground_truth()))
        with client.events(["message:send", "message:updated"], **FAST) as stream:
            added = fake.add_message(session_id, content="over the admin route")
            event = stream.get(5)
            assert event is not None
            assert dict(event.data) == added
            fake.push_event("message:updated", {"fingerprint": 1, "content": "raw"})
            event = stream.get(5)
            assert event is not None
            assert dict(event.data) == {"fingerprint": 1, "content": "raw"}

            assert fake.set_faults(event_delay_ms=150).event_delay_ms == 150
            assert fake.faults.event_delay_ms == 150
            changed = time.monotonic()
            fake.add_message(session_id)
            event = stream.get(5)
            assert event is not None
            assert event.received_at - changed >= 0.14
            fake.set_faults()

            assert fake.drop_sockets() == 1
            deadline = time.monotonic() + 5
            while stream.reconnects < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stream.reconnects == 1
            added = fake.add_message(session_id)
            event = stream.get(5)
            assert event is not None
            assert dict(event.data) == added


def test_a_process_without_rtm_says_so():
    with FakeCrispProcess(conversations=1, messages=1, rtm=False) as fake:
        assert fake.rtm_url is None
        assert fake.client().plugin.get_connect_endpoints() == {}
        assert fake.drop_sockets() == 0
        with pytest.raises(RuntimeError, match="409"):
            fake.push_event("message:send", {})


def test_without_rtm_the_fake_needs_no_testing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "socketio", None)
    with FakeCrisp(conversations=1, messages=1, rtm=False) as fake:
        assert fake.rtm_url is None
        assert fake.client().plugin.get_connect_endpoints() == {}
        assert fake.drop_sockets() == 0
        with pytest.raises(RuntimeError, match="no RTM"):
            fake.push_event("message:send", {})
        fake.add_message(fake.conversations()[0]["session_id"])  # changes, nobody told
    with pytest.raises(ImportError, match=r"crisp-api-next\[testing\]"):
        FakeCrisp(conversations=1, messages=1)


def test_the_command_line_sets_tier_rtm_and_event_delay():
    args = build_parser().parse_args(["--tier", "website", "--no-rtm", "--rtm-port", "0",
                                      "--event-delay-ms", "25"])
    assert (args.tier, args.rtm, args.rtm_port) == ("website", False, 0)
    assert faults_from(args).event_delay_ms == 25
    assert build_parser().parse_args([]).tier == "plugin"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--tier", "admin"])
