"""Benchmark statistics for P1.C3 / A.3 and the severity thresholds: honest ±tolerance verdicts.

"Back within ±2 %" is an equivalence statement: it holds only when the whole confidence
interval of the change lies inside the band. An interval that straddles a boundary proves
neither equivalence nor regression: `unverifiable`, with the smallest change these data could
detect and the number of repeated runs that would make the statement possible.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from runbook.errors import BadInputError

Verdict = Literal["within-tolerance", "regression", "improvement", "unverifiable", "missing"]
Z95 = 1.959964  # two-sided 95 %
Z_POWER = 0.841621  # 80 % power

UNITS_NS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "μs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*(ps|ns|µs|μs|us|ms|s)\s*$")


class BenchmarkInputError(BadInputError, ValueError):
    """A baseline or result that cannot be read; the message names the file, line and cell."""


def duration_ns(text: str) -> float:
    """'58.337 ns', '1.2 µs', '3 ms', '0.5 s' → nanoseconds."""
    match = DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text.strip()!r} is not a duration like '58.337 ns', '1.2 µs', '3 ms' or '0.5 s'")
    return float(match.group(1)) * UNITS_NS[match.group(2)]


@dataclass(frozen=True)
class Estimate:
    """A benchmark's mean time (ns) and the standard error of that mean (ns)."""

    mean: float
    standard_error: float


@dataclass(frozen=True)
class Comparison:
    id: str
    verdict: Verdict
    change_pct: float | None = None  # point estimate of (current / baseline - 1)
    low_pct: float | None = None  # 95 % confidence interval of the change
    high_pct: float | None = None
    severity: str = ""  # for a regression: "high" (> high %), "medium" (>= medium %), "below-threshold"
    detectable_pct: float | None = None  # smallest change these data detect (80 % power)
    runs_needed: int | None = None  # repeated runs for the interval to fit inside ±tolerance
    side: str = ""  # for missing: "baseline" or "current"

    def describe(self) -> str:
        if self.verdict == "missing":
            return f"{self.id}: missing in the {self.side}"
        text = f"{self.id}: {self.verdict} {self.change_pct:+.2f} % [{self.low_pct:+.2f}, {self.high_pct:+.2f}]"
        if self.severity:
            text += f" ({self.severity})"
        if self.verdict == "unverifiable":
            text += (f"; these data detect changes of ±{self.detectable_pct:.1f} % or more; "
                     f"about {self.runs_needed} repeated runs would settle ±tolerance")
        return text


def compare_one(id: str, base: Estimate, current: Estimate, tolerance_pct: float, medium_pct: float,
                high_pct: float) -> Comparison:
    ratio = current.mean / base.mean
    # delta method: relative standard error of a ratio of two independent means
    se = ratio * math.hypot(current.standard_error / current.mean, base.standard_error / base.mean)
    change = round((current.mean - base.mean) / base.mean * 100, 9)  # exactly 10 % stays 10 %, not 10.0000…1
    low, high = change - Z95 * se * 100, change + Z95 * se * 100
    tol = tolerance_pct
    common = dict(id=id, change_pct=change, low_pct=low, high_pct=high)
    if -tol <= low and high <= tol:
        return Comparison(verdict="within-tolerance", **common)
    if low > tol:
        severity = "high" if change > high_pct else "medium" if change >= medium_pct else "below-threshold"
        return Comparison(verdict="regression", severity=severity, **common)
    if high < -tol:
        return Comparison(verdict="improvement", **common)
    detectable = (Z95 + Z_POWER) * se * 100
    # The half-width shrinks with √n: n runs make Z95·se/√n fit between the estimate and the boundary
    # (inside the band to show equivalence, outside it to show the change).
    room = abs(tol - abs(change))
    runs = math.ceil((Z95 * se * 100 / room) ** 2) if room > 0 else None
    return Comparison(verdict="unverifiable", detectable_pct=detectable, runs_needed=runs, **common)


def compare(baseline: dict[str, Estimate], current: dict[str, Estimate], tolerance_pct: float = 2.0,
            medium_pct: float = 5.0, high_pct: float = 10.0) -> list[Comparison]:
    results = []
    for id in sorted(set(baseline) | set(current)):
        if id not in current:
            results.append(Comparison(id=id, verdict="missing", side="current"))
        elif id not in baseline:
            results.append(Comparison(id=id, verdict="missing", side="baseline"))
        else:
            results.append(compare_one(id, baseline[id], current[id], tolerance_pct, medium_pct, high_pct))
    return results


def parse_markdown_baseline(text: str, source: str, samples: int = 100) -> dict[str, Estimate]:
    """The runbook's `| Benchmark | Mean | Std Dev |` table. Std Dev is the samples' spread, so the
    standard error of the mean is Std Dev / √samples (criterion's default sample count is 100)."""
    estimates, header = {}, None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            lowered = [c.lower() for c in cells]
            if "benchmark" in lowered and "mean" in lowered:
                header = {name: lowered.index(name) for name in ("benchmark", "mean", "std dev") if name in lowered}
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        try:
            name = cells[header["benchmark"]]
            mean = duration_ns(cells[header["mean"]])
            spread = duration_ns(cells[header["std dev"]]) if "std dev" in header else 0.0
        except (ValueError, IndexError) as exc:
            column = "the row" if isinstance(exc, IndexError) else next(
                (c for c in cells[1:] if not DURATION_RE.match(c)), "a cell")
            raise BenchmarkInputError(f"{source}:{number}: cannot read {column!r}: {exc}") from None
        if mean <= 0:
            raise BenchmarkInputError(f"{source}:{number}: a mean of {cells[header['mean']]!r} cannot be a benchmark's time")
        estimates[name] = Estimate(mean, spread / math.sqrt(samples))
    if header is None:
        raise BenchmarkInputError(f"{source}: no '| Benchmark | Mean | Std Dev |' table found")
    return estimates
