"""crisp-sync's settings (parsed once, frozen, no credential shown) and its table of endings
(every exception that ends a run has its exit status and one line)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crisp_api.errors import ForbiddenError, NetworkError, NotFoundError, UnauthorizedError
from crisp_api.events import EventsUnauthorizedError
from crisp_api.sync.cli import build_parser
from crisp_api.sync.config import read_config
from crisp_api.sync.exits import LeaseLostError, UsageError, ended
from crisp_api.sync.settings import SyncSettings
from crisp_api.sync.store import StoreError, WebsiteLockedError

CREDENTIALS = {"CRISP_IDENTIFIER": "an-identifier", "CRISP_KEY": "a-secret-key"}


def test_settings_are_read_once_from_arguments_and_environment() -> None:
    environment = {**CREDENTIALS, "CRISP_SYNC_DB": "env.sqlite3", "CRISP_DAILY_QUOTA": "5,000",
                   "CRISP_REST_HOST": "http://127.0.0.1:9"}
    config = read_config(build_parser(), ["--all-websites", "--shard", "2/3", "--workers", "4"],
                         environment)
    before = dict(vars(config.args))
    settings = SyncSettings.parse(config)
    assert vars(config.args) == before  # the arguments are read, never changed
    assert (settings.db, settings.daily_quota, settings.shard) == ("env.sqlite3", 5000, (2, 3))
    assert settings.target is not None
    assert settings.target.rest_host == "http://127.0.0.1:9"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.workers = 8  # type: ignore[misc]


def test_no_credential_is_shown_by_the_settings() -> None:
    config = read_config(build_parser(), [
        "--website-id", "w", "--db", "postgresql://crisp:db-password@127.0.0.1/crisp",
        "--redis-url", "redis://:redis-password@127.0.0.1",
    ], {**CREDENTIALS, "CRISP_HOOKS_SECRET": "hooks-secret"})
    shown = repr(SyncSettings.parse(config)) + repr(config)
    for secret in ("db-password", "redis-password", "a-secret-key", "hooks-secret"):
        assert secret not in shown


def test_usage_errors_name_the_flag() -> None:
    for argv, environment, named in (
        (["--website-id", "w", "--all-websites"], CREDENTIALS, "--website-id and --all-websites"),
        (["--website-id", "w"], {**CREDENTIALS, "CRISP_DAILY_QUOTA": "many"}, "CRISP_DAILY_QUOTA"),
        (["--website-id", "w", "--lease-ttl", "60"], CREDENTIALS, "--lease-ttl"),
        (["--website-id", "w"], {}, "CRISP_IDENTIFIER"),
        (["--demo", "--db", "postgresql://127.0.0.1/crisp"], {}, "--demo"),
        (["--website-id", "w", "--follow", "--hooks-port", "8080"], CREDENTIALS,
         "CRISP_HOOKS_SECRET"),
    ):
        with pytest.raises(UsageError, match=named):
            SyncSettings.parse(read_config(build_parser(), argv, environment))


@pytest.mark.parametrize(("error", "status", "line"), [
    (UsageError("give --website-id"), 2, "give --website-id"),
    (WebsiteLockedError("w", "pid 1"), 6, "not starting a second one"),
    (LeaseLostError(["w"]), 1, "lost the lease of 1 website(s) (w)"),
    (StoreError("disk full", permanent=True), 5, "cannot write the database: disk full"),
    (StoreError("locked", permanent=False), 1, "the database failed: locked; rerun"),
    (EventsUnauthorizedError("unauthorized"), 3, "the event socket refused the credentials"),
    (UnauthorizedError("invalid_session", status=401), 3, "bad credentials or not allowed"),
    (ForbiddenError("not_allowed", status=403), 3, "bad credentials or not allowed"),
    (NotFoundError("website_not_found", status=404), 2, "check the website id"),
    (NetworkError("connection refused"), 4, "cannot reach the API"),
    (ValueError("odd"), 1, "sync failed (ValueError: odd); rerun to finish"),
])
def test_each_ending_has_its_exit_status_and_one_line(
    error: Exception, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ended(error) == status
    said = capsys.readouterr().err
    assert said.count("\n") == 1
    assert said.startswith("crisp-sync: ")
    assert line in said


def test_a_service_refused_for_its_hooks_secret_leaves_no_database(tmp_path: Path) -> None:
    """The missing web hooks secret is refused before the database is opened (it was
    refused after, leaving a new empty file behind)."""
    db = tmp_path / "never.sqlite3"
    environment = {**os.environ, **CREDENTIALS, "CRISP_REST_HOST": "http://127.0.0.1:9"}
    environment.pop("CRISP_HOOKS_SECRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "crisp_api.sync.cli", "--db", str(db), "--website-id", "w",
         "--follow", "--hooks-port", "8080"],
        capture_output=True, text=True, timeout=60, env=environment,
    )
    assert done.returncode == 2, done.stderr
    assert "CRISP_HOOKS_SECRET" in done.stderr
    assert not db.exists()
