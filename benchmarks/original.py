"""The original client, crisp-api 1.1.23 from PyPI, as a contender of the CPU section.

Its import name is ``crisp_api`` too, so it lives in its own virtual environment
(``benchmarks/.venv-original/``, made on first use) and runs in its own process
(`benchmarks.original_worker`); the harness sends it batches in the same interleaved rounds
as the in-process contenders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from benchmarks.contenders import Batch, Target

VERSION = "1.1.23"
NAME = f"crisp-api {VERSION} (original, requests)"
HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-original"
WORKER = HERE / "original_worker.py"


def ensure_venv(venv: Path = VENV) -> Path:
    """The Python of a virtual environment holding the original client, made if needed."""
    python = venv / "bin" / "python"
    if not _holds_original(python):
        print(f"benchmarks: installing crisp-api=={VERSION} into {venv}", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 f"crisp-api=={VERSION}"],
                check=True,
            )
        except subprocess.CalledProcessError as failure:
            raise RuntimeError(
                f"could not install crisp-api=={VERSION} into {venv} ({failure}); "
                "--no-original leaves the original client out"
            ) from None
    return python


def _holds_original(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-I", "-c",
         "import importlib.metadata as m; print(m.version('crisp-api'))"],
        capture_output=True, text=True, check=False,
    )
    return probe.stdout.strip() == VERSION


class OriginalClient:
    """A contender whose requests are sent by the original client in its own process."""

    name = NAME

    def __init__(self, python: Path, target: Target) -> None:
        self._process = subprocess.Popen(
            [str(python), "-I", str(WORKER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._send({"url": target.url, "identifier": target.identifier, "key": target.key,
                    "website_id": target.website_id})
        self.versions: dict[str, str] = self._receive()

    def run(self, count: int) -> Batch:
        self._send({"count": count})
        answer = self._receive()
        return Batch(int(answer["count"]), float(answer["cpu"]), float(answer["wall"]))

    def close(self) -> None:
        stdin = self._process.stdin
        if stdin is not None:
            stdin.close()
        self._process.wait(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _send(self, message: dict[str, Any]) -> None:
        stdin = self._pipe(self._process.stdin)
        stdin.write(json.dumps(message) + "\n")
        stdin.flush()

    def _receive(self) -> dict[str, Any]:
        line = self._pipe(self._process.stdout).readline()
        if not line:
            raise RuntimeError(f"the original client's worker died (exit code "
                               f"{self._process.wait(timeout=30)})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    @staticmethod
    def _pipe(pipe: IO[str] | None) -> IO[str]:
        assert pipe is not None
        return pipe
