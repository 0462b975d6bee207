"""Keeping secrets out of messages: what a URL may carry (``user:password@``) is masked."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")


def redact_url(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``
    (``https://***@host/path``), for error messages and logs."""
    return _USERINFO.sub("***@", text)
