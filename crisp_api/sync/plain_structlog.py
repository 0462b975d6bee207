"""structlog for crisp-sync's own process, without the console extras it never uses.

Importing structlog imports rich, colorama and better_exceptions whenever they are installed
(they arrive with other tools, dlt among them), for pretty console tracebacks. crisp-sync
prints tracebacks as Python does, under both log formats (`crisp_api.sync.logs`), so that its
output is the same on every machine; and rich alone is 55 ms of CPU, a fifth of a worker's
start-up, paid by every process of a fleet at once on a shared machine.

Importing this module imports structlog with those three hidden, once, before anything
else of the process imports it; they stay importable afterwards (dlt, in the same process,
loads rich as usual). Only the CLI imports it: a library must not change how an
application's structlog renders.
"""

from __future__ import annotations

import sys

UNUSED_EXTRAS = ("rich", "colorama", "better_exceptions")
"""What structlog imports if installed and crisp-sync never uses."""


def import_structlog() -> None:
    """Import structlog, unless imported already, with `UNUSED_EXTRAS` hidden from it."""
    if "structlog" in sys.modules:
        return
    hidden = [name for name in UNUSED_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment] # import raises ImportError
    try:
        import structlog  # noqa: F401, PLC0415 - the point of this module
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


import_structlog()
