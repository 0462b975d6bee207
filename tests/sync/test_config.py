"""crisp-sync's settings from the environment and a TOML file: each flag at the four levels
(flag > environment > file > default), values checked as the flag and refused naming their
source, unknown names refused with a guess, no secret shown, and a run configured by a file
and the environment only."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crisp_api.sync.cli import build_parser
from crisp_api.sync.config import (
    CONFIG_ENV,
    CREDENTIALS,
    SHARED,
    Config,
    flags_of,
    read_config,
)
from crisp_api.sync.exits import UsageError
from crisp_api.sync.settings import DB_ENV, SyncSettings, duration, port
from crisp_api.testing import FakeCrisp
from tests.sync.helpers import assert_exact_copy

CREDENTIALS_ENV = {"CRISP_IDENTIFIER": "an-identifier", "CRISP_KEY": "a-secret-key"}


def config_of(argv: list[str], environ: dict[str, str]) -> Config:
    return read_config(build_parser(), argv, environ)


def toml_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "crisp-sync.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(("dest", "toml", "environ", "argv", "levels"), [
    # dest, the file's line, the environment, the command line: the value at each level
    # (default, file, environment over the file, flag over all)
    ("workers", "workers = 3", {"CRISP_SYNC_WORKERS": "5"}, ["--workers", "7"], (8, 3, 5, 7)),
    ("interval", 'interval = "10m"', {"CRISP_SYNC_INTERVAL": "90s"}, ["--interval", "1h"],
     (300, 600, 90, 3600)),
    ("no_progress", "no-progress = true", {"CRISP_SYNC_NO_PROGRESS": "no"}, ["--no-progress"],
     (False, True, False, True)),
    ("follow", 'follow = "yes"', {"CRISP_SYNC_FOLLOW": "0"}, ["--follow"],
     (False, True, False, True)),
    ("log_format", 'log-format = "json"', {"CRISP_SYNC_LOG_FORMAT": "console"},
     ["--log-format", "json"], ("console", "json", "console", "json")),
    ("rate_limit", "rate-limit = 2.5", {"CRISP_SYNC_RATE_LIMIT": "adaptive"},
     ["--rate-limit", "12"], ("adaptive", 2.5, "adaptive", 12)),
    ("quota_reserve", 'quota-reserve = "20%"', {"CRISP_SYNC_QUOTA_RESERVE": "0.05"},
     ["--quota-reserve", "0"], (0.1, 0.2, 0.05, 0)),
    ("verbose", "verbose = 1", {"CRISP_SYNC_VERBOSE": "2"}, ["-vvv"], (0, 1, 2, 3)),
    ("website_id", 'website-id = "from-file"', {"CRISP_SYNC_WEBSITE_ID": "from-env"},
     ["--website-id", "from-flag"], (None, "from-file", "from-env", "from-flag")),
    # the shared variable is the environment's too; the CRISP_SYNC_ one wins over it
    ("daily_quota", "daily-quota = 100", {"CRISP_DAILY_QUOTA": "200"},
     ["--daily-quota", "400"], (None, 100, 200, 400)),
    ("daily_quota", "daily-quota = 100",
     {"CRISP_DAILY_QUOTA": "200", "CRISP_SYNC_DAILY_QUOTA": "300"}, ["--daily-quota", "400"],
     (None, 100, 300, 400)),
    ("rest_host", 'rest-host = "http://file"', {"CRISP_REST_HOST": "http://env"},
     ["--rest-host", "http://flag"], (None, "http://file", "http://env", "http://flag")),
])
def test_a_flag_wins_over_the_environment_over_the_file_over_the_default(
    tmp_path: Path, dest: str, toml: str, environ: dict[str, str], argv: list[str],
    levels: tuple[Any, ...],
) -> None:
    with_file = {CONFIG_ENV: str(toml_file(tmp_path, toml))}
    found = tuple(vars(config_of(a, e).args)[dest] for a, e in (
        ([], {}), ([], with_file), ([], {**with_file, **environ}),
        (argv, {**with_file, **environ})))
    assert found == levels


def test_a_flag_given_its_default_value_still_wins() -> None:
    assert config_of(["--workers", "8"], {"CRISP_SYNC_WORKERS": "4"}).args.workers == 8
    assert config_of([], {"CRISP_SYNC_WORKERS": "4"}).args.workers == 4


def test_config_is_found_from_its_flag_or_its_variable(tmp_path: Path) -> None:
    path = toml_file(tmp_path, "workers = 3")
    other = tmp_path / "other.toml"
    other.write_text("workers = 4", encoding="utf-8")
    assert config_of(["--config", str(path)], {}).args.workers == 3
    assert config_of([], {CONFIG_ENV: str(path)}).args.workers == 3
    assert config_of(["--config", str(other)], {CONFIG_ENV: str(path)}).args.workers == 4


def test_an_empty_variable_counts_as_unset() -> None:
    assert config_of([], {"CRISP_SYNC_WORKERS": "", "CRISP_SYNC_NOPE": ""}).args.workers == 8


@pytest.mark.parametrize(("environ", "toml", "said"), [
    ({"CRISP_SYNC_WORKERS": "abc"}, "", "CRISP_SYNC_WORKERS=abc: invalid int value: 'abc'"),
    ({"CRISP_SYNC_INTERVAL": "soon"}, "",
     "CRISP_SYNC_INTERVAL=soon: not a duration: 'soon' (e.g. 30m, 24h)"),
    ({"CRISP_SYNC_FOLLOW": "maybe"}, "",
     "CRISP_SYNC_FOLLOW=maybe: must be true or false (or 1/0, yes/no)"),
    ({"CRISP_SYNC_LOG_FORMAT": "xml"}, "",
     "CRISP_SYNC_LOG_FORMAT=xml: invalid choice: 'xml' (choose from console, json)"),
    ({"CRISP_SYNC_VERBOSE": "-1"}, "", "CRISP_SYNC_VERBOSE=-1: must be a count (0, 1, 2, ...)"),
    ({"CRISP_DAILY_QUOTA": "many"}, "",
     "CRISP_DAILY_QUOTA=many: must be a whole number of at least 1, got 'many'"),
    ({"CRISP_TIER": "root"}, "", "CRISP_TIER: must be one of plugin, user, website, got 'root'"),
    ({}, 'interval = "soon"', "{file}: interval: not a duration: 'soon' (e.g. 30m, 24h)"),
    ({}, "workers = 4.5", "{file}: workers: invalid int value: '4.5'"),
    ({}, "workers = true", "{file}: workers: must be a string or a number, got a boolean"),
    ({}, 'follow = "maybe"', "{file}: follow: must be true or false (or 1/0, yes/no)"),
    ({}, "follow = 2.0", "{file}: follow: must be true or false, got a number"),
    ({}, 'website-id = ["a", "b"]', "{file}: website-id: must be a string, got an array"),
    ({}, "hooks-port = 70000", "{file}: hooks-port: not a TCP port: '70000'"),
    ({}, 'tier = "root"', "{file}: tier: must be one of plugin, user, website, got 'root'"),
    ({}, "key = 12", "{file}: key: must be a string, got a number"),
    ({}, "workers = ?", "{file}: not TOML: Invalid value (at line 1, column 11)"),
])
def test_a_value_is_checked_as_its_flag_and_refused_naming_its_source(
    tmp_path: Path, environ: dict[str, str], toml: str, said: str
) -> None:
    path = toml_file(tmp_path, toml)
    with pytest.raises(UsageError) as refused:
        config_of([], {**environ, CONFIG_ENV: str(path)})
    assert str(refused.value) == said.format(file=path)


def test_no_secret_is_shown_in_a_refusal(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'redis-url = ["redis://:redis-password@127.0.0.1"]\n')
    with pytest.raises(UsageError) as refused:
        config_of([], {CONFIG_ENV: str(path)})
    assert str(refused.value) == f"{path}: redis-url: must be a string, got an array"
    path.write_text('db = {url = "postgresql://crisp:db-password@127.0.0.1/crisp"}\n')
    with pytest.raises(UsageError) as refused:
        config_of([], {CONFIG_ENV: str(path)})
    assert str(refused.value) == f"{path}: db: must be a string, got a table"


def test_unknown_names_are_refused_with_a_guess(tmp_path: Path) -> None:
    for environ, said in (
        ({"CRISP_SYNC_WROKERS": "4"},
         "unknown variable CRISP_SYNC_WROKERS (did you mean CRISP_SYNC_WORKERS?)"),
        ({"CRISP_SYNC_KEY": "k", "CRISP_SYNC_ZZZ": "1"},
         "unknown variable CRISP_SYNC_KEY (did you mean CRISP_KEY?), CRISP_SYNC_ZZZ"),
    ):
        with pytest.raises(UsageError) as refused:
            config_of([], environ)
        assert str(refused.value) == said
    path = toml_file(tmp_path, "metrics_port = 9100\nintervall = '5m'\n")
    with pytest.raises(UsageError) as refused:
        config_of(["--config", str(path)], {})
    assert str(refused.value) == (f"{path}: unknown key intervall (did you mean interval?), "
                                  "metrics_port (did you mean metrics-port?)")
    path.write_text("config = 'other.toml'\n")
    with pytest.raises(UsageError, match="a file cannot name another"):
        config_of(["--config", str(path)], {})
    with pytest.raises(UsageError, match=f"--config {tmp_path / 'none.toml'}: cannot read it"):
        config_of(["--config", str(tmp_path / "none.toml")], {})


def test_the_rules_between_flags_hold_whatever_the_source(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'follow = true\nwebsite-id = "w"\n')
    with_file = {CONFIG_ENV: str(path)}
    for argv, environ, said in (
        (["--status"], with_file, f"--status only reads the database: drop --follow ({path}: "
                                  "follow)"),
        ([], {"CRISP_SYNC_STATUS": "true", "CRISP_SYNC_DEMO": "1"},
         "--status (CRISP_SYNC_STATUS) only reads the database: drop --demo (CRISP_SYNC_DEMO)"),
        (["--demo"], with_file, "--demo runs against its own fake Crisp: drop --website-id "
                                f"({path}: website-id), --follow ({path}: follow)"),
        (["--all-websites"], {**with_file, **CREDENTIALS_ENV},
         f"--website-id ({path}: website-id) and --all-websites exclude each other"),
        (["--website-id", "w"], {**CREDENTIALS_ENV, "CRISP_SYNC_METRICS_PORT": "9100"},
         "--metrics-port (CRISP_SYNC_METRICS_PORT) goes with --follow"),
        (["--website-id", "w"], {**CREDENTIALS_ENV, "CRISP_SYNC_WORKERS": "0"},
         "--workers (CRISP_SYNC_WORKERS) must be between 1 and 256, got 0"),
    ):
        with pytest.raises(UsageError) as refused:
            SyncSettings.parse(config_of(argv, environ))
        assert str(refused.value) == said


def test_the_demo_takes_its_database_and_host_from_the_command_line_only(
    tmp_path: Path,
) -> None:
    """A service's environment or file never points the demo at its database or API."""
    service = {DB_ENV: str(tmp_path / "service.sqlite3"), "CRISP_REST_HOST": "http://api",
               "CRISP_SYNC_REDIS_URL": "redis://127.0.0.1:9"}
    settings = SyncSettings.parse(config_of(["--demo"], service))
    assert (settings.db, settings.redis_url) == (None, None)
    given = SyncSettings.parse(config_of(["--demo", "--db", "demo.sqlite3"], service))
    assert given.db == "demo.sqlite3"


def test_credentials_come_from_the_environment_else_the_file(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'identifier = "file-id"\nkey = "file-key"\ntier = "website"\n'
                               'website-id = "w"\n')
    settings = SyncSettings.parse(config_of(["--config", str(path)], {}))
    assert settings.target is not None
    assert (settings.target.identifier, settings.target.key, settings.target.tier) == (
        "file-id", "file-key", "website")
    settings = SyncSettings.parse(config_of(["--config", str(path)], CREDENTIALS_ENV))
    assert settings.target is not None
    assert (settings.target.identifier, settings.target.key) == ("an-identifier", "a-secret-key")
    assert "file-key" not in repr(settings) + repr(config_of(["--config", str(path)], {}))


def test_a_file_every_user_may_read_is_warned_of_when_it_holds_a_secret(tmp_path: Path) -> None:
    for text, mode, warned in (
        ('key = "a-secret-key"', 0o644, True),
        ('key = "a-secret-key"', 0o600, False),
        ('db = "postgresql://crisp:db-password@127.0.0.1/crisp"', 0o644, True),
        ('db = "postgresql://crisp@127.0.0.1/crisp"', 0o644, False),
        ("workers = 4", 0o644, False),
    ):
        path = toml_file(tmp_path, text, mode)
        warnings = config_of(["--config", str(path)], {}).warnings
        assert bool(warnings) == warned, text
        for warning in warnings:
            assert str(path) in warning
            assert "a-secret-key" not in warning
            assert "db-password" not in warning


def test_a_list_flag_takes_an_array_or_commas_and_a_switch_gives_its_const(
    tmp_path: Path,
) -> None:
    """crisp-sync has no list flag yet (one --website-id, or --all-websites); any parser's
    flags are read the same way, a list from a TOML array or a comma-separated variable."""
    parser = argparse.ArgumentParser(prog="t")
    parser.add_argument("--config")
    parser.add_argument("--website-id", action="append", dest="website_ids")
    parser.add_argument("--ports", nargs="+", type=port)
    parser.add_argument("--no-cache", action="store_false", dest="cache")
    path = toml_file(tmp_path, 'website-id = ["a", "b"]\nports = [80, "443"]\nno-cache = true\n')
    with_file = {CONFIG_ENV: str(path)}
    environ = {"CRISP_SYNC_WEBSITE_ID": "c, d", "CRISP_SYNC_PORTS": "8080",
               "CRISP_SYNC_NO_CACHE": "no"}
    argv = ["--website-id", "e", "--website-id", "f", "--ports", "1", "2", "--no-cache"]
    found = [vars(read_config(parser, a, e).args) for a, e in (
        ([], {}), ([], with_file), ([], {**with_file, **environ}),
        (argv, {**with_file, **environ}))]
    assert [(f["website_ids"], f["ports"], f["cache"]) for f in found] == [
        (None, None, True), (["a", "b"], [80, 443], False), (["c", "d"], [8080], True),
        (["e", "f"], [1, 2], False)]
    for environ, toml, said in (
        ({"CRISP_SYNC_PORTS": "8080,x"}, "", "CRISP_SYNC_PORTS=8080,x: not a TCP port: 'x'"),
        ({}, "ports = [80, true]", f"{path}: ports: must be a string or a number, or an array "
                                   "of them, got a boolean"),
        ({}, "no-cache = [true]", f"{path}: no-cache: must be true or false, got an array"),
    ):
        path.write_text(toml, encoding="utf-8")
        with pytest.raises(UsageError) as refused:
            read_config(parser, [], {**with_file, **environ})
        assert str(refused.value) == said
    parser.add_argument("--color", action=argparse.BooleanOptionalAction, default=True)
    with pytest.raises(TypeError, match="--no-color: no reading from the environment"):
        read_config(parser, [], {})


def test_every_flag_has_a_variable_and_a_key() -> None:
    """Each flag of the parser is read from the environment and the file (a kind of flag
    that cannot be would fail here), under names that follow the rule."""
    flags = {flag.option: flag for flag in flags_of(build_parser())}
    assert flags["--metrics-port"].variable == "CRISP_SYNC_METRICS_PORT"
    assert flags["--metrics-port"].key == "metrics-port"
    assert flags["--db"].variable == DB_ENV
    assert flags["--config"].variable == CONFIG_ENV
    assert {"--help", "--version"}.isdisjoint(flags)
    variables = [flag.variable for flag in flags.values()]
    keys = [flag.key for flag in flags.values()] + [c.key for c in CREDENTIALS]
    assert len(set(variables)) == len(variables)
    assert len(set(keys)) == len(keys)


def test_help_says_how_the_sources_rank() -> None:
    shown = " ".join(build_parser().format_help().split())
    for said in ("CRISP_SYNC_<FLAG>", "--config", "CRISP_SYNC_CONFIG",
                 "A flag wins over the environment, the environment over the file, the file "
                 "over the default", "true/false, 1/0 or yes/no", "CRISP_SYNC_DB",
                 "CRISP_REST_HOST as --rest-host (CRISP_SYNC_REST_HOST)"):
        assert said in shown


def test_a_refused_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = toml_file(tmp_path, "wrokers = 4\n")
    for environ, said in (
        ({"CRISP_SYNC_WORKERS": "abc"}, "CRISP_SYNC_WORKERS=abc: invalid int value: 'abc'"),
        ({CONFIG_ENV: str(path)}, f"{path}: unknown key wrokers (did you mean workers?)"),
    ):
        done = subprocess.run([sys.executable, "-m", "crisp_api.sync.cli"], capture_output=True,
                              text=True, timeout=60, env={**os.environ, **environ},
                              cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr == f"crisp-sync: {said}\n"
        assert not list(tmp_path.glob("*.sqlite3"))


def test_a_run_configured_by_a_file_and_the_environment_only(tmp_path: Path) -> None:
    with FakeCrisp(conversations=30, messages=3, seed=24) as fake:
        db = tmp_path / "mirror.sqlite3"
        path = toml_file(tmp_path, "\n".join([
            f'rest-host = "{fake.url}"', f'db = "{db}"', f'website-id = "{fake.website_id}"',
            f'identifier = "{fake.identifier}"', f'key = "{fake.key}"', "workers = 2",
            "no-progress = true", 'log-format = "json"',
        ]))
        environment = {name: value for name, value in os.environ.items()
                       if not name.startswith("CRISP_")}
        environment.update({CONFIG_ENV: str(path), "CRISP_SYNC_WORKERS": "3",
                            "CRISP_SYNC_LOG_FORMAT": "console"})
        done = subprocess.run([sys.executable, "-m", "crisp_api.sync.cli"], capture_output=True,
                              text=True, timeout=120, env=environment, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "website(s) complete" in done.stdout
        assert not done.stderr.startswith("{")  # the environment's log format, not the file's
        assert_exact_copy(db, fake)


DOCS_PAGE = Path(__file__).parents[2] / "docs" / "sync" / "configuration.md"
TABLE_START = "<!-- settings table: generated from crisp-sync's parser, checked by tests -->"
TABLE_END = "<!-- end of the settings table -->"


def settings_table() -> str:
    """The Markdown table of every setting, from the parser and `CREDENTIALS`."""
    rows = ["| Flag | Variable | TOML key | Default | Meaning |", "|---|---|---|---|---|"]
    for flag in flags_of(build_parser()):
        variables = [flag.variable] + ([SHARED[flag.dest]] if flag.dest in SHARED else [])
        default = flag.action.default
        unit = "s" if flag.action.type is duration else ""
        shown = ("" if default is None else str(default).lower() if isinstance(default, bool)
                 else f"{default:g}{unit}" if isinstance(default, float) else str(default))
        meaning = (flag.action.help or "").replace("%%", "%")
        if flag.action.choices:
            meaning += f" (one of: {', '.join(map(str, flag.action.choices))})"
        rows.append(" | ".join([
            "", f"`{flag.option}`", ", ".join(f"`{v}`" for v in variables),
            "" if flag.dest == "config" else f"`{flag.key}`", f"`{shown}`" if shown else "",
            meaning.replace("|", "\\|"), "",
        ]).strip())
    for credential in CREDENTIALS:
        rows.append(f"| | `{credential.variable}` | `{credential.key}` | | "
                    f"{credential.meaning} |")
    return "\n".join(rows)


def test_the_docs_table_is_the_parsers() -> None:
    """docs/sync/configuration.md lists every setting as the parser has it: a flag added,
    renamed or redocumented fails here until the page is updated (the table to paste is in
    the failure)."""
    page = DOCS_PAGE.read_text(encoding="utf-8")
    shown = page.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip()
    assert shown == settings_table(), f"replace the table with:\n{settings_table()}"
