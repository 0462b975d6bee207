"""The fenced code blocks of the README and the docs site, as the docs harness runs them.

A page's ```` ```python ```` blocks run top to bottom in one namespace; any other language
(``console``, ``bash``, ``ini``, ``text``...) is shown, not run. A block whose fence is
directly preceded by the line ``<!-- no-run: <reason> -->`` is skipped, and the reason must
say why: a marker without one, or one that is not right above a Python block, is an error of
the page (`PageError`), so a skipped block is always a visible, explained choice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: README.md and docs/ are read from here."""

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)")
_MARKER = re.compile(r"^\s*<!--\s*no-run\b(?P<rest>.*?)-->\s*$")
_ANY_MARKER = re.compile(r"^\s*<!--\s*no-run\b")
_PYTHON_ALIASES = frozenset({"py", "python3", "py3"})
"""Other names of Python a fence could carry: refused, so that no block escapes the run."""


class PageError(ValueError):
    """A page whose blocks cannot be collected as written (a bad no-run marker, an unclosed
    fence); the message names the page and line."""


@dataclass(frozen=True)
class Block:
    """One fenced block: its page, the line of its opening fence (1-based), its language
    (the fence's info string, lower case, ``""`` when none), its text (dedented to the
    fence) and, for a block not to be run, the reason the page gives."""

    page: Path
    line: int
    language: str
    code: str
    no_run: str | None

    @property
    def runs(self) -> bool:
        """Whether the harness runs it: a Python block without a no-run marker."""
        return self.language == "python" and self.no_run is None


def pages() -> list[Path]:
    """README.md and every Markdown page of the docs site, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, in order."""
    return parse(page.read_text(encoding="utf-8"), page)


def parse(text: str, page: Path) -> list[Block]:
    """The fenced blocks of ``text`` (the content of ``page``); `PageError` for a no-run
    marker without a reason or not right above a Python fence, or an unclosed fence."""
    lines = text.splitlines()
    found: list[Block] = []
    markers_used: set[int] = set()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        language = opening["info"].lower()
        if language in _PYTHON_ALIASES:
            raise PageError(f"{_name(page)}:{index + 1}: write ```python, not ```{language} "
                            "(only ```python blocks run)")
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise PageError(f"{_name(page)}:{index + 1}: the fence opened here is never closed")
        body = "\n".join(line[indent:] if not line[:indent].strip() else line
                         for line in lines[index + 1:end])
        no_run = None
        if index > 0 and (marker := _MARKER.match(lines[index - 1])) is not None:
            no_run = _reason(marker["rest"], page, index)
            if language != "python":
                raise PageError(f"{_name(page)}:{index}: a no-run marker above a "
                                f"{language or 'plain'} block (only Python blocks run)")
            markers_used.add(index - 1)
        found.append(Block(page, index + 1, language, body + "\n", no_run))
        index = end + 1
    for number, line in enumerate(lines):
        if _ANY_MARKER.search(line) and number not in markers_used:
            raise PageError(f"{_name(page)}:{number + 1}: a no-run marker must be the line "
                            "right above a ```python fence, as <!-- no-run: <reason> -->")
    return found


def _reason(rest: str, page: Path, line: int) -> str:
    """The reason a marker gives after ``no-run:``; `PageError` when there is none."""
    reason = rest.strip()
    if not reason.startswith(":") or not reason[1:].strip():
        raise PageError(f"{_name(page)}:{line}: a no-run marker must give its reason: "
                        "<!-- no-run: <reason> -->")
    return reason[1:].strip()


def _name(page: Path) -> str:
    """The page as named in messages: relative to the checkout when it is in it."""
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def run(block: Block, namespace: dict[str, Any]) -> None:
    """Execute ``block`` in ``namespace``; `BlockFailedError` naming the page and the fence's
    line if it raises. Line numbers in its traceback are the Markdown file's own."""
    code = compile("\n" * block.line + block.code, str(block.page), "exec")
    try:
        exec(code, namespace)  # running the documentation is the point
    except Exception as exc:
        raise BlockFailedError(f"{_name(block.page)}:{block.line}: the python block starting at "
                               f"line {block.line} failed: {type(exc).__name__}: {exc}"
                               ) from exc


class BlockFailedError(AssertionError):
    """A documentation block raised; the message names the page and line, the cause is the
    block's own exception."""


TALLY = {"run": 0, "skipped": 0}
"""Python blocks run and skipped in this pytest session (its summary shows them)."""
