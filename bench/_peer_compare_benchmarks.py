"""The yardstick for compare-benchmarks (a baseline, not a feature): the plain script the runbook's A.3
calls (`scripts/compare_benchmarks.py --baseline benchmarks/baseline_before_refactor.md --current
target/criterion/`), written the way such a script is written — rglob every `new/estimates.json`,
`json.load` each, compare its mean with the markdown row, print a line per regression.

    python bench/_peer_compare_benchmarks.py --baseline baseline.md --current target/criterion [--tolerance 2]
"""

import argparse
import json
import re
from pathlib import Path

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--tolerance", type=float, default=2.0)
    args = parser.parse_args()
    baseline = {}
    for line in Path(args.baseline).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.match(r"([0-9.]+)\s*(ps|ns|µs|us|ms|s)$", cells[1]) if len(cells) >= 2 else None
        if match:
            baseline[cells[0]] = float(match.group(1)) * UNITS[match.group(2)]
    regressions = 0
    root = Path(args.current)
    for estimates in root.rglob("new/estimates.json"):
        name = str(estimates.parent.parent.relative_to(root))
        with open(estimates) as f:
            mean = json.load(f)["mean"]["point_estimate"]
        if name in baseline:
            change = (mean - baseline[name]) / baseline[name] * 100
            if change > args.tolerance:
                regressions += 1
                print(f"REGRESSION {name}: {change:+.2f} %")
    print(f"{regressions} regression(s)")
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
