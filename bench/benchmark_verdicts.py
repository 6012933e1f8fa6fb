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

With `--mode instructions` (#27): the step by Callgrind's instruction counts, on a machine loaded by `--load N`
busy processes (2: both cores) for the whole run. Cases: identical code; ±2.5 % of work per iteration (1025/975
messages, 205/195 scheduling operations against 1000/200) → regression / improvement; and the edge, exactly +2 %
(1020 messages, 204 operations), which a count decides exactly (within ±2 %). Each case works in a tree and a
cargo target of its own, built once (its first trial, reported apart); then `--trials` trials each. Beside it, in
the same run and under the same load, `--wall-trials` trials of the wall-clock step on identical and +2.5 %.

    .venv/bin/python bench/benchmark_verdicts.py --mode instructions --load 2 [--trials 20] [--wall-trials 1]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from _timing import percentile

from actor_rollback.runbook.config import SHIPPED_CONFIG, parse_config
from actor_rollback.tasks.benchmarks import verify_benchmarks
from actor_rollback.tasks.context import StepContext
from actor_rollback.deployments.sample import create_sample_workspace

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
    (repo / SCHEDULER_BENCH).write_text(re.sub(r"const OPS: usize = \d+;", f"const OPS: usize = {ops};", scheduler))
    mailbox = (repo / MAILBOX_BENCH).read_text()
    assert re.search(r"for i in 0\.\.\d+u64", mailbox), "the sample's mailbox bench changed: update this script"
    mailbox = re.sub(r"for i in 0\.\.\d+u64", f"for i in 0..{messages}u64", mailbox)  # the work, and room for it
    (repo / MAILBOX_BENCH).write_text(re.sub(r"Mailbox::with_capacity\(\d+\)", f"Mailbox::with_capacity({messages})",
                                             mailbox))
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
    verdicts = {m.group(1): m.group(2) for line in result.evidence[1:]
                if (m := re.match(r"(\S+): (within-tolerance|regression|improvement|unverifiable|missing)\b", line))}
    first = result.evidence[0].split()[0] if result.evidence else ""
    rounds = int(first) if first.isdigit() else 1  # the instruction counts decide in one round
    return {"case": case, "status": result.status, "seconds": round(time.monotonic() - started, 1), "rounds": rounds,
            "verdicts": verdicts, "evidence": result.evidence}


def busy(n: int) -> list[subprocess.Popen]:
    """n processes spinning on a core each: the loaded machine of a CI host or a busy laptop."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def instruction_cases(args) -> list[dict]:
    """Each case in a work tree and cargo target of its own (built by its first trial), then `trials` trials each."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = create_sample_workspace(root / "sample").repo
        git(repo, "checkout", "-q", "--detach", "HEAD~3")  # the Phase 4 merge: new-scheduler off by default
        same = commit_work(repo, 200, 1000, "bench: the baseline's work")
        heads = {"identical": same}
        for case, ops, messages in (("+2.5 %", 205, 1025), ("-2.5 %", 195, 975), ("edge +2 %", 204, 1020)):
            git(repo, "checkout", "-q", "--detach", same)
            heads[case] = commit_work(repo, ops, messages, f"bench: {case}")
        cfg = config(args.quick_ms, args.budget_minutes, same)
        cfg = cfg.model_copy(update={"benchmarks": cfg.benchmarks.model_copy(update={
            "mode": "instructions", "instruction_repeats": args.repeats})})
        wall_cfg = config(args.quick_ms, args.wall_budget_minutes, same)
        trees = {}
        for case, head in heads.items():
            tree = root / case.replace(" ", "_").replace("%", "pct").replace("+", "plus").replace("-", "minus")
            git(repo, "worktree", "add", "-q", "--detach", str(tree), head)
            trees[case] = tree
        loaders = busy(args.load)
        try:
            counts = {"identical": args.trials, "+2.5 %": args.trials, "-2.5 %": args.trials,
                      "edge +2 %": args.edge_trials}
            for n in range(max(counts.values()) + 1):  # trial 0: each case's cold build
                for case, tree in trees.items():
                    if n > counts[case]:
                        continue
                    target = root / f"target-{tree.name}"
                    first = root / f"target-{trees['identical'].name}"
                    if n == 0 and case != "identical" and not target.exists():  # the dependencies are built once
                        subprocess.run(["cp", "-a", str(first), str(target)], check=True)
                        for side in (target, target / "actor-rollback-baseline"):  # the copy's own crates: rebuilt
                            subprocess.run(["cargo", "clean", "--release", "-p", "actor-core", "-p", "actor-utils",
                                            "--target-dir", str(side)], cwd=tree, check=True, capture_output=True)
                    os.environ["CARGO_TARGET_DIR"] = str(target)
                    results.append({**trial(tree, cfg, case), "mode": "instructions", "cold": n == 0})
                    r = results[-1]
                    print(f"instructions trial {n}{' (cold build)' if n == 0 else ''} {case}: {r['status']} "
                          f"{r['seconds']} s — " + ", ".join(f"{b} {v}" for b, v in r["verdicts"].items()), flush=True)
            for n in range(args.wall_trials):
                for case in ("identical", "+2.5 %"):
                    os.environ["CARGO_TARGET_DIR"] = str(root / f"target-{trees[case].name}")  # built: no cold build
                    results.append({**trial(trees[case], wall_cfg, case), "mode": "wall", "cold": False})
                    r = results[-1]
                    print(f"wall trial {n + 1} {case}: {r['status']} after {r['rounds']} rounds, {r['seconds']} s — "
                          + ", ".join(f"{b} {v}" for b, v in r["verdicts"].items()), flush=True)
        finally:
            for loader in loaders:
                loader.kill()
    return results


def report_instructions(results: list[dict], args) -> None:
    print(f"\nunder {args.load} busy process(es); {args.repeats} Callgrind runs per side per benchmark")
    for mode in ("instructions", "wall"):
        for case in ("identical", "+2.5 %", "-2.5 %", "edge +2 %"):
            trials = [r for r in results if r["mode"] == mode and r["case"] == case and not r["cold"]]
            if not trials:
                continue
            seconds = sorted(r["seconds"] for r in trials)
            statuses = collections.Counter(r["status"] for r in trials)
            print(f"{mode} {case}: step " + ", ".join(f"{s} {n}/{len(trials)}" for s, n in sorted(statuses.items()))
                  + f"; time to verdict p50 {percentile(seconds, 50):.0f} s, max {seconds[-1]:.0f} s "
                  f"({len({b for r in trials for b in r['verdicts']})} benchmarks)")
            for bench in sorted({b for r in trials for b in r["verdicts"]}):
                counts = collections.Counter(r["verdicts"].get(bench, "missing") for r in trials)
                print(f"  {bench}: " + ", ".join(f"{v} {n}/{len(trials)}" for v, n in sorted(counts.items())))
    cold = [r for r in results if r["cold"]]
    if cold:
        print("cold builds (first trial of each case, both trees): " + ", ".join(f"{r['case']} {r['seconds']} s"
                                                                              for r in cold))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20, help="per case")
    parser.add_argument("--quick-ms", type=int, default=500)
    parser.add_argument("--budget-minutes", type=float, default=15)
    parser.add_argument("--json", type=Path, help="write every trial here")
    parser.add_argument("--mode", choices=("wall", "instructions"), default="wall")
    parser.add_argument("--load", type=int, default=0, help="busy processes for the whole run (instructions mode)")
    parser.add_argument("--repeats", type=int, default=3, help="benchmarks.instruction_repeats")
    parser.add_argument("--edge-trials", type=int, default=5, help="trials of the exactly +2 % case")
    parser.add_argument("--wall-trials", type=int, default=1, help="wall-clock trials beside, per case")
    parser.add_argument("--wall-budget-minutes", type=float, default=3)
    args = parser.parse_args()
    if args.mode == "instructions":
        os.environ["PATH"] = f"{Path.home() / '.cargo' / 'bin'}{os.pathsep}{os.environ['PATH']}"
        results = instruction_cases(args)
        report_instructions(results, args)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
        return
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
