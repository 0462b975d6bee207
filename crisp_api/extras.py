"""This project's distribution name, its optional extras, and the one way to say how to
install one.

The distribution is ``crisp-api-next``: ``crisp-api`` on the package index is the official
client (1.1.x), which this project replaces while keeping its import name, ``crisp_api``. Both
install the same package directory, so they cannot share one environment.
"""

from __future__ import annotations

from importlib.util import find_spec

DISTRIBUTION = "crisp-api-next"
MODULES = {
    "dlt": ("dlt",),
    "events": ("socketio", "engineio", "websocket"),
    "export": ("pyarrow",),
    "fast": ("orjson",),
    "metrics": ("prometheus_client",),
    "otel": ("opentelemetry",),
    "postgres": ("psycopg", "psycopg_pool"),
    "redis": ("redis",),
    "sync": ("tqdm",),
    "testing": ("socketio", "aiohttp"),
}
"""What each runtime extra of setup.cfg brings, by import name."""


def install_hint(extra: str) -> str:
    """The command installing ``extra`` (e.g. ``pip install 'crisp-api-next[redis]'``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def installed(extra: str) -> bool:
    """Whether every module of ``extra`` (a key of `MODULES`) can be imported, found without
    importing it."""
    return all(find_spec(name) is not None for name in MODULES[extra])
