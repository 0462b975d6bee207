"""The client process of the memory section: N requests through one client, RSS sampled.

Started by `benchmarks.memory` as ``python -m benchmarks.memory_worker``; reads its setup as
one JSON line on stdin and prints one JSON line of samples ``[requests, RSS KiB, seconds]``.
Out of every 4 calls, 3 ask for a new URL (a cache miss that stores an answer and, once the
cache is full, evicts one) and 1 asks for the same URL (a hit); every 1000th call is a write,
which invalidates the website's cached answers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.resumed import resumed
from crisp_api import Crisp


def rss_kib() -> int:
    """This process's resident set size, from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> int:
    """Run the requests the setup asks for and print the samples."""
    setup: dict[str, Any] = json.loads(sys.stdin.readline())
    client = Crisp()
    client.set_rest_host(setup["url"])
    client.set_tier("plugin")
    client.authenticate(setup["identifier"], setup["key"])
    resumed(client)
    website_id, total = setup["website_id"], int(setup["requests"])
    every = max(1, total // int(setup["samples"]))
    session_id = client.website.list_conversations(website_id, 1)[0]["session_id"]
    get, hot = client.website.get_website, {"n": 0}
    samples = [[0, rss_kib(), 0.0]]
    started = time.perf_counter()
    for number in range(1, total + 1):
        if number % 1000 == 0:
            client.website.change_conversation_state(
                website_id, session_id, {"state": "resolved"}
            )
        elif number % 4 == 0:
            get(website_id, hot)
        else:
            get(website_id, {"n": number})
        if number % every == 0:
            samples.append([number, rss_kib(), round(time.perf_counter() - started, 3)])
    print(json.dumps({"samples": samples}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
