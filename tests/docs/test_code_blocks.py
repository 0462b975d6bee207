"""Every ```python block of README.md and docs/**/*.md runs as written (issue 24: none of
the README's 8 blocks did).

The blocks of one page run top to bottom in one namespace, one test per page, after the
prelude that docs/testing.md documents ("The documentation's code blocks"): a running
`FakeCrisp` (20 conversations), the environment `Crisp.from_env` reads pointed at it
(``CRISP_IDENTIFIER``, ``CRISP_KEY``, ``CRISP_TIER=plugin``, ``CRISP_REST_HOST``; every other
``CRISP_*`` variable unset, all restored afterwards), a fresh temporary working directory, and
the names ``website_id`` and ``session_id`` (a conversation of the fake with a few messages).
A failure names the page and the line of the failing block's fence, and the traceback points
into the Markdown file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crisp_api import Crisp, EventStream
from crisp_api.testing import FakeCrisp
from tests.docs import code_blocks
from tests.docs.code_blocks import ROOT, PageError, blocks, pages, parse

pytestmark = pytest.mark.docs

WITH_PYTHON = [page for page in pages() if "```python" in page.read_text(encoding="utf-8")]


@pytest.fixture
def prelude(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The namespace a page's blocks start from, with the fake and the environment around
    it; closes the clients and event streams the blocks leave open."""
    with FakeCrisp(conversations=20, messages=5, seed=1) as fake:
        for name in [name for name in os.environ if name.startswith("CRISP_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("CRISP_IDENTIFIER", fake.identifier)
        monkeypatch.setenv("CRISP_KEY", fake.key)
        monkeypatch.setenv("CRISP_TIER", "plugin")
        monkeypatch.setenv("CRISP_REST_HOST", fake.url)
        monkeypatch.chdir(tmp_path)
        session_id = fake.conversations()[0]["session_id"]
        fake.add_messages(session_id, 3, content="Hello from the docs")
        namespace: dict[str, Any] = {"__name__": "__main__", "website_id": fake.website_id,
                                     "session_id": session_id}
        try:
            yield namespace
        finally:
            for value in list(namespace.values()):
                if isinstance(value, Crisp | EventStream):
                    value.close()


@pytest.mark.parametrize("page", WITH_PYTHON, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_python_blocks_of_a_page_run(page: Path, prelude: dict[str, Any]) -> None:
    for block in blocks(page):
        if block.language != "python":
            continue
        if not block.runs:
            code_blocks.TALLY["skipped"] += 1
            continue
        code_blocks.run(block, prelude)
        code_blocks.TALLY["run"] += 1


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_no_run_marker_gives_its_reason_above_a_python_block(page: Path) -> None:
    blocks(page)  # PageError names the page and line of a bad marker


def test_a_marker_without_a_reason_or_out_of_place_is_refused() -> None:
    page = ROOT / "docs" / "example.md"
    good = "<!-- no-run: needs a real Crisp -->\n```python\nraise SystemExit\n```\n"
    assert [block.no_run for block in parse(good, page)] == ["needs a real Crisp"]
    assert [block.runs for block in parse(good.replace("<!-- no-run: needs a real Crisp -->\n",
                                                       ""), page)] == [True]
    for bad, said in (
        ("<!-- no-run -->\n```python\npass\n```\n", "must give its reason"),
        ("<!-- no-run:   -->\n```python\npass\n```\n", "must give its reason"),
        ("<!-- no-run: a reason -->\n\n```python\npass\n```\n", "right above"),
        ("<!-- no-run: a reason -->\n```console\n$ ls\n```\n", "above a console block"),
        ("```python\npass\n", "never closed"),
    ):
        with pytest.raises(PageError, match=said):
            parse(bad, page)


def test_a_failing_block_names_its_page_and_line_and_its_traceback_points_there(
        tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n```python\nx = 1\n```\n\n```python\ny = x + 1\nz = y / 0\n```\n",
                    encoding="utf-8")
    namespace: dict[str, Any] = {}
    first, second = blocks(page)
    code_blocks.run(first, namespace)
    with pytest.raises(code_blocks.BlockFailedError) as failed:
        code_blocks.run(second, namespace)
    assert f"{page}:7: the python block starting at line 7 failed: ZeroDivisionError" in str(
        failed.value)
    cause = failed.value.__cause__
    assert isinstance(cause, ZeroDivisionError)
    assert cause.__traceback__ is not None
    innermost = cause.__traceback__
    while innermost.tb_next is not None:
        innermost = innermost.tb_next
    assert (innermost.tb_frame.f_code.co_filename, innermost.tb_lineno) == (str(page), 9)
    assert namespace["y"] == 2  # the page's blocks share one namespace


def test_other_names_of_python_are_refused() -> None:
    with pytest.raises(PageError, match="write ```python, not ```py"):
        parse("```py\nprint(1)\n```\n", ROOT / "docs" / "example.md")


def test_blocks_are_found_with_their_line_language_and_text() -> None:
    text = "# Page\n\n```python\nx = 1\n```\n\n- item:\n\n    ```console\n    $ ls\n    ```\n"
    found = parse(text, ROOT / "docs" / "example.md")
    assert [(block.line, block.language, block.code) for block in found] == [
        (3, "python", "x = 1\n"), (9, "console", "$ ls\n")]
