"""Crisp as a dlt source (the ``dlt`` extra): `crisp_source` runs crisp-sync's engine and
loads what it reads into any destination dlt supports (see ``docs/sync/dlt.md``)."""

from __future__ import annotations

from crisp_api.extras import install_hint, installed

if not installed("dlt"):
    raise ImportError(f"crisp_api.dlt needs dlt: {install_hint('dlt')}")

from crisp_api.dlt.source import IncompleteSyncError, crisp_source

__all__ = ["IncompleteSyncError", "crisp_source"]
