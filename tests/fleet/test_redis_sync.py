"""crisp-sync --redis-url: the worker's bucket and cache live in Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crisp_api.testing import FakeCrisp

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ["tests.redis_server"]


def test_crisp_sync_shares_its_bucket_through_redis(
    tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    redis_server.client().config_resetstat()
    with FakeCrisp(conversations=30, messages=5, seed=4) as fake:
        env = {
            **os.environ,
            "CRISP_IDENTIFIER": fake.identifier,
            "CRISP_KEY": fake.key,
            "CRISP_REST_HOST": fake.url,
        }
        command = [
            sys.executable,
            "-m",
            "crisp_api.sync.cli",
            "--db",
            str(tmp_path / "x.sqlite3"),
            "--website-id",
            fake.website_id,
            "--redis-url",
            redis_url,
            "--rate-limit",
            "500",
            "--no-progress",
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "complete" in done.stdout
    stats = redis_server.client().info("commandstats")
    scripts = sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    assert scripts >= 30  # a bucket script ran in Redis for (at least) each conversation
