"""The scripts of ``examples/`` run as a user runs them (``python examples/NAME.py``, each in
its own process against its own fake Crisp) and print what they teach; docs/examples.md lists
every one of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

EXPECTED: dict[str, tuple[str, ...]] = {
    "list_conversations": (r"^page 1 holds 20 conversations$",
                           r"^session_\S+ (resolved|unresolved|pending)$"),
    "send_message": (r"^sent, fingerprint \d+$", r"^newest message: Hello from the examples!$",
                     r"^posts received: 1$"),
    "iterate_pages": (r"^120 conversations, read 50 per page$", r"^\d+ of them newer than \d+$",
                      r"^30 people profiles$"),
    "typed_answers": (r"^conversation with .+$", r"^  (user|operator): .+$"),
    "custom_middleware": (r"^stack: logging -> timing -> cache -> retry -> rate_limit -> auth$",
                          r"^ +20 x /website/\{website_id\}/conversation/\{session_id\} "),
    "live_events": (r"^message:send +session_\S+  Hi, is anyone there\?$",
                    r"^message:received +session_\S+  Yes! How can I help\?$",
                    r"^session:set_state +session_\S+  resolved$"),
    "webhooks": (r"^  accepted message:send for session_1: 'Hello!'$", r"^signed hook: 200$",
                 r"^same hook again \(a replay\): 409$", r"^body changed on the way: 401$",
                 r"^unsigned: 401$"),
    "sync_to_sqlite": (r"^first run: 40 conversations and \d+ messages added, complete: True$",
                       r"^second run: 1 conversation updated, 3 messages added, complete: True$",
                       r"^\d+ messages stored for session_\S+$"),
}
"""What each example must print: patterns, each matching one whole line of its output."""


def test_every_example_is_run_and_listed_in_the_docs() -> None:
    names = {path.stem for path in EXAMPLES.glob("*.py")}
    assert names == set(EXPECTED)
    listed = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    for name in names:
        assert f"examples/{name}.py" in listed, name
        opening = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8").split('"""')[1]
        assert f"Run: ``python examples/{name}.py" in opening, name  # the header convention


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_example_runs_and_prints_what_it_teaches(name: str, tmp_path: Path) -> None:
    # This checkout's packages first, as an installed project would provide them.
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": path}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    for pattern in EXPECTED[name]:
        assert re.search(pattern, done.stdout, re.MULTILINE), (pattern, done.stdout)
