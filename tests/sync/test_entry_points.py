"""How crisp-sync is started: its console script's ``main`` also runs as
``python -m crisp_api.sync``, and both say their version."""

from __future__ import annotations

import configparser
import io
import os
import subprocess
import sys
from pathlib import Path

from crisp_api import __version__
from crisp_api.sync.logs import configure

ROOT = Path(__file__).resolve().parents[2]


def test_python_m_crisp_api_sync_is_crisp_sync_and_says_its_version() -> None:
    done = subprocess.run([sys.executable, "-m", "crisp_api.sync", "--version"],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"crisp-sync {__version__}"


def test_the_license_is_a_file_the_distributions_carry() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license_files"].split() == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


def test_a_run_sets_the_collector_for_a_sync(tmp_path: Path) -> None:
    """The CLI's process is its own: a run freezes what its imports made and collects the
    youngest objects every `YOUNG_OBJECTS` allocations, not Python's 700 (a listing page
    would be walked mid-parse); the library alone leaves the collector as it is."""
    program = (
        "import gc, sys\n"
        "from crisp_api.sync.cli import main, YOUNG_OBJECTS\n"
        "before = gc.get_threshold(), gc.get_freeze_count()\n"
        "status = main(['--status', '--db', sys.argv[1]])\n"
        "print(before[0][0], before[1], status, gc.get_threshold()[0] == YOUNG_OBJECTS,"
        " gc.get_freeze_count() > 10_000)\n"
    )
    done = subprocess.run([sys.executable, "-c", program, str(tmp_path / "none.sqlite3")],
                          capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["700", "0", "2", "True", "True"], done.stderr


def test_the_cli_imports_structlog_without_its_console_extras(tmp_path: Path) -> None:
    """structlog imports rich, colorama and better_exceptions when installed (rich alone is
    a fifth of a worker's start-up); crisp-sync never uses them, so its process imports
    structlog without them, and they stay importable for what else runs there (dlt).
    Stand-ins on the path take the place of the real ones, installed or not."""
    for name in ("rich", "colorama", "better_exceptions"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"STAND_IN = {name!r}\n")
    program = (
        "import sys\n"
        "import crisp_api.sync.cli\n"
        "import structlog.dev\n"
        "print(sorted(n for n in ('rich', 'colorama', 'better_exceptions')"
        " if n in sys.modules), structlog.dev.rich is None)\n"
        "import rich\n"
        "print(rich.STAND_IN)\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT, env=environment)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[] True", "rich"], done.stderr


def test_console_logs_show_a_plain_traceback_whatever_is_installed() -> None:
    """The console format renders an exception as Python does, the same on every machine
    (structlog's default is rich's boxed traceback where rich is installed)."""
    stream = io.StringIO()
    logger = configure("info", "console", stream)
    try:
        try:
            raise ValueError("the cause")
        except ValueError:
            logger.exception("sync.failed")
    finally:
        configure("warning", "console")
    lines = stream.getvalue().splitlines()
    assert "sync.failed" in lines[0]
    assert "Traceback (most recent call last):" in lines
    assert lines[-1] == "ValueError: the cause"
    assert not any("│" in line or "╭" in line for line in lines)
