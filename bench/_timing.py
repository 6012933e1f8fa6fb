"""Shared by the bench scripts: the median (and worst) of repeated timings, and percentiles."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) seconds of `repeat` calls."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), max(samples)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated between the samples (one sample is its own percentile)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
