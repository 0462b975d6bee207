"""crisp-sync's logs: structlog events on stderr, as console lines or JSON, from one level.

The client's own events (``http.attempt``, ``redis.unavailable``, ...) and crisp-sync's
(``socket.disconnected``, ``reconciliation.failed``, ...) go through the same configuration:
the CLI hands the configured logger to the client, so one ``--log-level`` and one
``--log-format`` cover everything. So do the libraries that log through the standard library
(psycopg_pool, python-socketio and python-engineio, urllib3) and Python's warnings: every
record reaches one stderr handler whose formatter is structlog's, and that handler writes each
event in one piece, so lines from several threads never mix. The libraries show their warnings
and errors only: their info and debug lines are not ours to vouch for. Nothing logged ever
holds a key, a header or a body.

How a run ended (its fatal reason, its summary, a notice such as a stop by signal) is shown
whatever the level (`outcome`): today's plain lines under the console format, and under JSON
an event with fields, so that everything on stderr is one JSON object per line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from crisp_api.defaults import LOGGER_NAME as CLIENT_LOGGER_NAME

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
"""The ``--log-level`` names."""
FORMATS = ("console", "json")
"""The ``--log-format`` names: one aligned line per event, or one JSON object per line."""
DEFAULT_LEVEL = "warning"
LOGGER_NAME = "crisp_sync"
OUTCOME_LOGGER_NAME = "crisp_sync.outcome"
"""The standard library logger of `outcome`'s events: it lets everything through."""


class _Setup:
    """What `configure` set up last: the format, and the handler to replace next time."""

    form = "console"
    handler: logging.Handler | None = None


def level_from(verbose: int, level: str | None) -> str:
    """The level asked for: ``--log-level`` if given, else ``-v`` (info) / ``-vv`` (debug)."""
    if level is not None:
        return level
    return ("warning", "info", "debug")[min(verbose, 2)]


def configure(level: str, form: str, stream: TextIO | None = None) -> Any:
    """Send every event at ``level`` or above, structlog's and the standard library's, to
    ``stream`` (stderr) in ``form``; returns the logger to hand out (the client takes it as
    ``logger=``)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if form not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {form!r}")
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False,
                                      exception_formatter=structlog.dev.plain_traceback)
        if form == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    stamped: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if form == "console" else [structlog.processors.format_exc_info]),
            renderer,
        ],
    ))
    root = logging.getLogger()
    if _Setup.handler is not None:
        root.removeHandler(_Setup.handler)
    root.addHandler(handler)
    root.setLevel(max(LEVELS[level], logging.WARNING))
    for own in (LOGGER_NAME, CLIENT_LOGGER_NAME):
        logging.getLogger(own).setLevel(LEVELS[level])
    logging.getLogger(OUTCOME_LOGGER_NAME).setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    _Setup.form, _Setup.handler = form, handler
    structlog.configure(
        processors=[*stamped, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger(LOGGER_NAME)


def outcome(event: str, text: str, *, level: str = "info", stream: TextIO | None = None,
            **fields: Any) -> None:
    """Say how a run ended, whatever the log level: under the console format (or before
    `configure`), ``text`` as a line on ``stream`` (stderr by default); under JSON, ``event``
    at ``level`` with ``fields`` on the log stream."""
    if _Setup.form == "console":
        print(text, file=stream or sys.stderr, flush=True)
        return
    everything = structlog.make_filtering_bound_logger(logging.DEBUG)
    logger = structlog.wrap_logger(logging.getLogger(OUTCOME_LOGGER_NAME), wrapper_class=everything)
    logger.log(LEVELS[level], event, **fields)
