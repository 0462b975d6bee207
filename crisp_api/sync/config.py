"""Where crisp-sync's settings come from: the command line, the environment, a TOML file.

Every flag of the parser (`crisp_api.sync.cli.build_parser`) is also an environment variable,
``CRISP_SYNC_`` and the flag's name (``--metrics-port``: ``CRISP_SYNC_METRICS_PORT``), and a
key of the optional TOML file named by ``--config`` or ``$CRISP_SYNC_CONFIG``
(``metrics-port = 9100``). A flag wins over the environment, the environment over the file,
the file over the flag's default. The parser is the one description of the flags: their
names, checks (argparse types and choices) and defaults are read from it, so a value from the
environment or the file passes the same check as on the command line, and a value that fails
is refused naming where it came from. An empty variable counts as unset.

Besides the flags, two small tables:

- `CREDENTIALS`: the token keypair, its tier and the web hooks secret are no flags (a command
  line is seen by every user of the machine); they keep their variables (``CRISP_KEY``, ...)
  and may be keys of the file.
- `SHARED`: the variables that the client library reads too (``CRISP_REST_HOST``,
  ``CRISP_REDIS_URL``) or that crisp-sync read before the ``CRISP_SYNC_`` names
  (``CRISP_DAILY_QUOTA``) keep working for their flag, at the environment's rank; when both
  names are set the ``CRISP_SYNC_`` one wins, being crisp-sync's own (a deployment can point
  crisp-sync elsewhere than the other programs sharing its environment).

An unknown ``CRISP_SYNC_`` variable or file key is refused with the closest known name: a typo
would otherwise be a setting silently not applied. No secret (a key, a password in a URL) is
ever shown in a message. A file that holds one and that every user may read is worth a
warning (`Config.warnings`) rather than a refusal: Kubernetes mounts secrets and config maps
readable by all by default, and the file's owner may have decided so.
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from crisp_api import defaults
from crisp_api.sync.exits import UsageError

ENV_PREFIX = "CRISP_SYNC_"
CONFIG_ENV = "CRISP_SYNC_CONFIG"
HOOKS_SECRET_ENV = "CRISP_HOOKS_SECRET"  # noqa: S105 - the name of a variable, not a secret
DAILY_QUOTA_ENV = "CRISP_DAILY_QUOTA"
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
"""The words a boolean flag (``--follow``) takes from the environment or the file."""


@dataclass(frozen=True)
class Credential:
    """A setting that is no flag: its variable, and its key in the file."""

    key: str
    variable: str
    meaning: str
    secret: bool = False
    choices: tuple[str, ...] = ()


CREDENTIALS = (
    Credential("identifier", "CRISP_IDENTIFIER", "token identifier (required)"),
    Credential("key", "CRISP_KEY", "token key (required)", secret=True),
    Credential("tier", "CRISP_TIER", "token tier: plugin (default), website or user",
               choices=tuple(sorted(defaults.TIERS))),
    Credential("hooks-secret", HOOKS_SECRET_ENV, "web hooks secret (with --hooks-port)",
               secret=True),
)
"""The settings that are no flags (see the module docstring)."""
SHARED = {"rest_host": "CRISP_REST_HOST", "redis_url": defaults.REDIS_URL_ENV,
          "daily_quota": DAILY_QUOTA_ENV}
"""By flag (its dest): the other variable it is read from (see the module docstring)."""
SECRET_FLAGS = frozenset({"db", "redis_url"})
"""The flags whose value may hold a password (a URL): never shown."""

PRECEDENCE_HELP = (
    "Every flag can also be set in the environment as CRISP_SYNC_<FLAG> (--db: CRISP_SYNC_DB, "
    "--metrics-port: CRISP_SYNC_METRICS_PORT) or as a key of a TOML file given by --config "
    f"or ${CONFIG_ENV} (metrics-port = 9100). A flag wins over the environment, the "
    "environment over the file, the file over the default. Boolean flags take true/false, "
    "1/0 or yes/no. The credentials below may be keys of the file too (identifier, key, tier, "
    "hooks-secret); where two variables set one flag (CRISP_REST_HOST and "
    "CRISP_SYNC_REST_HOST), the CRISP_SYNC_ one wins."
)
"""How the sources rank (shown by ``--help``)."""
ENVIRONMENT = {
    **{credential.variable: credential.meaning for credential in CREDENTIALS},
    **{variable: f"as --{dest.replace('_', '-')} (CRISP_SYNC_{dest.upper()})"
       for dest, variable in SHARED.items()},
}
"""The variables that are not ``CRISP_SYNC_<FLAG>`` (listed by ``--help``)."""


@dataclass(frozen=True)
class Flag:
    """One flag of the parser, as the environment and the file know it."""

    action: argparse.Action

    @property
    def dest(self) -> str:
        return self.action.dest

    @property
    def option(self) -> str:
        """Its long option, as given on the command line: ``--metrics-port``."""
        return max(self.action.option_strings, key=len)

    @property
    def key(self) -> str:
        """Its key in the file: ``metrics-port``."""
        return self.option.removeprefix("--")

    @property
    def variable(self) -> str:
        """Its environment variable: ``CRISP_SYNC_METRICS_PORT``."""
        return ENV_PREFIX + self.key.upper().replace("-", "_")

    @property
    def secret(self) -> bool:
        return self.dest in SECRET_FLAGS


def flags_of(parser: argparse.ArgumentParser) -> tuple[Flag, ...]:
    """The parser's flags that take a value from the environment or the file: every option
    but ``--help`` and ``--version`` (whose default is `argparse.SUPPRESS`). A kind of flag
    this module cannot read from text is a programming error, found by the first run."""
    flags = tuple(Flag(action) for action in parser._actions
                  if action.option_strings and action.default is not argparse.SUPPRESS)
    for flag in flags:
        if not isinstance(flag.action, _KINDS):
            raise TypeError(f"{flag.option}: no reading from the environment for "
                            f"{type(flag.action).__name__}")
    return flags


@dataclass(frozen=True)
class Config:
    """Every setting's value and where it came from, before the rules that tie them."""

    args: argparse.Namespace = field(repr=False)  # the database and Redis URLs
    """Every flag's value, by dest, whatever its source."""
    credentials: Mapping[str, str] = field(repr=False)
    """The `CREDENTIALS` that are set, by variable (the environment's, else the file's)."""
    origins: Mapping[str, str]
    """Where each value from the environment or the file came from, by dest or variable:
    ``CRISP_SYNC_WORKERS``, or ``crisp-sync.toml: workers``."""
    warnings: tuple[str, ...] = ()

    def named(self, dest: str, option: str) -> str:
        """``option`` (``--follow``, or a sentence about it), with where ``dest``'s value came
        from unless from the command line or the default: ``--follow (CRISP_SYNC_FOLLOW)``."""
        origin = self.origins.get(dest)
        return option if origin is None else f"{option} ({origin})"


def read_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                environ: Mapping[str, str]) -> Config:
    """The settings of the command line ``argv`` (argparse ends the process on a bad one, as
    ever), the environment ``environ`` and the file it names; `UsageError` for the first
    value refused, naming its source."""
    flags = flags_of(parser)
    given = _command_line(parser, flags, argv)
    variables = {name: value for name, value in environ.items() if value}
    _refuse_unknown_variables(flags, variables)
    where: str = given.get("config") or variables.get(CONFIG_ENV) or ""
    table = _read_file(where, "--config" if "config" in given else CONFIG_ENV) if where else {}
    _refuse_unknown_keys(flags, table, where)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for flag in flags:
        if flag.dest in given:
            values[flag.dest] = given[flag.dest]
            continue
        value, origin = _environment_value(flag, variables)
        if origin is None and flag.key in table:
            value, origin = _file_value(flag, table[flag.key], where), f"{where}: {flag.key}"
        if origin is None:
            value = flag.action.default
            if isinstance(value, str) and flag.action.type is not None:
                value = _checked(flag.action, value)  # as argparse does with a text default
        else:
            origins[flag.dest] = origin
        values[flag.dest] = value
    credentials = _credentials(variables, table, where, origins)
    return Config(argparse.Namespace(**values), credentials, origins, _exposed(table, where))


_SWITCH = argparse._StoreConstAction
"""``store_true``, ``store_false``, ``store_const``: given (its const) or not (its default)."""
_LIST = (argparse._AppendAction, argparse._ExtendAction)
"""A flag given several times: a TOML array, or a comma-separated variable (so is a flag
that takes several values at once: `_many`)."""
_KINDS = (argparse._StoreAction, _SWITCH, argparse._CountAction, *_LIST)
"""The kinds of flag read from the environment and the file: a value, a switch, a count, a
list."""


def _command_line(parser: argparse.ArgumentParser, flags: Sequence[Flag],
                  argv: Sequence[str] | None) -> dict[str, Any]:
    """The flags ``argv`` gives, by dest (argparse's checks and errors, as ever): parsed with
    no default, so that a flag given its default value still counts as given."""
    parser.parse_args(argv)  # --help, --version and a bad flag end here, defaults as ever
    kept = [(flag.action, flag.action.default) for flag in flags]
    try:
        for action, _ in kept:
            action.default = argparse.SUPPRESS
        return dict(vars(parser.parse_args(argv)))
    finally:
        for action, default in kept:
            action.default = default


def _refuse_unknown_variables(flags: Sequence[Flag], variables: Mapping[str, str]) -> None:
    """A ``CRISP_SYNC_`` variable that names no flag is a typo: refused, with a guess."""
    known = {flag.variable for flag in flags}
    unknown = sorted(name for name in variables
                     if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        guesses = {**{flag.key: flag.variable for flag in flags},
                   **{credential.key: credential.variable for credential in CREDENTIALS}}
        raise UsageError("unknown variable " + ", ".join(
            name + _guess(name.removeprefix(ENV_PREFIX), guesses) for name in unknown))


def _refuse_unknown_keys(flags: Sequence[Flag], table: Mapping[str, object],
                         where: str) -> None:
    """A file key that names no setting is a typo: refused, with a guess."""
    if "config" in table:
        raise UsageError(f"{where}: config: a file cannot name another (give --config or "
                         f"${CONFIG_ENV})")
    known = {flag.key for flag in flags} | {credential.key for credential in CREDENTIALS}
    unknown = sorted(key for key in table if key not in known)
    if unknown:
        guesses = {key: key for key in known - {"config"}}
        raise UsageError(f"{where}: unknown key " + ", ".join(
            key + _guess(key, guesses) for key in unknown))


def _guess(name: str, guesses: Mapping[str, str]) -> str:
    """`` (did you mean X?)``, X the guess of the setting name closest to ``name`` (compared
    as a file key: lower case, dashes), or nothing."""
    close = difflib.get_close_matches(name.lower().replace("_", "-"), list(guesses), n=1)
    return f" (did you mean {guesses[close[0]]}?)" if close else ""


def _read_file(path: str, named_by: str) -> dict[str, Any]:
    """The TOML file's table (its top-level keys)."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise UsageError(f"{named_by} {path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not TOML: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not TOML: not UTF-8 text") from None


def _environment_value(flag: Flag, variables: Mapping[str, str]) -> tuple[Any, str | None]:
    """The flag's value from its variable (else its `SHARED` one), and that variable."""
    for variable in (flag.variable, SHARED.get(flag.dest)):
        if variable is not None and variable in variables:
            text = variables[variable]
            said = variable if flag.secret else f"{variable}={text}"
            action = flag.action
            if isinstance(action, _SWITCH):
                return _switch(action, text, said), variable
            if isinstance(action, argparse._CountAction):
                return _count(text, said), variable
            if _many(action):
                return [_item(action, part.strip(), said) for part in text.split(",")
                        if part.strip()], variable
            return _item(action, text, said), variable
    return None, None


def _file_value(flag: Flag, value: object, where: str) -> Any:
    """The flag's value from the file's ``value`` (a TOML string, number, boolean or, for a
    list, array of them)."""
    said = f"{where}: {flag.key}"
    action = flag.action
    if isinstance(action, _SWITCH) and isinstance(value, bool):
        return action.const if value else action.default
    if isinstance(action, _SWITCH | argparse._CountAction) and isinstance(value, str | int) \
            and not isinstance(value, bool):
        text = str(value)
        return (_switch(action, text, said) if isinstance(action, _SWITCH)
                else _count(text, said))
    if _many(action) and isinstance(value, list):
        return [_item(action, _scalar(action, item, said), said) for item in value]
    if isinstance(action, (argparse._StoreAction, *_LIST)):
        return _item(action, _scalar(action, value, said), said)
    raise UsageError(f"{said}: must be {_expected(action)}, got {_kind(value)}")


def _many(action: argparse.Action) -> bool:
    """Whether the flag's value is a list: given several times, or several values at once
    (``nargs="+"``)."""
    return isinstance(action, _LIST) or (isinstance(action, argparse._StoreAction)
                                         and action.nargs not in (None, "?"))


def _scalar(action: argparse.Action, value: object, said: str) -> str:
    """A TOML value as the text the command line would give: a string, or a number for a
    flag that takes one (every flag with a type)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and action.type:
        return str(value)
    raise UsageError(f"{said}: must be {_expected(action)}, got {_kind(value)}")


def _switch(action: argparse.Action, text: str, said: str) -> Any:
    """A switch from one of the `BOOLEANS` words: its const if true."""
    word = text.strip().lower()
    if word not in BOOLEANS:
        raise UsageError(f"{said}: must be true or false (or 1/0, yes/no)")
    return action.const if BOOLEANS[word] else action.default


def _count(text: str, said: str) -> int:
    """A count (``-vv``: 2)."""
    if not text.strip().isdigit():
        raise UsageError(f"{said}: must be a count (0, 1, 2, ...)")
    return int(text)


def _item(action: argparse.Action, text: str, said: str) -> Any:
    """``text`` checked as the flag's value on the command line; `UsageError` naming where
    it came from (``said``)."""
    try:
        return _checked(action, text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{said}: {exc}") from None


def _checked(action: argparse.Action, text: str) -> Any:
    """``text`` through the flag's type and choices, as argparse checks a command line;
    `argparse.ArgumentTypeError` saying why not."""
    convert = action.type if callable(action.type) else str
    try:
        value = convert(text)
    except argparse.ArgumentTypeError:
        raise
    except (TypeError, ValueError):
        name = getattr(convert, "__name__", "")
        raise argparse.ArgumentTypeError(f"invalid {name} value: {text!r}") from None
    if action.choices is not None and value not in action.choices:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(map(str, action.choices))})")
    return value


def _expected(action: argparse.Action) -> str:
    """What the file may give ``action``, said in an error."""
    if isinstance(action, _SWITCH):
        return "true or false"
    if isinstance(action, argparse._CountAction):
        return "a count (0, 1, 2, ...)"
    one = "a string or a number" if action.type else "a string"
    return f"{one}, or an array of them" if _many(action) else one


def _kind(value: object) -> str:
    """What a TOML value is, said without showing it."""
    for kind, name in ((bool, "a boolean"), (int | float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return "a date or time"


def _credentials(variables: Mapping[str, str], table: Mapping[str, object], where: str,
                 origins: dict[str, str]) -> dict[str, str]:
    """The `CREDENTIALS` that are set, by variable; each file value's origin into
    ``origins``."""
    found: dict[str, str] = {}
    for credential in CREDENTIALS:
        if credential.variable in variables:
            value, origin = variables[credential.variable], credential.variable
        elif credential.key in table:
            given = table[credential.key]
            origin = f"{where}: {credential.key}"
            if not isinstance(given, str):
                raise UsageError(f"{origin}: must be a string, got {_kind(given)}")
            value = given
            origins[credential.variable] = origin
        else:
            continue
        if credential.choices and value not in credential.choices:
            raise UsageError(f"{origin}: must be one of {', '.join(credential.choices)}, "
                             f"got {value!r}")
        if value:
            found[credential.variable] = value
    return found


def _exposed(table: Mapping[str, object], path: str) -> tuple[str, ...]:
    """A warning if the file holds a secret and every user of the machine may read it."""
    held = [credential.key for credential in CREDENTIALS
            if credential.secret and table.get(credential.key)]
    held += [key for key in sorted(dest.replace("_", "-") for dest in SECRET_FLAGS)
             if isinstance(table.get(key), str) and _has_password(str(table[key]))]
    if not held or os.stat(path).st_mode & stat.S_IROTH == 0:
        return ()
    return (f"{path} holds secrets ({', '.join(held)}) and every user of this machine may "
            f"read it: chmod o-r it, or give them in the environment",)


def _has_password(url: str) -> bool:
    """Whether ``url`` holds a password (``postgresql://user:password@host/db``)."""
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False
