"""Refusing to run from a folder that the official ``crisp-api`` package shares with this one.

This project is distributed as ``crisp-api-next`` but, as a drop-in replacement, installs the
same top-level package, ``crisp_api``, as Crisp's official client (distribution ``crisp-api``,
1.1.x: ``crisp_api/__init__.py``, ``errors/`` and ``resources/``). Installing one over the
other makes pip write the second one's files over the first's, silently, and ``pip check``
sees nothing: ``import crisp_api`` then gives whichever ``__init__.py`` came last, and
uninstalling either deletes files the other needs.

Importing this module checks, once per process, whether the official distribution is
installed in the very folder this package was imported from (its metadata sits next to it),
and if so raises `PackageClashError`, one line saying which one overwrote the other and the
fix (a program that does not catch it, such as ``crisp-sync``, prints that line alone).
Our ``__init__.py`` imports it first; so do `crisp_api.defaults` (which every module of
ours that talks to Crisp imports) and the ``crisp_api.sync`` and ``crisp_api.testing``
packages, so that ``crisp-sync`` and the fake fail this way too when the official
``__init__.py`` replaced ours. (A plain ``import crisp_api`` after the official package was
installed over this one runs only the official files, and cannot be caught here.)
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

OFFICIAL = "crisp-api"
OURS = "crisp-api-next"
FIX = f"pip uninstall -y {OFFICIAL} {OURS} && pip install {OURS}"
"""Both out, then ours alone (``pip install crisp-api`` instead keeps the official client)."""
_OFFICIAL_METADATA = re.compile(r"crisp[-_.]api(?:-[^/]*)?\.(?:dist|egg)-info", re.IGNORECASE)
"""The names the official distribution's metadata folder can have (``crisp_api-1.1.23.dist-info``,
``crisp_api-1.1.23-py3.11.egg-info``, ``crisp_api.egg-info``); ours (``crisp_api_next-...``)
does not match."""


class PackageClashError(ImportError):
    """The official ``crisp-api`` and ``crisp-api-next`` are installed in the same folder; the
    message (one line) says which was installed over the other, and the fix."""


def clash_message(folder: Path) -> str | None:
    """What is wrong, in one line, if the official distribution is installed in ``folder``
    (the folder holding our ``crisp_api`` package); None if it is not. A listing of the
    folder comes first: importing `importlib.metadata` costs tens of milliseconds, at every
    start of every process (a fleet's workers start at once), and is needed only when a
    folder of that name is there."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    if not any(_OFFICIAL_METADATA.fullmatch(name) for name in names):
        return None
    import importlib.metadata  # noqa: PLC0415 - only when the official metadata may be there

    for official in importlib.metadata.distributions(name=OFFICIAL, path=[str(folder)]):
        init = folder / "crisp_api" / "__init__.py"
        recorded = next((entry.hash for entry in official.files or ()
                         if entry.as_posix() == "crisp_api/__init__.py"), None)
        theirs_on_top = recorded is not None and recorded.mode == "sha256" and (
            recorded.value == _sha256(init))
        what = (
            f"the official '{OFFICIAL}' {official.version} was installed over '{OURS}' and "
            "replaced crisp_api/__init__.py (import crisp_api gives the official client)"
            if theirs_on_top else
            f"'{OURS}' and the official '{OFFICIAL}' {official.version} share the package "
            "folder crisp_api (one was installed over the other; removing either breaks both)"
        )
        return f"{what}, in {folder}; fix: {FIX}"
    return None


def _sha256(path: Path) -> str:
    """A file's digest as wheel RECORDs write it (urlsafe base64, unpadded)."""
    try:
        digest = hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return ""
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _say_it_in_one_line(previous: Callable[..., object]) -> Callable[..., object]:
    """An ``excepthook`` printing an uncaught `PackageClashError` as its one line (not under
    a traceback, which would only show this module), and anything else as ``previous``."""

    def hook(kind: type[BaseException], error: BaseException, trace: TracebackType | None,
             ) -> None:
        if issubclass(kind, PackageClashError):
            sys.stderr.write(f"crisp_api: {error}\n")
        else:
            previous(kind, error, trace)

    return hook


_problem = clash_message(Path(__file__).resolve().parent.parent)
if _problem is not None:
    sys.excepthook = _say_it_in_one_line(sys.excepthook)
    raise PackageClashError(_problem)
