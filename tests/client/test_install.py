"""The README's install lines install this project (crisp-api-next), extras included."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _install_lines() -> list[list[str]]:
    """The ``pip install`` commands of the README's Install section, as argument lists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return [shlex.split(line.partition("#")[0]) for line in block.group(1).splitlines()
            if line.startswith("pip install")]


@pytest.mark.timeout(900)
def test_the_readme_install_lines_install_this_project_in_a_fresh_venv(tmp_path: Path) -> None:
    lines = _install_lines()
    assert len(lines) >= 5
    checkout = tmp_path / "checkout"  # a copy, so that building leaves nothing in the tree
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    for line in lines:
        done = subprocess.run([python, "-m", *line, "--quiet", "--disable-pip-version-check"],
                              cwd=checkout, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (line, done.stderr[-2000:])
    check = ("import importlib.metadata as m, crisp_api, psycopg, psycopg_pool, redis, tqdm, "
             "socketio, prometheus_client; print(m.version('crisp-api-next'), "
             "crisp_api.__version__)")
    shown = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    installed, imported = shown.stdout.split()
    assert installed == imported
    helped = subprocess.run([str(venv / "bin" / "crisp-sync"), "--help"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert helped.returncode == 0
    assert "CRISP_SYNC_DB" in helped.stdout
