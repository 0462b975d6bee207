"""A client as a long-running one has it: a rate learnt earlier resumed, no slow start.

A fresh `Crisp` starts its adaptive rate gently (`middleware.adaptive`: 8 requests/s,
doubling every second until the server refuses). The sections that measure a client's CPU
and memory per request are about the steady state, not about those first seconds, so their
clients resume a rate far above anything this machine can send, as `restore` resumes a rate
a sync kept from its last run.
"""

from __future__ import annotations

from crisp_api import Crisp
from middleware import RateLimit

RATE = 1e6
"""Requests/s: far above this machine's speed, so the limiter never makes a call wait."""


def resumed(client: Crisp) -> Crisp:
    """``client``, its learnt rate resumed at `RATE` (if it has a rate-limit layer that
    learns one); returned for chaining."""
    for layer in client.middleware:
        if isinstance(layer, RateLimit):
            restore = getattr(layer.backend, "restore", None)
            if restore is not None:
                restore(RATE)
    return client
