"""The fake Crisp server as a separate process: the command line and `FakeCrispProcess`."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from crisp_api.testing import FakeCrispProcess, Faults

ROOT = Path(__file__).resolve().parents[2]


def get(url: str, path: str, identifier: str, key: str) -> tuple[int, dict]:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    token = base64.b64encode(f"{identifier}:{key}".encode()).decode()
    try:
        connection.request("GET", path, headers={"Authorization": "Basic " + token,
                                                 "X-Crisp-Tier": "plugin"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def spawn(*arguments: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "crisp_api.testing", *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_command_line_prints_url_serves_and_stops_on_signal(stop_signal):
    process = spawn("--port", "0", "--conversations", "25", "--seed", "4", "--key", "k2",
                    "--latency-ms", "1-2")
    try:
        url = process.stdout.readline().strip()
        details = dict(process.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert url.startswith("http://127.0.0.1:")
        assert details["identifier"] == "fake-identifier"
        assert details["key"] == "k2"
        status, body = get(url, f"/v1/website/{details['website_id']}/conversations/1",
                           details["identifier"], "k2")
        assert status == 200
        assert len(body["data"]) == 20
        assert get(url, "/v1/website/x", details["identifier"], "wrong")[0] == 401
        process.send_signal(stop_signal)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.communicate()


def test_command_line_refuses_bad_options():
    process = spawn("--error-rate", "3")
    _, errors = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "within 0..1" in errors


def test_process_helper_serves_and_is_controlled_over_admin_endpoints():
    with FakeCrispProcess(conversations=30, messages=5, seed=9,
                          faults=Faults(error_rate=1.0, html_error_ratio=0.0)) as fake:
        path = f"/v1/website/{fake.website_id}"
        assert fake.faults.error_rate == 1.0
        assert get(fake.url, path, fake.identifier, fake.key)[0] >= 500
        fake.set_faults()
        assert get(fake.url, path, fake.identifier, fake.key)[0] == 200
        stats = fake.stats
        assert stats.requests == 2
        assert stats.faults == {"error": 1}
        assert stats.log[1].header("authorization") == "Basic <redacted>"
        fake.reset_stats()
        assert fake.stats.requests == 0
        session_id = fake.create_conversations(1, messages=2)[0]
        added = fake.add_message(session_id, content="from afar")
        touched = fake.touch_conversations(3)
        truth = fake.ground_truth()
        assert truth[session_id].messages[-1] == added
        assert len(truth[session_id].messages) == 3
        assert set(touched) <= set(truth)
        with pytest.raises(KeyError):
            fake.add_message("session_missing")
        with pytest.raises(ValueError, match=r"within 0\.\.1"):
            fake.update_faults(hang_rate=5)
        pid = fake.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
