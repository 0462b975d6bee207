"""Mirror a Crisp website (conversations, messages, people, operators) into a local store.

>>> from crisp_api.sync import SQLiteStore, sync_website
>>> with SQLiteStore("crisp.sqlite3") as store:  # doctest: +SKIP
...     report = sync_website(client, website_id, store, workers=8)
"""

from crisp_api import installation  # noqa: F401 (refuses a clash with the official crisp-api)
from crisp_api.sync.engine import SyncProgress, SyncReport, sync_website
from crisp_api.sync.metrics import Counts, RequestCounter, install
from crisp_api.sync.sqlite_store import SQLiteStore
from crisp_api.sync.store import (
    Changes,
    ConversationState,
    EventSink,
    MessageSpan,
    Store,
    StoreError,
    SyncStore,
    WebsiteLockedError,
)

__all__ = [
    "Changes",
    "ConversationState",
    "Counts",
    "EventSink",
    "MessageSpan",
    "RequestCounter",
    "SQLiteStore",
    "Store",
    "StoreError",
    "SyncProgress",
    "SyncReport",
    "SyncStore",
    "WebsiteLockedError",
    "install",
    "sync_website",
]
