"""How crisp-sync is started: its console script's ``main`` also runs as
``python -m crisp_api.sync``, and both say their version."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from crisp_api import __version__

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
