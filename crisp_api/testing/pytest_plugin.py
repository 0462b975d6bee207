"""pytest fixtures serving a fake Crisp.

Register with ``pytest_plugins = ["crisp_api.testing.pytest_plugin"]`` in a top-level
``conftest.py``.

- ``fake_crisp``: a small `FakeCrisp` (50 conversations, about 30 messages each, seed 1, no
  faults), new for each test.
- ``fake_crisp_factory``: call it with `FakeCrisp`'s arguments to start more (or differently
  configured) fakes; all are stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crisp_api.testing.fake import FakeCrisp

FakeCrispFactory = Callable[..., FakeCrisp]


@pytest.fixture
def fake_crisp_factory() -> Iterator[FakeCrispFactory]:
    """Starts `FakeCrisp` servers on demand and stops them all at teardown."""
    started: list[FakeCrisp] = []

    def start(**kwargs: Any) -> FakeCrisp:
        fake = FakeCrisp(**kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def fake_crisp(fake_crisp_factory: FakeCrispFactory) -> FakeCrisp:
    """A running fake Crisp with 50 conversations (seed 1)."""
    return fake_crisp_factory(conversations=50, messages=30, seed=1)
