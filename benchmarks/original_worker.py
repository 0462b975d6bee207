"""Times the original client, crisp-api 1.1.23, inside its own virtual environment.

The harness starts this file with that environment's Python (``-I``, so nothing of this
repository, whose ``crisp_api`` would shadow the original, is importable) and talks to it over
stdin/stdout, one JSON object per line: first the target, then ``{"count": n}`` per batch,
each answered with the batch's thread CPU and wall seconds. It imports only the standard
library and the original client.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from importlib import metadata
from typing import Any


def main() -> int:
    """Serve batches until stdin closes."""
    target = json.loads(sys.stdin.readline())
    original: Any = importlib.import_module("crisp_api")
    client = original.Crisp()
    client.set_rest_host(target["url"])
    client.set_tier("plugin")
    client.authenticate(target["identifier"], target["key"])
    resource = f"/website/{target['website_id']}"
    client.get(resource, {"n": 0})  # fail now, not in the first timed batch
    _answer({name: metadata.version(name) for name in ("crisp-api", "requests", "urllib3")})
    number = 1
    for line in sys.stdin:
        count = int(json.loads(line)["count"])
        cpu, wall = time.thread_time(), time.perf_counter()
        for value in range(number, number + count):
            client.get(resource, {"n": value})
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        number += count
        _answer({"count": count, "cpu": cpu, "wall": wall})
    return 0


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
