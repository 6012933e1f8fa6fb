"""Instruction counts as benchmark results (benchmarks.mode = "instructions", tasks/instructions.py runs them):
reading Callgrind's dumps, the instructions per iteration from criterion's doubling warm-up, the verdict against
±tolerance with the runs' own noise band, and the counts' export that `compare-benchmarks` (A.3) reads. No I/O
beyond reading a given file; light enough for `compare-benchmarks`."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from actor_rollback.runbook.benchstats import BenchmarkInputError, Comparison, decide_interval
from actor_rollback.runbook.errors import BadInputError, StepError


@dataclass(frozen=True)
class Part:
    """One Callgrind dump: its number (1 = everything up to the first `iter` call's return) and instructions."""

    number: int
    instructions: int
    trigger: str = ""


def parse_callgrind(text: str) -> Part:
    """A Callgrind output file (one part): its `part:` number and the Ir of its `totals:` (or `summary:`) line."""
    part, events, totals, summary, trigger = 1, [], None, None, ""
    for line in text.splitlines():
        if line.startswith("part:"):
            part = int(line.split(":", 1)[1])
        elif line.startswith("events:"):
            events = line.split(":", 1)[1].split()
        elif line.startswith("totals:"):
            totals = [int(v) for v in line.split(":", 1)[1].split()]
        elif line.startswith("summary:"):
            summary = [int(v) for v in line.split(":", 1)[1].split()]
        elif line.startswith("desc: Trigger:"):
            trigger = line.split(":", 2)[2].strip()
    counts = totals if totals is not None else summary
    if not events or counts is None or "Ir" not in events:
        raise BadInputError("not a Callgrind output file with an Ir total (events: … Ir, totals: …)")
    return Part(part, counts[events.index("Ir")], trigger)


def per_iteration(parts: list[Part]) -> tuple[float, float, int]:
    """(instructions per iteration, spread in % between the last consecutive pairs, iterations of the last part)
    from the warm-up's parts 1, 2, 3, … (1, 2, 4, … iterations): the difference of two consecutive parts over the
    iterations it adds. Part 1 (the program's start with the first call) is not used."""
    ordered = sorted((p for p in parts if p.number >= 2), key=lambda p: p.number)
    if len(ordered) < 2 or [p.number for p in ordered] != list(range(2, len(ordered) + 2)):
        raise StepError(f"too few warm-up calls under Callgrind ({len(ordered) + 1} parts): the benchmark's "
                        "iterations are too slow for criterion's 1 s profile warm-up under Valgrind")
    estimates = [(later.instructions - earlier.instructions) / 2 ** (earlier.number - 1)
                 for earlier, later in zip(ordered, ordered[1:])]
    if estimates[-1] <= 0:
        raise StepError("the instructions did not grow with the iterations: not criterion's doubling warm-up")
    last = estimates[-1]
    recent = estimates[-3:]
    spread = max(abs(e - last) for e in recent) / last * 100
    return last, spread, 2 ** (ordered[-1].number - 1)


def judge(id: str, base: list[float], current: list[float], spreads: list[float], tolerance_pct: float,
          medium_pct: float, high_pct: float) -> Comparison:
    """The change of the median count, with a band as wide as the repeats and the estimates disagree: inside
    ±tolerance → within-tolerance; outside → regression (graded) or improvement; across an edge → unverifiable."""
    b, c = statistics.median(base), statistics.median(current)
    change = (c - b) / b * 100
    noise = max([*(abs(v - b) / b * 100 for v in base), *(abs(v - c) / c * 100 for v in current), *spreads])
    common = dict(id=id, change_pct=change, low_pct=change - noise, high_pct=change + noise)
    return decide_interval(common, tolerance_pct, medium_pct, high_pct) or Comparison(
        verdict="unverifiable", why=f"the change sits on the ±{tolerance_pct:g} % edge within the runs' noise "
        f"(±{noise:.3f} %): more repeats (benchmarks.instruction_repeats) or the wall-clock rounds decide", **common)


def read_counts(path: Path) -> dict[str, list[float]] | None:
    """An instruction-count export (`{"measure": "instructions", "benchmarks": {id: [counts]}}`), or None when the
    file is something else (a baseline of times)."""
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BenchmarkInputError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("measure") != "instructions":
        return None
    counts = data.get("benchmarks")
    if not isinstance(counts, dict) or not all(isinstance(v, list) and v and all(
            isinstance(x, (int, float)) and x > 0 for x in v) for v in counts.values()):
        raise BenchmarkInputError(f"{path}: an instruction export needs benchmarks: {{id: [positive counts]}}")
    return {str(k): [float(x) for x in v] for k, v in counts.items()}


def compare_counts(base: dict[str, list[float]], current: dict[str, list[float]], tolerance_pct: float,
                   medium_pct: float, high_pct: float) -> list[Comparison]:
    """Every benchmark of either export: its verdict, or missing on the side that lacks it."""
    results = [judge(id, base[id], current[id], [], tolerance_pct, medium_pct, high_pct)
               for id in sorted(set(base) & set(current))]
    results += [Comparison(id=id, verdict="missing", side="current") for id in sorted(set(base) - set(current))]
    results += [Comparison(id=id, verdict="missing", side="baseline") for id in sorted(set(current) - set(base))]
    return sorted(results, key=lambda r: r.id)
