"""How often the sequential benchmark step (P1.C3) is right on this machine, and how long it takes to say so.

On a fresh sample workspace, with real `cargo bench` (Debian's criterion) and the baseline benched in
the same run, as the flows do it (`benchmarks.baseline_ref`):
- identical code: the flag-off tree against itself — the verdict should be `within-tolerance`;
- a real +5 %: the same tree doing 5 % more work per iteration (1050 messages instead of 1000 in
  mailbox/throughput_1000, 21 scheduling operations instead of 20 in scheduler/schedule_to_run)
  against it — the verdict should be `regression`, and never `within-tolerance`.
Trials alternate between the two cases, so the machine's mood hits both alike. Prints each trial,
the tallies, and the distribution of the time to a verdict (the whole step, build included).

    .venv/bin/python bench/benchmark_verdicts.py [--trials 20] [--quick-ms 500] [--budget-minutes 15]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from _timing import percentile

from runbook.config import SHIPPED_CONFIG, parse_config
from tasks.benchmarks import verify_benchmarks
from tasks.context import StepContext
from deployments.sample import create_sample_workspace

SCHEDULER_BENCH = "modules/actor-core/benches/scheduler_latency.rs"
MAILBOX_BENCH = "modules/actor-core/benches/mailbox_throughput.rs"
LOOP = """            actor = (actor + 1) % 97;
            scheduler.schedule(black_box(actor));
            black_box(scheduler.next_ready())"""
OPS_LOOP = """            let mut last = None;
            for _ in 0..black_box(OPS) {
                actor = (actor + 1) % 97;
                scheduler.schedule(black_box(actor));
                last = black_box(scheduler.next_ready());
            }
            last"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_work(repo: Path, ops: int, messages: int, message: str) -> str:
    """The benches doing `ops` scheduling operations and `messages` messages per iteration, committed."""
    scheduler = (repo / SCHEDULER_BENCH).read_text()
    if "const OPS" not in scheduler:
        assert LOOP in scheduler, "the sample's scheduler bench changed: update this script"
        scheduler = scheduler.replace(LOOP, OPS_LOOP).replace("fn scheduler_latency", "const OPS: usize = 20;\n\nfn scheduler_latency")
    (repo / SCHEDULER_BENCH).write_text(scheduler.replace("const OPS: usize = 20;", f"const OPS: usize = {ops};"))
    mailbox = (repo / MAILBOX_BENCH).read_text()
    assert "for i in 0..1000u64" in mailbox, "the sample's mailbox bench changed: update this script"
    (repo / MAILBOX_BENCH).write_text(mailbox.replace("for i in 0..1000u64", f"for i in 0..{messages}u64"))
    git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qam", message)
    return git(repo, "rev-parse", "HEAD")


def config(quick_ms: int, budget_minutes: float, baseline: str):
    text = SHIPPED_CONFIG.read_text()
    for old, new in {'baseline_ref = ""  ': f'baseline_ref = "{baseline}"  ',
                     "budget_minutes = 15 ": f"budget_minutes = {budget_minutes} ",
                     "\nenv = {}  ": f'\nenv = {{ ACTOR_BENCH_QUICK = "{quick_ms}" }}  '}.items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_config(tomllib.loads(text))


def trial(repo: Path, cfg, case: str) -> dict:
    started = time.monotonic()
    result = verify_benchmarks(StepContext(repo=repo, cfg=cfg, phase="1", incident="bench", reason="bench",
                                           step_id="P1.C3"))
    verdicts = {line.split(":")[0]: line.split(": ")[1].split()[0] for line in result.evidence[1:]}
    rounds = int(result.evidence[0].split()[0])
    return {"case": case, "status": result.status, "seconds": round(time.monotonic() - started, 1), "rounds": rounds,
            "verdicts": verdicts, "evidence": result.evidence}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20, help="per case")
    parser.add_argument("--quick-ms", type=int, default=500)
    parser.add_argument("--budget-minutes", type=float, default=15)
    parser.add_argument("--json", type=Path, help="write every trial here")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path.home() / '.cargo' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CARGO_TARGET_DIR"] = str(Path(tmp) / "target")
        repo = create_sample_workspace(Path(tmp) / "sample").repo
        git(repo, "checkout", "-q", "--detach", "HEAD~3")  # the Phase 4 merge: new-scheduler off by default
        same = commit_work(repo, 20, 1000, "bench: 20 scheduling operations per iteration")
        slower = commit_work(repo, 21, 1050, "bench: 5 % more work per iteration")
        cfg = config(args.quick_ms, args.budget_minutes, same)
        started = time.monotonic()
        for n in range(args.trials):
            for case, head in (("identical", same), ("+5 %", slower)):
                git(repo, "checkout", "-q", "--detach", head)
                results.append(trial(repo, cfg, case))
                r = results[-1]
                print(f"trial {n + 1} {case}: {r['status']} after {r['rounds']} rounds, {r['seconds']} s — "
                      + ", ".join(f"{b} {v}" for b, v in r["verdicts"].items()), flush=True)
        total = time.monotonic() - started
    print(f"\n{args.trials} trials per case, ACTOR_BENCH_QUICK={args.quick_ms} ms, budget {args.budget_minutes:g} min, "
          f"{total / 60:.0f} min in all")
    for case, good in (("identical", "done"), ("+5 %", "failed")):
        trials = [r for r in results if r["case"] == case]
        statuses = collections.Counter(r["status"] for r in trials)
        seconds = sorted(r["seconds"] for r in trials)
        print(f"{case}: step " + ", ".join(f"{s} {n}/{len(trials)}" for s, n in sorted(statuses.items()))
              + f" (want {good}); time to verdict p10 {percentile(seconds, 10):.0f} s, p50 {percentile(seconds, 50):.0f} s, "
              f"p90 {percentile(seconds, 90):.0f} s, max {seconds[-1]:.0f} s; rounds p50 "
              f"{percentile(sorted(r['rounds'] for r in trials), 50):.0f}")
        for bench in sorted({b for r in trials for b in r["verdicts"]}):
            counts = collections.Counter(r["verdicts"].get(bench, "missing") for r in trials)
            print(f"  {bench}: " + ", ".join(f"{v} {n}/{len(trials)}" for v, n in sorted(counts.items())))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
