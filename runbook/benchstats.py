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

from actor_rollback.runbook.errors import BadInputError

Verdict = Literal["within-tolerance", "regression", "improvement", "unverifiable", "missing", "undecided"]
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


def checked_estimate(where: str, mean: float, standard_error: float) -> Estimate:
    """A benchmark's time as read from `where` (a file, a file and line): a mean of 0 or less, or a non-finite
    number, is not a measurement — refused, naming where it was read."""
    if not (0 < mean < math.inf):
        raise BenchmarkInputError(f"{where}: a mean of {mean!r} ns cannot be a benchmark's time (a positive, finite "
                                  "number of nanoseconds); is this file a benchmark result?")
    if not (0 <= standard_error < math.inf):
        raise BenchmarkInputError(f"{where}: a standard error of {standard_error!r} ns must be a finite number, 0 or "
                                  "more")
    return Estimate(mean, standard_error)


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
    rounds: int | None = None  # paired rounds the verdict rests on (the sequential step)
    why: str = ""  # for unverifiable: what kept it undecided, when it is not the sample size (instruction counts)

    def describe(self) -> str:
        if self.verdict == "missing":
            return f"{self.id}: missing in the {self.side}"
        text = f"{self.id}: {self.verdict} {self.change_pct:+.2f} % [{self.low_pct:+.2f}, {self.high_pct:+.2f}]"
        if self.severity:
            text += f" ({self.severity})"
        if self.rounds:
            text += f" after {self.rounds} rounds"
        if self.verdict == "unverifiable" and self.why:
            text += f"; {self.why}"
        elif self.verdict == "unverifiable":
            if self.detectable_pct is not None:
                text += f"; these data detect changes of ±{self.detectable_pct:.1f} % or more"
            text += f"; about {self.runs_needed or '?'} repeated runs would settle ±tolerance"
        return text


def decide_interval(common: dict, tolerance_pct: float, medium_pct: float, high_pct: float) -> Comparison | None:
    """The interval `common` carries, against ±tolerance: inside → within-tolerance; above → a regression graded by
    the severity thresholds; below → an improvement; across a boundary → None (nothing shown yet)."""
    low, high, change, tol = common["low_pct"], common["high_pct"], common["change_pct"], tolerance_pct
    if -tol <= low and high <= tol:
        return Comparison(verdict="within-tolerance", **common)
    if low > tol:
        severity = "high" if change > high_pct else "medium" if change >= medium_pct else "below-threshold"
        return Comparison(verdict="regression", severity=severity, **common)
    if high < -tol:
        return Comparison(verdict="improvement", **common)
    return None


def compare_one(id: str, base: Estimate, current: Estimate, tolerance_pct: float, medium_pct: float,
                high_pct: float) -> Comparison:
    ratio = current.mean / base.mean
    # delta method: relative standard error of a ratio of two independent means
    se = ratio * math.hypot(current.standard_error / current.mean, base.standard_error / base.mean)
    change = round((current.mean - base.mean) / base.mean * 100, 9)  # exactly 10 % stays 10 %, not 10.0000…1
    low, high = change - Z95 * se * 100, change + Z95 * se * 100
    tol = tolerance_pct
    common = dict(id=id, change_pct=change, low_pct=low, high_pct=high)
    decided = decide_interval(common, tol, medium_pct, high_pct)
    if decided is not None:
        return decided
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


# ---------------------------------------------------------------- the sequential verdict (P1.C3 with rounds)
#
# Each round measures the baseline and the current tree back to back (alternating which goes first), so a
# round gives one paired change per benchmark: d = 100·ln(current / baseline). The machine's drift between
# rounds shows up as the spread of these d's, so it counts fully. This machine's d's are heavy-tailed (a
# neighbour's burst moves one side by 10–80 %), so the interval is the distribution-free one for the median
# of d: the sign test's order statistics, exact for any continuous distribution of independent rounds.
#
# Looking again and again would inflate the error rate; each look j = 1, 2, … (see look_rounds) spends
# ALPHA / (j·(j+1)) — a sum that never exceeds ALPHA however many looks are taken (alpha spending with a
# Bonferroni bound over looks). So a verdict, taken at whatever look it is reached, is wrong with a
# probability of at most ALPHA per benchmark.

ALPHA = 0.05
FIRST_LOOK = 8  # the fewest paired rounds worth a first look (7 is the least whose interval exists at its alpha)
GROWTH = 1.25  # each look after 25 % more rounds than the last


def look_alpha(look: int, alpha: float = ALPHA) -> float:
    """The error rate the `look`-th look (1-based) may spend; the sum over every look is `alpha`."""
    return alpha / (look * (look + 1))


def look_rounds(first: int, look: int) -> int:
    """The number of paired rounds at which the `look`-th look is taken, fixed in advance (never chosen from the
    data): `first`, then 25 % more each time (8, 10, 12, 15, 19, 24, 30, …). Looking after every round would spend
    alpha on looks that can change little; measured on this machine's rounds (docs/PERFORMANCE.md), this
    schedule reached verdicts in fewer rounds than looking every round or every 50 % more."""
    n = first
    for _ in range(look - 1):
        n = max(n + 1, round(n * GROWTH))
    return n


def median_interval(changes: list[float], alpha: float) -> tuple[float, float] | None:
    """The distribution-free 1 − alpha confidence interval of the median of `changes`: [d₍ₖ₎, d₍ₙ₊₁₋ₖ₎] with
    the largest k whose two tails under Binomial(n, ½) hold at most alpha; None when n is too small."""
    ordered, n = sorted(changes), len(changes)
    k, tail = 0, 0.0
    while k < n // 2:
        tail_next = tail + math.comb(n, k) / 2 ** n
        if 2 * tail_next > alpha:
            break
        k, tail = k + 1, tail_next
    if k == 0:
        return None
    return ordered[k - 1], ordered[n - k]


def median(values: list[float]) -> float:
    ordered, n = sorted(values), len(values)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


@dataclass(frozen=True)
class PairedChanges:
    """One benchmark's paired per-round changes (percent, log-ratio) and the baseline's own uncertainty
    (percent, 0 for a baseline benched in the same run)."""

    id: str
    changes: tuple[float, ...]
    baseline_error_pct: float = 0.0


def judge_paired(series: PairedChanges, look: int, tolerance_pct: float, medium_pct: float, high_pct: float,
                 final: bool = False) -> Comparison | None:
    """The verdict at the `look`-th look, or None while neither equivalence nor a change is shown (when
    `final`, that is `unverifiable`, with how many rounds would likely settle it)."""
    changes = list(series.changes)
    alpha = look_alpha(look)
    interval = median_interval(changes, alpha)
    if interval is None:
        if not final:
            return None
        centre = median(changes) if changes else 0.0
        return Comparison(id=series.id, verdict="unverifiable", change_pct=_pct(centre), low_pct=-math.inf,
                          high_pct=math.inf, runs_needed=FIRST_LOOK, rounds=len(changes))
    widen = _z(alpha) * series.baseline_error_pct  # a baseline file's own uncertainty, which rounds cannot shrink
    low, high, centre = interval[0] - widen, interval[1] + widen, median(changes)
    common = dict(id=series.id, change_pct=_pct(centre), low_pct=low, high_pct=high, rounds=len(changes))
    tol = tolerance_pct
    decided = decide_interval(common, tol, medium_pct, high_pct)
    if decided is not None or not final:
        return decided
    # The interval narrows about as 1/√n: the rounds at which its half-width would fit the room left.
    half, room = (high - low) / 2, abs(tol - abs(centre))
    runs = math.ceil(len(changes) * (half / room) ** 2) if room > 0 else None
    return Comparison(verdict="unverifiable", detectable_pct=half * (Z95 + Z_POWER) / Z95, runs_needed=runs, **common)


def _pct(value: float) -> float:
    return round(value, 9)


def _z(alpha: float) -> float:
    """The two-sided normal quantile for alpha (bisection on erfc; no scipy at run time)."""
    low, high = 0.0, 40.0
    for _ in range(100):
        mid = (low + high) / 2
        if math.erfc(mid / math.sqrt(2)) > alpha:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def log_change_pct(current: float, baseline: float) -> float:
    return 100 * math.log(current / baseline)
