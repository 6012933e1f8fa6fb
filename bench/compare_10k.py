"""compare-benchmarks on 10,000 benchmarks, as a user runs it, against the plain script it replaces.

Writes a criterion-shaped tree (`<group>/<bench>/new/{benchmark,estimates,sample,tukey}.json` and a
`report/` per benchmark, estimates.json with criterion's five statistics) and the runbook's
markdown baseline table, then times two whole processes, start to exit with their output read
from a pipe, alternating A and B, median of `--repeat` each:

  A  actor-rollback compare-benchmarks --baseline baseline.md --current criterion/
  B  python bench/_peer_compare_benchmarks.py --baseline baseline.md --current criterion/   (the yardstick)

90 % of the benchmarks are unchanged (±1 %), 5 % regressed (+3 to +8 %), 5 % improved.

    .venv/bin/python bench/compare_10k.py [--benchmarks 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).parent / "actor-rollback")


def statistic(value: float, spread: float) -> dict:
    return {"confidence_interval": {"confidence_level": 0.95, "lower_bound": value - spread, "upper_bound": value + spread},
            "point_estimate": value, "standard_error": spread / 1.96}


def generate(root: Path, count: int) -> Path:
    rng = random.Random(1)
    rows = ["| Benchmark | Mean | Std Dev |", "|---|---|---|"]
    for i in range(count):
        group, name = f"group{i // 100}", f"bench_{i}"
        bench = root / "criterion" / group / name
        (bench / "new").mkdir(parents=True)
        (bench / "report").mkdir()
        mean = rng.uniform(50, 5000)
        kind = rng.random()
        factor = rng.uniform(1.03, 1.08) if kind < 0.05 else rng.uniform(0.92, 0.97) if kind < 0.10 else rng.uniform(0.99, 1.01)
        now = mean * factor
        estimates = {name: statistic(now * scale, now * 0.002) for name, scale in
                     (("mean", 1.0), ("median", 0.99), ("median_abs_dev", 0.01), ("slope", 1.0), ("std_dev", 0.02))}
        (bench / "new" / "estimates.json").write_text(json.dumps(estimates))
        (bench / "new" / "benchmark.json").write_text(json.dumps({
            "group_id": group, "function_id": name, "value_str": None, "throughput": None,
            "full_id": f"{group}/{name}", "directory_name": f"{group}/{name}", "title": f"{group}/{name}"}))
        (bench / "new" / "sample.json").write_text(json.dumps({"sampling_mode": "Linear", "iters": list(range(1, 51)),
                                                               "times": [now * k for k in range(1, 51)]}))
        (bench / "new" / "tukey.json").write_text(json.dumps([now * 0.9, now * 0.95, now * 1.05, now * 1.1]))
        (bench / "report" / "index.html").write_text(f"<html><body>{group}/{name}</body></html>")
        rows.append(f"| {group}/{name} | {mean:.3f} ns | {mean * 0.01:.3f} ns |")
    baseline = root / "baseline.md"
    baseline.write_text("\n".join(rows) + "\n")
    return baseline


def wall(argv: list[str]) -> tuple[float, int, int]:
    """Seconds from start to exit with the output drained from a pipe, the exit code and the output's lines."""
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return time.perf_counter() - started, done.returncode, done.stdout.count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--benchmarks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        baseline = generate(root, args.benchmarks)
        current = root / "criterion"
        ours = [CLI, "compare-benchmarks", "--baseline", str(baseline), "--current", str(current)]
        peer = [sys.executable, str(HERE / "_peer_compare_benchmarks.py"), "--baseline", str(baseline),
                "--current", str(current)]
        wall(ours), wall(peer)  # warm the page cache and the interpreters' files
        a, b = [], []
        for _ in range(args.repeat):  # alternating, so drift hits both alike
            a.append(wall(ours))
            b.append(wall(peer))
    ours_s, peer_s = statistics.median(t for t, _, _ in a), statistics.median(t for t, _, _ in b)
    print(f"{args.benchmarks} benchmarks, median of {args.repeat} alternating runs, whole processes:")
    print(f"  A actor-rollback compare-benchmarks: {ours_s:.3f} s  (exit {a[0][1]}, {a[0][2]} lines of output)")
    print(f"  B peer script (the yardstick):       {peer_s:.3f} s  (exit {b[0][1]}, {b[0][2]} lines of output)")
    print(f"  ratio A/B: {ours_s / peer_s:.2f}  (goal <= 0.70)")
    if ours_s / peer_s > 0.70:
        raise SystemExit("compare-benchmarks is slower than 0.70x the plain script")


if __name__ == "__main__":
    main()
