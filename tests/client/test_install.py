"""The README's install lines install this project (crisp-api-next), from the wheel that
``python -m build`` makes (with its sdist, both carrying the LICENSE and the ``py.typed``
markers): first alone, where ``crisp-sync --demo`` runs and a flag whose extra is missing is
refused in one line, then with every extra."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from crisp_api.extras import MODULES

ROOT = Path(__file__).resolve().parents[2]


def _install_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]


def _install_lines() -> list[list[str]]:
    """The ``pip install`` commands of the README's Install section, as argument lists."""
    block = re.search(r"```bash\n(.*?)```", _install_section(), re.DOTALL)
    assert block is not None
    return [shlex.split(line.partition("#")[0]) for line in block.group(1).splitlines()
            if line.startswith("pip install")]


def test_the_readme_install_section_names_every_extra() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = set(config["options.extras_require"])
    named = {name for group in re.findall(r"\.\[([a-z_,]+)\]", _install_section())
             for name in group.split(",")}
    assert extras <= named, f"extras missing from the README's Install section: {extras - named}"
    assert set(MODULES) <= extras  # what crisp-sync checks before any work is a real extra


@pytest.mark.timeout(900)
def test_the_readme_install_lines_install_the_built_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    lines = _install_lines()
    assert len(lines) >= 5
    assert lines[0] == ["pip", "install", "."]  # the plain install comes first
    wheel = _build(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    # The venv's own packages only: not the checkout that runs the tests.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}

    def install(line: list[str]) -> None:
        """A README line, with the wheel in place of the checkout (``.`` or ``.[extras]``)."""
        args = [str(wheel) + arg[1:] if arg.startswith(".") else arg for arg in line]
        done = subprocess.run([python, "-m", *args, "--quiet", "--disable-pip-version-check"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, (line, done.stderr[-2000:])

    install(lines[0])
    _check_plain_install(venv, tmp_path, env)
    # The other lines in one pip run (each line's arguments, the wheel in place of `.`): one
    # resolution instead of one per line, which cost about half of this test's time.
    assert all(line[:2] == ["pip", "install"] for line in lines[1:])
    install(["pip", "install", *(arg for line in lines[1:] for arg in line[2:])])
    check = ("import importlib.metadata as m, crisp_api, psycopg, psycopg_pool, redis, tqdm, "
             "socketio, aiohttp, prometheus_client; print(m.version('crisp-api-next'), "
             "crisp_api.__version__, "
             "any(p.name == 'LICENSE' for p in m.files('crisp-api-next') or ()))")
    shown = subprocess.run([python, "-c", check], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    installed, imported, licensed = shown.stdout.split()
    assert installed == imported
    assert licensed == "True"  # the installed distribution carries the LICENSE file
    helped = subprocess.run([str(venv / "bin" / "crisp-sync"), "--help"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env=env)
    assert helped.returncode == 0
    assert "CRISP_SYNC_DB" in helped.stdout


def _build(tmp_path: Path) -> Path:
    """``python -m build`` on a copy of the tracked files (building leaves nothing in the
    tree): an sdist, and a wheel built from it. Both must carry the LICENSE and the typed
    markers of both packages. Returns the wheel."""
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(checkout)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("crisp_api_next-*-py3-none-any.whl")
    (sdist,) = dist.glob("crisp_api_next-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    assert {"crisp_api/py.typed", "middleware/py.typed"} <= in_wheel
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in in_wheel), in_wheel
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "crisp_api/py.typed", "middleware/py.typed"} <= in_sdist
    return wheel


def _check_plain_install(venv: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """Without any extra: everything imports, the demo runs, and each flag whose extra is
    missing is refused before any work, in one line naming the extra."""
    imports = ("import crisp_api, crisp_api.sync, crisp_api.sync.cli, crisp_api.webhooks, "
               "crisp_api.testing, importlib.util as u; "
               "assert not any(u.find_spec(m) for m in ('socketio', 'aiohttp', 'psycopg', "
               "'redis', 'prometheus_client', 'tqdm'))")
    imported = subprocess.run([str(venv / "bin" / "python"), "-c", imports], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr
    crisp_sync = str(venv / "bin" / "crisp-sync")
    demo = subprocess.run([crisp_sync, "--demo"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "Traceback" not in demo.stderr
    assert demo.stdout.count("website(s) complete") == 2
    credentials = {**env, "CRISP_IDENTIFIER": "id", "CRISP_KEY": "key",
                   "CRISP_REST_HOST": "http://127.0.0.1:9"}  # never reached
    for flags, named, extra in (
        (["--follow", "--metrics-port", "9999"], "--metrics-port", "metrics"),
        (["--db", "postgresql://crisp@127.0.0.1:9/crisp"], "a PostgreSQL --db", "postgres"),
        (["--redis-url", "redis://127.0.0.1:9"], "--redis-url", "redis"),
    ):
        refused = subprocess.run([crisp_sync, "--website-id", "w", *flags], capture_output=True,
                                 text=True, timeout=60, cwd=tmp_path, env=credentials)
        assert refused.returncode == 2, (flags, refused.stderr)
        assert refused.stderr == (f"crisp-sync: {named} needs the '{extra}' extra: "
                                  f"pip install 'crisp-api-next[{extra}]'\n")
    # --follow needs no extra: without 'events' it is not refused (it runs without live
    # events), and SIGTERM stops it as a service (0), unless it gave up on the unreachable
    # API first (4).
    follow = subprocess.Popen([crisp_sync, "--website-id", "w", "--follow"], cwd=tmp_path,
                              env=credentials, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    time.sleep(1.0)
    follow.send_signal(signal.SIGTERM)
    _, errors = follow.communicate(timeout=60)
    assert follow.returncode in (0, 4), errors
    assert "extra" not in errors
    assert "Traceback" not in errors
