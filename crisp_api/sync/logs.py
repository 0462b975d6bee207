"""crisp-sync's logs: structlog events on stderr, as console lines or JSON, from one level.

The client's own events (``http.attempt``, ``redis.unavailable``, ...) and crisp-sync's
(``socket.disconnected``, ``reconciliation.failed``, ...) go through the same configuration:
the CLI hands the configured logger to the client, so one ``--log-level`` and one
``--log-format`` cover everything. Nothing logged ever holds a key, a header or a body.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
"""The ``--log-level`` names."""
FORMATS = ("console", "json")
"""The ``--log-format`` names: one aligned line per event, or one JSON object per line."""
DEFAULT_LEVEL = "warning"


def level_from(verbose: int, level: str | None) -> str:
    """The level asked for: ``--log-level`` if given, else ``-v`` (info) / ``-vv`` (debug)."""
    if level is not None:
        return level
    return ("warning", "info", "debug")[min(verbose, 2)]


def configure(level: str, form: str, stream: TextIO | None = None) -> Any:
    """Send every structlog event at ``level`` or above to ``stream`` (stderr) in ``form``;
    returns the logger to hand out (the client takes it as ``logger=``)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if form not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {form!r}")
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if form == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("crisp_sync")
