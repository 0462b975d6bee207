"""The official ``crisp-api`` and ``crisp-api-next`` in one folder: importing either way round
fails with one line saying what happened and the fix.

Simulated on a copy of the package in a temporary folder (a real install of both takes a
network and a minute): the official distribution is its metadata (``METADATA`` and a
``RECORD`` naming ``crisp_api/__init__.py``) next to our package, and, when it was installed
last, a stand-in ``__init__.py`` whose digest that ``RECORD`` holds, as pip leaves it."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crisp_api.installation import FIX

ROOT = Path(__file__).resolve().parent.parent.parent
STAND_IN = '"""A stand-in for the official package (a test)."""\n\n\nclass Crisp:\n    pass\n'


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder holding copies of our packages, as a site-packages would."""
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("crisp_api", "middleware"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    return tmp_path


def _install_official_metadata(site: Path, init: bytes) -> None:
    info = site / "crisp_api-1.1.23.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crisp-api\nVersion: 1.1.23\n")
    (info / "RECORD").write_text(
        f"crisp_api/__init__.py,{_record_hash(init)},{len(init)}\n"
        "crisp_api-1.1.23.dist-info/RECORD,,\n")


def _run(site: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *arguments], cwd=site, env=environ, text=True,
                          capture_output=True, timeout=60, check=False)


def _one_line(failed: subprocess.CompletedProcess[str]) -> str:
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    assert line.startswith("crisp_api: ")
    assert line.endswith(f"; fix: {FIX}")
    return line.removeprefix("crisp_api: ")


def test_alone_it_imports_and_runs(site: Path) -> None:
    ran = _run(site, "-m", "crisp_api.sync", "--version")
    assert ran.returncode == 0, ran.stderr
    assert "2." in ran.stdout


def test_ours_installed_over_the_official_package_fails_at_import(site: Path) -> None:
    _install_official_metadata(site, STAND_IN.encode())
    for arguments in (("-c", "import crisp_api"), ("-m", "crisp_api.sync", "--version")):
        line = _one_line(_run(site, *arguments))
        assert line.startswith("'crisp-api-next' and the official 'crisp-api' 1.1.23 share the "
                               "package folder crisp_api")
        assert str(site) in line


def test_the_official_package_installed_over_ours_fails_in_our_entry_points(
    site: Path,
) -> None:
    (site / "crisp_api" / "__init__.py").write_text(STAND_IN)
    _install_official_metadata(site, STAND_IN.encode())
    for arguments in (("-m", "crisp_api.sync", "--version"), ("-c", "import crisp_api.client"),
                      ("-c", "import crisp_api.testing")):
        line = _one_line(_run(site, *arguments))
        assert line.startswith("the official 'crisp-api' 1.1.23 was installed over "
                               "'crisp-api-next' and replaced crisp_api/__init__.py")
