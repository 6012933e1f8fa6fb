"""How often the benchmarks step is right on this machine: detection power and false alarms.

On a fresh sample workspace, with real `cargo bench` (Debian's criterion) and the same-run
interleaved baseline the flows use:
- detection: the head (new-scheduler on) against the Phase 4 merge (flag off) — a real
  regression (+40–50 % on scheduler/schedule_to_run) — how often the verdict is `regression`;
- false alarms: the flag-off tree against itself — how often any benchmark is called a
  `regression`, and how often `within-tolerance` is reached or the step says `unverifiable`.

    .venv/bin/python bench/benchmark_verdicts.py [--trials 10] [--rounds 2] [--quick-ms 300]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runbook.config import SHIPPED_CONFIG, parse_config  # noqa: E402
from tasks.benchmarks import verify_benchmarks  # noqa: E402
from tasks.context import StepContext  # noqa: E402
from tasks.sample_workspace import create_sample_workspace  # noqa: E402


def config(rounds: int, quick_ms: int):
    text = SHIPPED_CONFIG.read_text()
    text = text.replace('baseline_ref = ""  ', 'baseline_ref = "HEAD~3"  ').replace("rounds = 3 ", f"rounds = {rounds} ")
    text = text.replace("\nenv = {}  ", f'\nenv = {{ ACTOR_BENCH_QUICK = "{quick_ms}" }}  ')
    return parse_config(tomllib.loads(text))


def trial(repo: Path, cfg) -> dict[str, str]:
    result = verify_benchmarks(StepContext(repo=repo, cfg=cfg, phase="1", incident="bench", reason="bench",
                                           step_id="P1.C3"))
    return {line.split(":")[0]: line.split(": ")[1].split()[0] for line in result.evidence[1:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick-ms", type=int, default=300)
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path.home() / '.cargo' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    cfg = config(args.rounds, args.quick_ms)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CARGO_TARGET_DIR"] = str(Path(tmp) / "target")
        sample = create_sample_workspace(Path(tmp) / "sample")
        started = time.monotonic()
        detect = [trial(sample.repo, cfg) for _ in range(args.trials)]
        subprocess.run(["git", "checkout", "-q", "--detach", "HEAD~3"], cwd=sample.repo, check=True)
        same = [trial(sample.repo, cfg) for _ in range(args.trials)]
        seconds = time.monotonic() - started
    print(f"{args.trials} trials each, {args.rounds} interleaved rounds, ACTOR_BENCH_QUICK={args.quick_ms} ms, "
          f"{seconds:.0f} s in all")
    for title, trials in (("flag on vs flag-off baseline (real regression)", detect),
                          ("flag off vs itself (no change)", same)):
        print(title)
        for bench in sorted({b for t in trials for b in t}):
            counts = collections.Counter(t.get(bench, "missing") for t in trials)
            print(f"  {bench}: " + ", ".join(f"{v} {n}/{len(trials)}" for v, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
