"""The version and the changelog agree (docs/development.md, Releases)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.version import Version

from crisp_api import __version__

CHANGELOG = Path(__file__).resolve().parents[1] / "CHANGELOG.md"


def released() -> list[str]:
    """The versions of the changelog's release headings, newest first."""
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$",
                      CHANGELOG.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_the_changelog_starts_with_unreleased_then_dated_releases() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[0] == "[Unreleased]"
    assert len(headings) == 1 + len(released())  # every other heading a dated release


def test_the_version_is_the_newest_release_or_a_development_of_the_next() -> None:
    version, newest = Version(__version__), Version(released()[0])
    if version.is_devrelease:
        assert version > newest
    else:
        assert version == newest
