"""The service files of the repository: the systemd unit (deploy/crisp-sync.service) as
``systemd-analyze verify`` sees it, and the Dockerfile and compose.yaml, linted (no container
engine runs in the test suite). Each file's crisp-sync command line is read by crisp-sync's own
parser and settings, so a renamed flag or a broken combination shows here."""

from __future__ import annotations

import configparser
import importlib.util
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crisp_api.sync.cli import build_parser
from crisp_api.sync.config import read_config
from crisp_api.sync.exits import EXIT_AUTH, EXIT_LOCKED, EXIT_QUOTA, EXIT_STORE, EXIT_USAGE
from crisp_api.sync.settings import SyncSettings

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "crisp-sync.service"
INSTALLED = "/opt/crisp/bin/crisp-sync"
"""Where the unit expects crisp-sync (the venv its header tells to make)."""
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
CREDENTIALS = {"CRISP_IDENTIFIER": "id", "CRISP_KEY": "key"}


def _settings(argv: list[str], environ: dict[str, str]) -> SyncSettings:
    """crisp-sync's reading of a command line: an unknown flag exits 2 (argparse), a broken
    rule raises `UsageError`. Flags are taken whole (crisp-sync would take a prefix): a file
    spells each flag as its help does."""
    parser = build_parser()
    parser.allow_abbrev = False
    return SyncSettings.parse(read_config(parser, argv, environ))


# systemd -------------------------------------------------------------------------------------

def _unit() -> dict[str, list[tuple[str, str]]]:
    """The unit's sections: each a list of (key, value), continuation lines joined."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    text = UNIT.read_text(encoding="utf-8").replace("\\\n", " ")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def _verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on ``text`` with ExecStart's binary replaced by a stub: the
    verification refuses a unit whose binary does not exist, and /opt/crisp is not installed
    here. Its warnings (an unknown key, a value it ignores) go to stderr with status 0."""
    stub = tmp_path / "bin" / "crisp-sync"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    assert INSTALLED in text
    unit = tmp_path / "crisp-sync.service"  # verify wants the unit under its own name
    unit.write_text(text.replace(INSTALLED, str(stub)))
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    verified = _verify(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_a_warning_of_systemd_analyze_would_show(tmp_path: Path) -> None:
    """What the test above relies on: a misspelt key passes with status 0, but warns."""
    text = UNIT.read_text(encoding="utf-8").replace("\nRestart=", "\nRestartt=")
    verified = _verify(text, tmp_path)
    assert verified.returncode == 0
    assert "Unknown key 'Restartt'" in verified.stderr


def test_the_unit_waits_for_the_network_and_spares_the_statuses_that_need_a_person() -> None:
    unit = _unit()
    assert ("Wants", "network-online.target") in unit["Unit"]
    assert ("After", "network-online.target") in unit["Unit"]
    service = dict(unit["Service"])
    assert service["Restart"] == "on-failure"
    spared = {int(status) for status in service["RestartPreventExitStatus"].split()}
    assert spared == {EXIT_USAGE, EXIT_AUTH, EXIT_STORE, EXIT_LOCKED, EXIT_QUOTA}
    # systemd takes only whole lines as comments: "path  # note" would be the path.
    for key, value in (item for items in unit.values() for item in items):
        assert "#" not in value, key
    assert service["User"] != "root"


def test_the_units_command_line_is_one_crisp_sync_accepts() -> None:
    binary, *argv = shlex.split(dict(_unit()["Service"])["ExecStart"])
    assert binary == INSTALLED
    settings = _settings(argv, CREDENTIALS)
    assert settings.follow
    assert settings.metrics_port == 9108


# Dockerfile ----------------------------------------------------------------------------------

def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, arguments): comment lines dropped first (as
    Docker does, even inside a continued instruction), then continuation lines joined."""
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    joined = [line.strip() for line in text.replace("\\\n", " ").splitlines()]
    return [(keyword.upper(), rest.strip())
            for keyword, _, rest in (line.partition(" ") for line in joined if line)]


def test_the_dockerfile_pins_its_base_and_runs_as_a_user_with_a_health_check() -> None:
    instructions = _instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert "ADD" not in keywords  # COPY only: nothing fetched from a URL at build time
    (base,) = [rest for keyword, rest in instructions if keyword == "ARG"
               and rest.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=(docker\.io/library/)?python:3\.\d+\.\d+-slim-\w+"
                        r"(@sha256:[0-9a-f]{64})?", base)
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert stages
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages)
    final = keywords[len(keywords) - 1 - keywords[::-1].index("FROM"):]  # the last stage
    users = [rest for keyword, rest in instructions[-len(final):] if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    (check,) = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert "/healthz" in check
    assert '"python"' in check
    assert "curl" not in check  # a slim image has no curl
    port = re.search(r"127\.0\.0\.1:(\d+)/healthz", check)
    assert port is not None
    assert ("EXPOSE", port.group(1)) in instructions
    assert ("ENTRYPOINT", '["crisp-sync"]') in instructions


def test_the_dockerfile_copies_what_exists_and_installs_real_extras() -> None:
    instructions = _instructions()
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from="):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
    installed = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    match = re.search(r"wheel\}\[([a-z,]+)\]", installed)  # "${wheel}[extras]"
    assert match is not None
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = set(match.group(1).split(","))
    assert extras <= set(config["options.extras_require"])
    assert {"events", "metrics", "postgres", "redis"} <= extras  # follow mode in a fleet


# compose.yaml --------------------------------------------------------------------------------

def _compose() -> dict[str, Any]:
    """compose.yaml parsed, when a YAML parser is installed (PyYAML: not a dependency of
    this project); else the test is skipped and the structural test below still runs."""
    if importlib.util.find_spec("yaml") is None:
        pytest.skip("no YAML parser (PyYAML) installed")
    import yaml  # noqa: PLC0415 (optional)

    parsed = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(parsed, dict)
    return parsed


def _resolved(value: str) -> str:
    """A compose value with its ``${NAME:?...}`` interpolations given a stand-in."""
    return re.sub(r"\$\{(\w+)[^}]*\}", lambda match: f"<{match.group(1)}>", value)


def test_compose_runs_two_follow_workers_on_postgresql_and_redis() -> None:
    services = _compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("postgres", "redis"):
        assert re.search(r":\d+(\.\d+)+", services[name]["image"]), "pin the image's version"
        assert "healthcheck" in services[name]
    workers = {name: service for name, service in services.items()
               if "--follow" in service.get("command", ())}
    assert len(workers) == 2
    for name, worker in workers.items():
        assert worker["build"] == "."
        environment = {key: _resolved(str(value))
                       for key, value in worker["environment"].items()}
        assert environment["CRISP_SYNC_DB"].startswith("postgresql://")
        assert "@postgres:5432/" in environment["CRISP_SYNC_DB"]
        assert environment["CRISP_REDIS_URL"].startswith("redis://redis:6379")
        for needed in ("postgres", "redis"):
            assert worker["depends_on"][needed]["condition"] == "service_healthy", name
        settings = _settings(list(worker["command"]), environment)
        assert settings.all_websites
        assert settings.follow


def test_compose_yaml_has_the_expected_shape_without_a_parser() -> None:
    """What holds without PyYAML: top-level sections and services, in two-space indents."""
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    assert "\t" not in text
    top = set(re.findall(r"^([a-z][\w-]*):", text, re.MULTILINE))
    assert {"services", "volumes"} <= top
    section = text.split("\nservices:\n", 1)[1].split("\nvolumes:\n", 1)[0]
    services = re.findall(r"^  ([\w-]+):", section, re.MULTILINE)
    assert {"postgres", "redis"} <= set(services)
    assert len([name for name in services if name.startswith("worker")]) == 2


# docs/sync/deployment.md -----------------------------------------------------------------------

def test_the_deployment_page_shows_the_files_as_they_are() -> None:
    page = (ROOT / "docs" / "sync" / "deployment.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```(\w+)\n(.*?)^```$", page, re.MULTILINE | re.DOTALL)
    shown = {language: text for language, text in reversed(blocks)}  # the first of each
    assert shown["ini"] == UNIT.read_text(encoding="utf-8")
    assert shown["dockerfile"] == (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert shown["yaml"] == (ROOT / "compose.yaml").read_text(encoding="utf-8")
    # The readiness probe's command is Python that compiles (it was run against follow mode).
    (probe,) = re.findall(r'command: \["python", "-c", "(.*)"\]', page)
    compile(probe, "readinessProbe", "exec")
