"""The client's options, checked in one place, with the names the user wrote.

Each option of `Crisp` has one rule here. A value of the wrong type raises `TypeError`, a
value out of range `ValueError`; both name the option as the user passed it (``pool_size``,
not the name of whatever layer receives it), at construction, before anything is built.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from crisp_api import defaults
from middleware.quota import DAY


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(name: str, value: object, *, zero: bool = False) -> None:
    if not _number(value):
        raise TypeError(f"{name} must be a number of seconds, got {_shown(value)}")
    assert isinstance(value, int | float)
    if not (value >= 0 if zero else value > 0) or not value < math.inf:
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a number of seconds {bound}, got {value!r}")


def _timeout(name: str, value: object) -> None:
    """Seconds for both waits, or a ``(connect, read)`` pair of seconds."""
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError(f"{name} must be seconds or a (connect, read) pair of seconds, "
                             f"got a tuple of {len(value)}")
        _seconds(f"{name}[0] (connect)", value[0])
        _seconds(f"{name}[1] (read)", value[1])
    elif _number(value):
        _seconds(name, value)
    else:
        raise TypeError(f"{name} must be a number of seconds or a (connect, read) tuple of "
                        f"seconds, got {_shown(value)}")


def _count(name: str, value: object, *, least: int) -> None:
    if not _whole(value):
        raise TypeError(f"{name} must be a whole number, got {_shown(value)}")
    assert isinstance(value, int)
    if value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")


def _rate_limit(name: str, value: object) -> None:
    if value is None or value == defaults.ADAPTIVE:
        return
    if not _number(value):
        raise TypeError(
            f"{name} must be {defaults.ADAPTIVE!r}, None or a number of requests/s, "
            f"got {_shown(value)}"
        )
    assert isinstance(value, int | float)
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive number of requests/s, got {value!r}")


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_shown(value)}")


def _share(name: str, value: object) -> None:
    if not _number(value):
        raise TypeError(f"{name} must be a share (a number from 0 to below 1), "
                        f"got {_shown(value)}")
    assert isinstance(value, int | float)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be a share from 0 to below 1, got {value!r}")


def _time_of_day(name: str, value: object) -> None:
    _seconds(name, value, zero=True)
    assert isinstance(value, int | float)
    if value >= DAY:
        raise ValueError(f"{name} must be seconds after UTC midnight, below {DAY:g}, "
                         f"got {value!r}")


def _optional(rule: Callable[[str, object], None]) -> Callable[[str, object], None]:
    def check(name: str, value: object) -> None:
        if value is not None:
            rule(name, value)

    return check


def _text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {_shown(value)}")
    if not value:
        raise ValueError(f"{name} must not be empty")


def _url(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a URL string, got {_shown(value)}")


def _proxy(name: str, value: object) -> None:
    if value is None or value is False:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a proxy URL string, False (no proxy) or None (the "
                        f"environment's HTTPS_PROXY/HTTP_PROXY/NO_PROXY), got "
                        f"{type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty (False: no proxy)")


def _file(name: str, value: object) -> None:
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be the path of a PEM file, got {_shown(value)}")
    if not os.path.isfile(value):
        raise ValueError(f"{name} must be the path of a PEM file, got {os.fspath(value)!r} "
                         "(no such file)")


def _shown(value: object) -> str:
    """A value and its type, for a message (strings shown quoted: ``'32' (str)``)."""
    return f"{value!r} ({type(value).__name__})"


RULES: dict[str, Callable[[str, object], None]] = {
    "timeout": _timeout,
    "deadline": _optional(_seconds),
    "max_retries": lambda name, value: _count(name, value, least=0),
    "rate_limit": _rate_limit,
    "burst": lambda name, value: _count(name, value, least=1),
    "rate_limit_wait": _optional(lambda name, value: _seconds(name, value, zero=True)),
    "cache_ttl": lambda name, value: _seconds(name, value, zero=True),
    "cache_size": lambda name, value: _count(name, value, least=1),
    "pool_size": lambda name, value: _count(name, value, least=1),
    "max_body": lambda name, value: _count(name, value, least=1),
    "redis_url": _optional(_url),
    "redis_prefix": _text,
    "daily_quota": _optional(lambda name, value: _count(name, value, least=1)),
    "quota_reserve": _share,
    "quota_reset": _time_of_day,
    "quota_pace": _flag,
    "quota_spent_after": _seconds,
    "proxy": _proxy,
    "ca_bundle": _optional(_file),
}
"""The rule of each option that takes a plain value."""


def check(**options: Any) -> None:
    """Check each option given by its public name (`RULES`); raise on the first bad one."""
    for name, value in options.items():
        RULES[name](name, value)
