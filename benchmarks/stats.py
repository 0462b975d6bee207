"""The few statistics the report uses: medians, over rounds, of values and of paired ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values, so a missing figure shows instead of failing the run."""
    return statistics.median(values) if values else float("nan")


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round-by-round ratios: each round's contenders met the same machine conditions."""
    return [a / b for a, b in zip(numerators, denominators, strict=True) if b > 0]


def paired_differences(minuends: Sequence[float], subtrahends: Sequence[float]) -> list[float]:
    """Round-by-round differences (a layer's marginal cost: with it, less without it)."""
    return [a - b for a, b in zip(minuends, subtrahends, strict=True)]
