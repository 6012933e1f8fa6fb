"""Criterion's results and the baselines they are compared with (P1.C3 / A.3).

`cargo bench` exits 0 even when criterion prints "Performance has regressed", so the verdict
comes from criterion's files: every `<id>/<run>/estimates.json` with its `benchmark.json`.
Baselines: the runbook's markdown table, a criterion saved baseline (`--save-baseline NAME`),
or an export of this tool (JSON or CSV).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from git import GitCommandError

from runbook.benchstats import (Z95, Z_POWER, BenchmarkInputError, Comparison, Estimate, compare,
                                 parse_markdown_baseline)
from runbook.errors import BadInputError, StepError
from runbook.model import StepResult
from tasks.commands import require_program, run_bounded, secret_names
from tasks.context import StepContext, artifact_key, in_prefect_run, step_logger
from tasks.git_repo import open_workspace, run_git
from tasks.progress import StepProgress


def read_criterion(root: Path, run: str = "new") -> dict[str, Estimate]:
    """Every benchmark under a criterion folder for one run ("new", or a saved baseline's name)."""
    if not root.is_dir():
        raise BenchmarkInputError(f"{root}: no such criterion folder; run `cargo bench` first or check --current")
    found = {}
    for estimates in sorted(root.rglob(f"{run}/estimates.json")):
        folder = estimates.parent
        try:
            meta = json.loads((folder / "benchmark.json").read_text())
            data = json.loads(estimates.read_text())
            found[meta["full_id"]] = Estimate(float(data["mean"]["point_estimate"]),
                                              float(data["mean"]["standard_error"]))
        except FileNotFoundError:
            raise BenchmarkInputError(f"{folder}: estimates.json without benchmark.json; a partial criterion run?") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BenchmarkInputError(f"{estimates}: not criterion's estimates format ({exc})") from None
    if not found:
        raise BenchmarkInputError(f"{root}: no {run}/estimates.json below it; is it criterion's output folder?")
    return found


CSV_COLUMNS = ["benchmark", "mean_ns", "standard_error_ns"]


def read_export(path: Path) -> dict[str, Estimate]:
    """This tool's export: JSON {"benchmarks": {id: {"mean_ns", "standard_error_ns"}}} or CSV
    with the columns benchmark,mean_ns,standard_error_ns."""
    if path.suffix == ".csv":
        return _read_csv(path)
    try:
        data = json.loads(path.read_text())
        return {id: Estimate(float(v["mean_ns"]), float(v["standard_error_ns"]))
                for id, v in data["benchmarks"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchmarkInputError(f"{path}: not an actor-rollback benchmark export ({exc})") from None


def _read_csv(path: Path) -> dict[str, Estimate]:
    rows = csv.reader(io.StringIO(path.read_text()))
    header = next(rows, None)
    if header is None or [c.strip() for c in header] != CSV_COLUMNS:
        raise BenchmarkInputError(f"{path}:1: expected the header {','.join(CSV_COLUMNS)}, found {header!r}")
    found = {}
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise BenchmarkInputError(f"{path}:{number}: expected 3 cells, found {len(row)}: {row!r}")
        try:
            mean, error = float(row[1]), float(row[2])
            if not (0 < mean < math.inf and 0 <= error < math.inf):
                raise ValueError
        except ValueError:
            raise BenchmarkInputError(f"{path}:{number}: mean_ns {row[1]!r} must be a positive and "
                                      f"standard_error_ns {row[2]!r} a non-negative number of nanoseconds") from None
        if row[0].strip() in found:
            raise BenchmarkInputError(f"{path}:{number}: benchmark {row[0].strip()!r} appears twice")
        found[row[0].strip()] = Estimate(mean, error)
    if not found:
        raise BenchmarkInputError(f"{path}: the CSV export has a header but no benchmarks")
    return found


def write_export(estimates: dict[str, Estimate], path: Path) -> None:
    """A baseline for later comparisons: .csv for spreadsheets, anything else as JSON."""
    if path.suffix == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows([id, repr(e.mean), repr(e.standard_error)] for id, e in sorted(estimates.items()))
        path.write_text(out.getvalue())
        return
    path.write_text(json.dumps({"benchmarks": {id: {"mean_ns": e.mean, "standard_error_ns": e.standard_error}
                                               for id, e in sorted(estimates.items())}}, indent=2) + "\n")


def read_baseline(spec: str, criterion_root: Path | None = None) -> dict[str, Estimate]:
    """A markdown table (.md), an export (.json), a criterion folder, or a saved baseline's NAME."""
    path = Path(spec)
    if path.suffix == ".md":
        if not path.exists():
            raise BenchmarkInputError(f"{path}: no such baseline file")
        return parse_markdown_baseline(path.read_text(), str(path))
    if path.suffix in (".json", ".csv"):
        if not path.exists():
            raise BenchmarkInputError(f"{path}: no such baseline file")
        return read_export(path)
    if path.is_dir():
        return read_criterion(path)
    if criterion_root is not None and "/" not in spec:
        return read_criterion(criterion_root, run=spec)
    raise BenchmarkInputError(f"{spec}: not a .md table, a .json or .csv export, a criterion folder or a saved "
                              "baseline name")


def note(r: Comparison) -> str:
    """What a verdict needs said beside it: the severity, what is missing, or the runs needed."""
    if r.verdict == "missing":
        return f"only in the {'baseline' if r.side == 'current' else 'current run'}"
    if r.verdict == "unverifiable":
        return f"detects ±{r.detectable_pct:.1f} %; ~{r.runs_needed} runs needed"
    return r.severity


def markdown_report(results: list[Comparison], tolerance_pct: float, baseline: str, current: str) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in
              ("within-tolerance", "regression", "improvement", "unverifiable", "missing")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    lines = [f"# Benchmarks against the baseline (±{tolerance_pct:g} %)", "",
             f"**{summary}** — baseline `{baseline}`, current `{current}`.", "",
             "A benchmark is within tolerance only when the 95 % interval of its change lies inside "
             f"±{tolerance_pct:g} %; an interval across a boundary is unverifiable.", "",
             "| benchmark | verdict | change | 95 % interval | note |", "|---|---|---|---|---|"]
    for r in results:
        if r.verdict == "missing":
            lines.append(f"| {r.id} | missing | | | {note(r)} |")
            continue
        lines.append(f"| {r.id} | {r.verdict} | {r.change_pct:+.2f} % | [{r.low_pct:+.2f}, {r.high_pct:+.2f}] % | {note(r)} |")
    return "\n".join(lines) + "\n"


def chart(results: list[Comparison], tolerance_pct: float, medium_pct: float, high_pct: float, path: Path) -> None:
    """Each change with its interval, over the ±tolerance, medium and high bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.verdict != "missing"]
    fig, ax = plt.subplots(figsize=(8, 1 + 0.5 * max(len(shown), 1)))
    for edge, color in ((high_pct, "#f4cccc"), (medium_pct, "#fce5cd"), (tolerance_pct, "#d9ead3")):
        ax.axvspan(-edge, edge, color=color, zorder=0)
    colors = {"within-tolerance": "green", "regression": "red", "improvement": "blue", "unverifiable": "orange"}
    for y, r in enumerate(shown):
        ax.errorbar(r.change_pct, y, xerr=[[r.change_pct - r.low_pct], [r.high_pct - r.change_pct]], fmt="o",
                    color=colors[r.verdict], capsize=4)
    ax.set_yticks(range(len(shown)), [r.id for r in shown])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"change of the mean, % (bands: ±{tolerance_pct:g}, ±{medium_pct:g}, ±{high_pct:g})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def bench_once(ctx: StepContext, tree: Path, target_dir: str | None, label: str = "") -> dict[str, Estimate]:
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
    return read_criterion(criterion_root(tree, target_dir, b.criterion_dir))


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
                current_runs.append(bench_once(ctx, ctx.repo, target_dir, f"round {n}/{b.rounds}"))
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
