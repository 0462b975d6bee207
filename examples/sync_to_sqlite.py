"""Mirror a website into a SQLite file from Python (what ``crisp-sync`` does on the command line).

Run: ``python examples/sync_to_sqlite.py [FILE]`` (default: a temporary file). Like every
example here, it starts its own fake Crisp (`crisp_api.testing.FakeCrisp`) on loopback and
needs nothing else. Against Crisp itself, build the client with ``Crisp.from_env()`` and use
your own website id.

A second run fetches only what changed since the first: the store keeps a checkpoint, moved
only once everything up to it is saved.
"""

import sqlite3
import sys
import tempfile
from pathlib import Path

from crisp_api.sync import SQLiteStore, sync_website
from crisp_api.testing import FakeCrisp

folder = tempfile.TemporaryDirectory()
path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(folder.name, "crisp.sqlite3")

with FakeCrisp(conversations=40, messages=10, rtm=False) as fake:  # REST only: needs no extra
    client = fake.client()
    website_id = fake.website_id

    with SQLiteStore(path) as store:
        report = sync_website(client, website_id, store, workers=4)
    print(f"first run: {report.conversations.added} conversations and "
          f"{report.messages.added} messages added, complete: {report.complete}")

    session_id = fake.conversations()[0]["session_id"]
    fake.add_messages(session_id, 3)  # activity between two runs
    with SQLiteStore(path) as store:
        report = sync_website(client, website_id, store, workers=4)
    print(f"second run: {report.conversations.updated} conversation updated, "
          f"{report.messages.added} messages added, complete: {report.complete}")

# The mirror is a plain SQLite file: each row keeps Crisp's JSON in its `data` column.
with sqlite3.connect(path) as db:
    (count,) = db.execute("SELECT count(*) FROM messages WHERE session_id = ?",
                          (session_id,)).fetchone()
    print(f"{count} messages stored for {session_id}")
db.close()
folder.cleanup()
