"""This project's distribution name, and the one way to say how to install an extra.

The distribution is ``crisp-api-next``: ``crisp-api`` on the package index is the official
client (1.1.x), which this project replaces while keeping its import name, ``crisp_api``. Both
install the same package directory, so they cannot share one environment.
"""

from __future__ import annotations

DISTRIBUTION = "crisp-api-next"


def install_hint(extra: str) -> str:
    """The command installing ``extra`` (e.g. ``pip install 'crisp-api-next[redis]'``)."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"
