"""What each way of running the benches costs and how noisy it is (P1.C3 on this machine).

Identical code on both sides (the sample's flag-off tree and a `git archive` of it, as the step
benches a baseline ref), in paired rounds, under each setting:
- shared:  one cargo target dir for both trees, plots on — the step before #17;
- own:     each tree its own target dir, built once before the rounds, plots on;
- noplot:  own target dirs and criterion's `--noplot`;
- pinned:  as noplot, each bench process pinned to one core (`taskset -c 1`), when there are two or more.
Prints, per setting, the median seconds of one tree's round (both bench commands) and, per
benchmark, the spread of the paired changes 100·ln(current/baseline): standard deviation and the
robust one (IQR / 1.349), of criterion's mean and of its median.

    .venv/bin/python bench/benchmark_noise.py [--pairs 15] [--quick-ms 500] [--settings shared,own,noplot,pinned]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from actor_rollback.deployments.sample import create_sample_workspace

COMMANDS = [["cargo", "bench", "--bench", "mailbox_throughput", "--features", "std"],
            ["cargo", "bench", "--bench", "scheduler_latency", "--features", "std"]]
BENCHES = ["mailbox/throughput_1000", "scheduler/schedule_to_run"]


def one_round(tree: Path, target: Path, setting: str, quick_ms: int) -> tuple[dict[str, tuple[float, float]], float]:
    started, found = time.monotonic(), {}
    for command in COMMANDS:
        argv = list(command) + (["--", "--noplot"] if setting in ("noplot", "pinned") else [])
        if setting == "pinned":
            argv = ["taskset", "-c", "1", *argv]
        subprocess.run(argv, cwd=tree, check=True, capture_output=True,
                       env={**os.environ, "ACTOR_BENCH_QUICK": str(quick_ms), "CARGO_TARGET_DIR": str(target)})
    for bench in BENCHES:
        estimates = json.loads((target / "criterion" / bench / "new" / "estimates.json").read_text())
        found[bench] = (estimates["mean"]["point_estimate"], estimates["median"]["point_estimate"])
    return found, time.monotonic() - started


def robust_sd(values: list[float]) -> float:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[2] - q[0]) / 1.349


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--quick-ms", type=int, default=500)
    parser.add_argument("--settings", default="shared,own,noplot,pinned")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path.home() / '.cargo' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        repo = create_sample_workspace(Path(tmp) / "sample").repo
        subprocess.run(["git", "checkout", "-q", "--detach", "HEAD~3"], cwd=repo, check=True)
        copy = Path(tmp) / "baseline"
        copy.mkdir()
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=repo, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-m", "-C", str(copy)], input=archive, check=True)
        current_target, own_target = Path(tmp) / "target", Path(tmp) / "target-baseline"
        build = COMMANDS[0][:2] + ["--no-run", "--features", "std"]
        subprocess.run(build, cwd=repo, check=True, capture_output=True, env={**os.environ, "CARGO_TARGET_DIR": str(current_target)})
        shutil.copytree(current_target / "release", own_target / "release", symlinks=True)
        subprocess.run(build, cwd=copy, check=True, capture_output=True, env={**os.environ, "CARGO_TARGET_DIR": str(own_target)})
        print(f"{args.pairs} paired rounds per setting, ACTOR_BENCH_QUICK={args.quick_ms} ms, {os.cpu_count()} cores")
        for setting in args.settings.split(","):
            if setting == "pinned" and (os.cpu_count() or 1) < 2:
                continue
            baseline_target = current_target if setting == "shared" else own_target
            seconds, changes = [], {b: ([], []) for b in BENCHES}
            for n in range(args.pairs):
                sides = [(copy, baseline_target), (repo, current_target)]
                measured = {}
                for tree, target in (sides if n % 2 == 0 else sides[::-1]):
                    measured[tree], took = one_round(tree, target, setting, args.quick_ms)
                    seconds.append(took)
                for bench in BENCHES:
                    for i in (0, 1):
                        changes[bench][i].append(100 * math.log(measured[repo][bench][i] / measured[copy][bench][i]))
            print(f"{setting}: one tree's round {statistics.median(seconds):.2f} s (median)")
            for bench, (means, medians) in changes.items():
                print(f"  {bench}: mean sd {statistics.stdev(means):.2f} % (robust {robust_sd(means):.2f} %), "
                      f"median sd {statistics.stdev(medians):.2f} % (robust {robust_sd(medians):.2f} %)")


if __name__ == "__main__":
    main()
