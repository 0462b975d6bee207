"""``crisp-sync --demo``: a sync of a seeded local fake Crisp, then an incremental one.

No account is needed: the fake (`crisp_api.testing.FakeCrisp`) serves a few faults (5xx
answers, 429/420 refusals, dropped connections) that the client retries through. The demo
does not follow, so its fake serves no RTM: a plain install (without the ``testing`` extra,
which RTM needs) runs it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TextIO

from crisp_api.sync.exits import EXIT_OK, UsageError
from crisp_api.sync.run import build_client, open_store, remove_database, run_once
from crisp_api.sync.settings import SyncSettings, Target
from crisp_api.sync.signals import Stop

DEMO_DB = "crisp-demo.sqlite3"
DEMO_CONVERSATIONS = 500


def run_demo(settings: SyncSettings, stop: Stop, *, out: TextIO) -> int:
    """Sync a seeded fake Crisp into a new SQLite file (``--db``, else `DEMO_DB`, replaced),
    then change the fake and sync incrementally; the exit status of the first run that is
    not complete, else `EXIT_OK`."""
    from crisp_api.testing import FakeCrisp, Faults  # noqa: PLC0415 - demo only

    path = Path(settings.db or DEMO_DB)
    if settings.db and path.exists():
        raise UsageError(f"--demo wants a new database file; {path} exists")
    remove_database(path)
    faults = Faults(error_rate=0.02, throttle_rate=0.003, drop_before_rate=0.005, seed=7)
    with FakeCrisp(conversations=DEMO_CONVERSATIONS, messages=30, seed=7, faults=faults,
                   rtm=False) as fake:
        demo = replace(settings, db=str(path), website_id=fake.website_id,
                       target=Target(fake.url, fake.identifier, fake.key, "plugin"))
        with open_store(demo) as store:
            print(f"demo: a fake Crisp at {fake.url} with {DEMO_CONVERSATIONS} conversations, "
                  f"2% 5xx, 0.3% 429/420, 0.5% dropped connections; syncing into {path}",
                  file=out)
            with build_client(demo) as client:
                status = run_once(demo, client, store, stop, out=out)
            if status != EXIT_OK:
                return status
            fake.touch_conversations(25)
            fake.create_conversations(5, messages=3)
            print("demo: 25 conversations got a new message and 5 were created; syncing again",
                  file=out)
            with build_client(demo) as client:
                return run_once(demo, client, store, stop, out=out)
