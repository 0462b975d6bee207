"""`FakeCrispProcess`: a fake Crisp in a child process, controlled through ``/_fake/``.

For benchmarks, where a server sharing the client's interpreter (and GIL) would slow the
client down and blur the measure. POSIX only (it waits on the child's stdout with select).
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

from crisp_api.testing.base import FakeBase
from crisp_api.testing.data import ConversationTruth
from crisp_api.testing.faults import Faults
from crisp_api.testing.service import DEFAULT_IDENTIFIER, DEFAULT_KEY, DEFAULT_TIER
from crisp_api.testing.stats import StatsSnapshot

ADMIN_TIMEOUT = 120.0
"""Seconds allowed for an admin call (reading the ground truth of a big fake takes a while)."""
STOP_TIMEOUT = 10.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class FakeCrispProcess(FakeBase):
    """``python -m crisp_api.testing`` as a child process; a context manager.

    Takes `FakeCrisp`'s data, clock, tier and RTM arguments (``clock_offset_ms`` is taken
    from the child's real time at its start); ``faults`` are put in force before `start`
    returns. The activity, ground-truth and socket helpers match `FakeCrisp`'s, over HTTP.
    """

    def __init__(self, *, websites: int = 1, conversations: int = 200, messages: int = 30,
                 people: int | None = None, operators: int = 3, seed: int = 1,
                 faults: Faults | None = None, identifier: str = DEFAULT_IDENTIFIER,
                 key: str = DEFAULT_KEY, port: int = 0, now_ms: int | None = None,
                 clock_offset_ms: int | None = None, partial_status: bool = True,
                 log_size: int = 1000, startup_timeout: float = 60.0,
                 tier: str = DEFAULT_TIER, rtm: bool = True, rtm_port: int = 0) -> None:
        self._arguments = [
            "--port", str(port), "--websites", str(websites),
            "--conversations", str(conversations), "--messages", str(messages),
            "--operators", str(operators), "--seed", str(seed), "--identifier", identifier,
            "--key", key, "--log-size", str(log_size), "--tier", tier,
            "--rtm-port", str(rtm_port),
        ]
        if not rtm:
            self._arguments.append("--no-rtm")
        if people is not None:
            self._arguments += ["--people", str(people)]
        if now_ms is not None:
            self._arguments += ["--now-ms", str(now_ms)]
        if clock_offset_ms is not None:
            self._arguments += ["--clock-offset-ms", str(clock_offset_ms)]
        if not partial_status:
            self._arguments.append("--no-partial-status")
        self._initial_faults = faults
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._url = ""
        self._info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        """The REST host, e.g. ``http://127.0.0.1:54321`` (the API is under ``/v1``)."""
        return self._url

    @property
    def identifier(self) -> str:
        """The token identifier the fake accepts."""
        return str(self._info["identifier"])

    @property
    def key(self) -> str:
        """The token key the fake accepts."""
        return str(self._info["key"])

    @property
    def tier(self) -> str:
        """The tier of the fake's tokens."""
        return str(self._info["tier"])

    @property
    def rtm_url(self) -> str | None:
        """The RTM URL; None without RTM."""
        url = self._info["rtm_url"]
        return None if url is None else str(url)

    def drop_sockets(self) -> int:
        """As `FakeCrisp.drop_sockets`."""
        return int(self._admin("POST", "sockets/drop")["dropped"])

    def push_event(self, name: str, data: object) -> None:
        """As `FakeCrisp.push_event`."""
        self._admin("POST", "events", {"name": name, "data": data})

    @property
    def website_id(self) -> str:
        """The first website's id."""
        return str(self._info["website_id"])

    @property
    def website_ids(self) -> list[str]:
        """Every website's id."""
        return [str(website_id) for website_id in self._info["website_ids"]]

    @property
    def plugin_id(self) -> str:
        """What ``GET /plugin/connect/account`` answers."""
        return str(self._info["plugin_id"])

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._process is None:
            raise RuntimeError("FakeCrispProcess is not running")
        return self._process.pid

    def start(self) -> Self:
        """Spawn the child and wait until it serves (at most ``startup_timeout`` seconds)."""
        if self._process is not None:
            raise RuntimeError("FakeCrispProcess is already running")
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, (_PACKAGE_ROOT, environment.get("PYTHONPATH"))))
        self._process = subprocess.Popen(  # noqa: S603 (our interpreter, our own arguments)
            [sys.executable, "-m", "crisp_api.testing", *self._arguments],
            stdout=subprocess.PIPE, text=True, env=environment,
        )
        try:
            self._url = self._first_line()
            self._info = self._admin("GET", "info")
            if self._initial_faults is not None:
                self._replace_faults(self._initial_faults)
        except BaseException:
            self.stop()
            raise
        return self

    def _first_line(self) -> str:
        process = self._process
        assert process is not None
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(self._startup_timeout):
                raise TimeoutError("the fake Crisp process did not start in time")
        line = process.stdout.readline().strip()
        if not line.startswith("http"):
            raise RuntimeError(f"the fake Crisp process failed to start (exit code "
                               f"{process.wait(STOP_TIMEOUT)})")
        return line

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL if it lingers) and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def stats(self) -> StatsSnapshot:
        """A snapshot of the request counters and log."""
        return StatsSnapshot.from_json(self._admin("GET", "stats"))

    def reset_stats(self) -> None:
        """Zero the counters and empty the request log."""
        self._admin("DELETE", "stats")

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return Faults.from_json(self._admin("GET", "faults"))

    def _replace_faults(self, faults: Faults) -> None:
        self._admin("PUT", "faults", faults.to_json())

    def add_message(self, session_id: str, *, website_id: str | None = None,
                    content: str | None = None, sender: str = "user", kind: str = "text",
                    origin: str = "chat") -> dict[str, Any]:
        """As `FakeCrisp.add_message`."""
        message: dict[str, Any] = self._admin("POST", "messages", {
            "session_id": session_id, "website_id": website_id, "content": content,
            "from": sender, "type": kind, "origin": origin,
        })
        return message

    def add_messages(self, session_id: str, count: int = 1, *, website_id: str | None = None,
                     timestamp: int | None = None, fingerprint: int | None = None,
                     content: str | None = None, sender: str = "user") -> list[dict[str, Any]]:
        """As `FakeCrisp.add_messages`."""
        return list(self._admin("POST", "messages/many", {
            "session_id": session_id, "count": count, "website_id": website_id,
            "timestamp": timestamp, "fingerprint": fingerprint, "content": content,
            "from": sender,
        }))

    def edit_message(self, session_id: str, fingerprint: int, content: Any, *,
                     website_id: str | None = None) -> dict[str, Any]:
        """As `FakeCrisp.edit_message`."""
        message: dict[str, Any] = self._admin("PATCH", "message", {
            "session_id": session_id, "fingerprint": fingerprint, "content": content,
            "website_id": website_id,
        })
        return message

    def remove_message(self, session_id: str, fingerprint: int, *,
                       website_id: str | None = None) -> None:
        """As `FakeCrisp.remove_message`."""
        self._admin("DELETE", "message", {"session_id": session_id,
                                          "fingerprint": fingerprint,
                                          "website_id": website_id})

    def now_ms(self) -> int:
        """As `FakeCrisp.now_ms` (one admin call: late by its round trip)."""
        return int(self._admin("GET", "clock")["now_ms"])

    def create_conversations(self, count: int = 1, *, website_id: str | None = None,
                             messages: int = 1) -> list[str]:
        """As `FakeCrisp.create_conversations`."""
        body = {"count": count, "messages": messages, "website_id": website_id}
        return list(self._admin("POST", "conversations", body)["session_ids"])

    def touch_conversations(self, count: int = 1, *, website_id: str | None = None
                            ) -> list[str]:
        """As `FakeCrisp.touch_conversations`."""
        body = {"count": count, "website_id": website_id}
        return list(self._admin("POST", "touch", body)["session_ids"])

    def ground_truth(self, *, website_id: str | None = None) -> dict[str, ConversationTruth]:
        """As `FakeCrisp.ground_truth`."""
        query = "" if website_id is None else "?website_id=" + quote(website_id, safe="")
        truth = self._admin("GET", "truth" + query)
        return {session_id: ConversationTruth(item["conversation"], item["messages"])
                for session_id, item in truth.items()}

    def iter_ground_truth(self, *, website_id: str | None = None
                          ) -> Iterator[tuple[str, ConversationTruth]]:
        """As `FakeCrisp.iter_ground_truth`, but fetched at once (over one admin call)."""
        yield from self.ground_truth(website_id=website_id).items()

    def _admin(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        """Call ``/_fake/<endpoint>``; its envelope's data. Unknown ids raise KeyError, bad
        values ValueError."""
        address = urlsplit(self._url)
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port,
                                                timeout=ADMIN_TIMEOUT)
        try:
            connection.request(method, "/_fake/" + endpoint,
                               body=None if body is None else json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = json.loads(response.read())
        finally:
            connection.close()
        reason = payload.get("reason")
        if response.status == 404 and reason == "not_found":
            raise KeyError(body, "no such website or conversation")
        if response.status == 400:
            raise ValueError(f"/_fake/{endpoint} refused {body}")
        if response.status != 200:
            raise RuntimeError(f"/_fake/{endpoint} answered {response.status} {reason}")
        return payload["data"]
