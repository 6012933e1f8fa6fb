"""The benchmark step (P1.C3 / A.3): run the benches, interleaved with the baseline's, and judge.

`cargo bench` exits 0 even when criterion prints "Performance has regressed", so the verdict
comes from criterion's files (tasks/bench_files.py reads them and the baselines).
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from git import GitCommandError

from runbook.benchstats import Z95, Z_POWER, Comparison, Estimate, compare
from runbook.errors import BadInputError, StepError
from runbook.model import StepResult
from tasks.bench_files import markdown_report, note, read_baseline, read_criterion
from tasks.commands import require_program, run_bounded, secret_names
from tasks.context import StepContext, artifact_key, in_prefect_run, step_logger
from tasks.git_repo import open_workspace, run_git
from tasks.progress import StepProgress


# ---------------------------------------------------------------- running them (P1.C3 / A.3)


def pool(runs: list[dict[str, Estimate]]) -> dict[str, Estimate]:
    """Several runs of the same tree → one estimate per benchmark whose standard error counts both
    criterion's own uncertainty and how much the runs disagree (the machine's drift)."""
    pooled = {}
    for id in set().union(*runs):
        values = [run[id] for run in runs if id in run]
        n = len(values)
        mean = sum(v.mean for v in values) / n
        within = sum(v.standard_error ** 2 for v in values) / n ** 2
        between = (sum((v.mean - mean) ** 2 for v in values) / (n - 1)) / n if n > 1 else 0.0
        pooled[id] = Estimate(mean, math.sqrt(within + between))
    return pooled


def criterion_root(tree: Path, target_dir: str | None, configured: str) -> Path:
    if target_dir:
        return Path(target_dir) / "criterion"
    return tree / configured


def bench_once(ctx: StepContext, tree: Path, target_dir: str | None, label: str = "",
               known: frozenset[str] = frozenset()) -> dict[str, Estimate]:
    b = ctx.cfg.benchmarks
    env = {**b.env, **({"CARGO_TARGET_DIR": target_dir} if target_dir else {})}
    log = step_logger()
    for command in b.commands:
        started = time.monotonic()
        log.info("benchmarks %s: `%s` …", label, command)
        outcome = run_bounded(command, tree, b.timeout_seconds, env=env, secrets=secret_names(ctx.cfg))
        log.info("benchmarks %s: `%s` took %.0f s", label, command, time.monotonic() - started)
        if outcome.returncode is None:
            raise StepError(f"`{command}` did not finish within {b.timeout_seconds} s in {tree}")
        if outcome.returncode != 0:
            raise StepError(f"`{command}` exited {outcome.returncode} in {tree}: " + " | ".join(outcome.tail[-4:]))
    return read_criterion(criterion_root(tree, target_dir, b.criterion_dir), known=known)


def _baseline_tree(ctx: StepContext, where: Path) -> tuple[Path, str]:
    """The baseline ref's files, exported with `git archive` (the repository is not touched)."""
    ref = ctx.cfg.benchmarks.baseline_ref
    if ref == "merge-parent":
        if "merge" not in ctx.facts:
            raise BadInputError("benchmarks.baseline_ref = 'merge-parent' needs the find-merge step to run first")
        ref = f"{ctx.facts['merge']}^1"
    repo = open_workspace(ctx.repo)
    try:
        sha = run_git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
    except GitCommandError:
        raise BadInputError(f"benchmarks.baseline_ref {ref!r} is not a commit of {ctx.repo}") from None
    tree = where / f"baseline-{sha[:10]}"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", sha], cwd=ctx.repo, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree, sha


def verdict_rows(results: list[Comparison]) -> list[dict]:
    """One row per benchmark, for the Prefect table artifact."""
    def pct(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return [{"benchmark": r.id, "verdict": r.verdict, "change_pct": pct(r.change_pct), "low_pct": pct(r.low_pct),
             "high_pct": pct(r.high_pct), "severity": r.severity, "note": note(r)} for r in results]


def publish(ctx: StepContext, results: list[Comparison], report: str) -> None:
    """Inside a run: the verdicts as a table artifact and the report as a markdown one."""
    if not in_prefect_run():
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    key = artifact_key("benchmarks-phase", ctx.phase, ctx.incident)
    create_table_artifact(table=verdict_rows(results), key=key,
                          description=f"{ctx.step_id} benchmark verdicts, phase {ctx.phase}, {ctx.incident}")
    create_markdown_artifact(markdown=report, key=f"{key}-report",
                             description=f"{ctx.step_id} benchmark report, phase {ctx.phase}, {ctx.incident}")


def _so_far(ctx: StepContext, progress: StepProgress, baseline: dict[str, Estimate],
            current_runs: list[dict[str, Estimate]], done: int, text: str, source: str) -> None:
    """After each round: the progress moves and the verdicts table fills in with the rounds so far."""
    b, sev = ctx.cfg.benchmarks, ctx.cfg.severity
    interim = compare(baseline, pool(current_runs), b.tolerance_pct, sev.medium_regression_pct, sev.high_regression_pct)
    progress.update(done, f"{text}; {len(interim)} benchmarks compared so far")
    if in_prefect_run() and done < progress.total:
        from prefect.artifacts import create_table_artifact

        create_table_artifact(table=verdict_rows(interim), key=artifact_key("benchmarks-phase", ctx.phase, ctx.incident),
                              description=f"{ctx.step_id} benchmark verdicts so far ({text}; baseline {source})")


def _plan_benchmarks(ctx: StepContext) -> StepResult:
    """P1.C3 / A.3 read-only: the bench programs exist, the baseline is there and readable."""
    b = ctx.cfg.benchmarks
    for command in b.commands:
        require_program(command, ctx.repo, "benchmarks.commands")
    if b.baseline_ref == "merge-parent":
        if "merge" not in ctx.facts:
            raise BadInputError("benchmarks.baseline_ref = 'merge-parent' needs the phase's merge, which find-merge "
                                "did not establish")
        source = f"{ctx.facts['merge'][:10]}^1, benched in the same run"
    elif b.baseline_ref:
        try:
            sha = run_git(open_workspace(ctx.repo), "rev-parse", "--verify", f"{b.baseline_ref}^{{commit}}")
        except GitCommandError:
            raise BadInputError(f"benchmarks.baseline_ref {b.baseline_ref!r} is not a commit of {ctx.repo}") from None
        source = f"{b.baseline_ref} ({sha[:10]}), benched in the same run"
    else:
        if not (ctx.repo / b.baseline).exists():
            raise BadInputError(f"the benchmark baseline {b.baseline} does not exist in {ctx.repo}; fix "
                                "benchmarks.baseline, or set benchmarks.baseline_ref = 'merge-parent' to bench the "
                                "pre-merge code in the same run")
        rows = read_baseline(str(ctx.repo / b.baseline))
        source = f"{b.baseline} ({len(rows)} benchmarks)"
    return StepResult(id=ctx.step_id, name="benchmarks", status="planned", evidence=[
        *b.commands, f"× {b.rounds} rounds; compare with {source} (±{b.tolerance_pct:g} %)"])


def verify_benchmarks(ctx: StepContext) -> StepResult:
    """P1.C3 / A.3: run the benches and compare with the baseline; a verdict only when the noise allows."""
    b, sev = ctx.cfg.benchmarks, ctx.cfg.severity
    if ctx.dry_run:
        return _plan_benchmarks(ctx)
    target_dir = os.environ.get("CARGO_TARGET_DIR")
    sides = 2 if b.baseline_ref else 1
    progress = StepProgress(ctx, "benchmarks", b.rounds * sides, f"{b.rounds} round(s) to run")
    with tempfile.TemporaryDirectory(prefix="actor-rollback-bench-") as scratch:
        if b.baseline_ref:
            tree, sha = _baseline_tree(ctx, Path(scratch))
            # one target dir for both trees: cargo keeps each tree's artifacts apart, the deps are built once
            base_target = target_dir or str(ctx.repo / "target")
            base_runs, current_runs = [], []
            source = f"{b.baseline_ref} ({sha[:10]}), benched in the same run"
            for n in range(1, b.rounds + 1):  # interleaved: drift hits both sides alike
                base_runs.append(bench_once(ctx, tree, base_target, f"round {n}/{b.rounds}, baseline {sha[:10]}"))
                progress.update(2 * n - 1, f"round {n}/{b.rounds}: baseline measured")
                current_runs.append(bench_once(ctx, ctx.repo, target_dir, f"round {n}/{b.rounds}, current tree"))
                _so_far(ctx, progress, pool(base_runs), current_runs, 2 * n, f"round {n}/{b.rounds} done", source)
            baseline = pool(base_runs)
        else:
            baseline, source = read_baseline(str(ctx.repo / b.baseline)), b.baseline
            current_runs = []
            for n in range(1, b.rounds + 1):
                current_runs.append(bench_once(ctx, ctx.repo, target_dir, f"round {n}/{b.rounds}", frozenset(baseline)))
                _so_far(ctx, progress, baseline, current_runs, n, f"round {n}/{b.rounds} done", source)
    results = compare(baseline, pool(current_runs), b.tolerance_pct, sev.medium_regression_pct,
                      sev.high_regression_pct)
    notes = []
    if b.rounds < 2:  # one round measures no drift between runs: its interval is too narrow to trust
        results = [r if r.verdict in ("missing", "unverifiable") else replace(
            r, verdict="unverifiable", severity="", runs_needed=max(2, r.runs_needed or 2),
            detectable_pct=(r.high_pct - r.change_pct) * (Z95 + Z_POWER) / Z95) for r in results]
        notes.append("one round cannot measure the machine's drift between runs: set benchmarks.rounds >= 2")
    publish(ctx, results, markdown_report(results, b.tolerance_pct, source, f"{ctx.repo} ({b.rounds} rounds)"))
    verdicts = {r.verdict for r in results}
    progress.finish(", ".join(f"{sum(r.verdict == v for r in results)} {v}" for v in sorted(verdicts)) or "no benchmarks")
    evidence = [f"{b.rounds} round(s) of {len(b.commands)} bench command(s); baseline: {source}",
                *(r.describe() for r in results), *notes]
    if "regression" in verdicts:
        worst = max(r.change_pct for r in results if r.verdict == "regression")
        return StepResult(id=ctx.step_id, name="benchmarks", status="failed", failure="fault", evidence=evidence,
                          data={"benchmarks": "fail", "regression_pct": f"{worst:.2f}"})
    if verdicts & {"unverifiable", "missing"}:
        return StepResult(id=ctx.step_id, name="benchmarks", status="needs-human", evidence=evidence,
                          data={"benchmarks": "unverified"})
    return StepResult(id=ctx.step_id, name="benchmarks", status="done", evidence=evidence,
                      data={"benchmarks": "pass"})
