"""compare-benchmarks at scale: 10,000 benchmarks in a generated criterion tree.

Writes a criterion-shaped folder (`<group>/<bench>/new/{estimates,benchmark}.json`) with 10,000
benchmarks and a markdown baseline table for them, then times reading both and comparing,
against a baseline measured in the same run: reading the same 20,000 JSON files with no
statistics at all.

    .venv/bin/python bench/compare_10k.py [--benchmarks 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import timed  # noqa: E402
from runbook.benchstats import compare  # noqa: E402
from tasks.benchmarks import read_baseline, read_criterion  # noqa: E402


def generate(root: Path, count: int) -> Path:
    rng = random.Random(1)
    rows = ["| Benchmark | Mean | Std Dev |", "|---|---|---|"]
    for i in range(count):
        group, name = f"group{i // 100}", f"bench_{i}"
        folder = root / "criterion" / group / name / "new"
        folder.mkdir(parents=True)
        mean = rng.uniform(50, 5000)
        (folder / "estimates.json").write_text(json.dumps(
            {"mean": {"point_estimate": mean * rng.uniform(0.97, 1.08), "standard_error": mean * 0.003,
                      "confidence_interval": {"confidence_level": 0.95, "lower_bound": 0, "upper_bound": 0}}}))
        (folder / "benchmark.json").write_text(json.dumps({"group_id": group, "function_id": name,
                                                           "full_id": f"{group}/{name}"}))
        rows.append(f"| {group}/{name} | {mean:.3f} ns | {mean * 0.03:.3f} ns |")
    baseline = root / "baseline.md"
    baseline.write_text("\n".join(rows) + "\n")
    return baseline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--benchmarks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        baseline = generate(root, args.benchmarks)
        current = root / "criterion"

        def full() -> list:
            return compare(read_baseline(str(baseline)), read_criterion(current))

        def read_only() -> int:
            return sum(len(p.read_bytes()) for p in current.rglob("*.json"))

        results = full()
        ours, _ = timed(full, args.repeat)
        raw, _ = timed(read_only, args.repeat)
    verdicts = {v: sum(r.verdict == v for r in results) for v in {r.verdict for r in results}}
    print(f"{len(results)} benchmarks compared; verdicts {verdicts}")
    print(f"compare-benchmarks core (read tree + table, compare): median {ours:.2f} s")
    print(f"baseline: reading the same JSON files only:            median {raw:.2f} s  (ratio {ours / raw:.2f})")


if __name__ == "__main__":
    main()
