"""A stateful fake Crisp REST API v1 server, for tests, demos and benchmarks.

- `FakeCrisp`: served from a background thread of this process (``with FakeCrisp() as fake``).
- `FakeCrispProcess`: served by a child process, for benchmarks where the server must not
  share the client's GIL.
- ``python -m crisp_api.testing``: the same server from the command line.
- Each serves Crisp's RTM API too (Socket.IO, `crisp_api.testing.rtm`): every change made
  through its routes or helpers is pushed as a real-time event; its tokens are valid on one
  tier only (``plugin`` by default), over REST and RTM alike.
- `Faults`: what to inject (latency, 5xx, 429/420, token bucket, dropped connections, slow
  bodies, hangs, RTM event delay), changeable while running.
- ``crisp_api.testing.pytest_plugin``: pytest fixtures.
"""

from crisp_api import installation  # noqa: F401 (refuses a clash with the official crisp-api)
from crisp_api.testing.data import ConversationTruth
from crisp_api.testing.fake import FakeCrisp
from crisp_api.testing.faults import Faults
from crisp_api.testing.process import FakeCrispProcess
from crisp_api.testing.service import DEFAULT_IDENTIFIER, DEFAULT_KEY
from crisp_api.testing.stats import LoggedRequest, StatsSnapshot

__all__ = [
    "DEFAULT_IDENTIFIER",
    "DEFAULT_KEY",
    "ConversationTruth",
    "FakeCrisp",
    "FakeCrispProcess",
    "Faults",
    "LoggedRequest",
    "StatsSnapshot",
]
