"""Reports how many documentation blocks ran and how many a no-run marker skipped."""

from __future__ import annotations

import pytest

from tests.docs import code_blocks


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = code_blocks.TALLY
    if tally["run"] or tally["skipped"]:
        terminalreporter.write_line(f"documentation python blocks: {tally['run']} run, "
                                    f"{tally['skipped']} skipped (no-run markers)")
