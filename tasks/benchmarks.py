"""The benchmark step (P1.C3 / A.3): bench the current tree against the baseline until each benchmark is judged.

Rounds interleave the two trees, command by command, alternating which goes first; after the first
look (at `max(benchmarks.rounds, 7)` rounds) a look follows each round, and only the commands (and,
through criterion's filter, the benchmarks) still undecided run again, until every benchmark has a
verdict or `benchmarks.budget_minutes` is spent. The statistics are runbook/benchstats.py's sequential
sign test. `cargo bench` exits 0 even when criterion prints "Performance has regressed", so the
numbers come from criterion's files (tasks/bench_files.py reads them and the baselines).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from git import GitCommandError

from actor_rollback.runbook.benchstats import (FIRST_LOOK, Comparison, Estimate, PairedChanges, judge_paired, log_change_pct,
                                look_rounds, median)
from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.bench_files import markdown_report, note, read_baseline, read_criterion_stamped
from actor_rollback.tasks.cargo_resolve import cargo_resolves
from actor_rollback.tasks.commands import command_record, require_program, run_bounded, secret_names
from actor_rollback.tasks.context import StepContext, artifact_key, in_prefect_run, step_logger
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.git_repo import open_workspace, run_git
from actor_rollback.tasks.progress import StepProgress, table_in_place


# ---------------------------------------------------------------- running them (P1.C3 / A.3)


@dataclass
class Side:
    """One tree under measurement: the current checkout, or the baseline ref's files with their own target dir
    (sharing one made cargo rebuild each tree before every run: 1.5 s of compiling, and a hot CPU, per bench)."""

    label: str
    tree: Path
    target_dir: str | None
    statistic: str  # criterion's "median" (robust to a burst inside one run) or "mean" (to meet a file's Mean)
    known: frozenset[str] = frozenset()
    seen: dict[str, tuple[Estimate, int]] = field(default_factory=dict)  # the criterion folder (estimate, mtime)
    # as the last command left it


def criterion_root(tree: Path, target_dir: str | None, configured: str) -> Path:
    if target_dir:
        return Path(target_dir) / "criterion"
    return tree / configured


def _cargo_bench(argv: list[str]) -> bool:
    """`cargo bench --bench NAME …`: a criterion target by name (a bare `cargo bench` also runs the library's
    libtest harness, which refuses criterion's options)."""
    return len(argv) > 2 and Path(argv[0]).name == "cargo" and argv[1] == "bench" and "--bench" in argv[2:]


FILTERABLE = re.compile(r"[A-Za-z0-9_/.-]+")


def command_for(command: str, extra: list[str], only: set[str] | None = None) -> str:
    """The configured command with criterion's options after `--`, and, for later rounds, a filter naming only
    the benchmarks still undecided (criterion matches its regex against the benchmark's id)."""
    argv = shlex.split(command)
    if not _cargo_bench(argv):
        return command
    args = list(extra)
    if only and all(FILTERABLE.fullmatch(id) for id in only):
        args.append("^(?:" + "|".join(id.replace(".", "\\.") for id in sorted(only)) + ")$")
    if not args:
        return command
    return shlex.join(argv + args if "--" in argv else argv + ["--", *args])


def run_bench(ctx: StepContext, side: Side, command: str, label: str) -> dict[str, Estimate]:
    """Run one bench command on one side; the benchmarks it measured (the estimates files it wrote: stale
    results of benchmarks no command runs any more are left out)."""
    b = ctx.cfg.benchmarks
    env = {**b.env, **({"CARGO_TARGET_DIR": side.target_dir} if side.target_dir else {})}
    started = time.monotonic()
    outcome = run_bounded(command, side.tree, b.timeout_seconds, env=env, secrets=secret_names(ctx.cfg),
                          record=command_record(ctx, f"bench-{side.label}", command))
    step_logger().info("benchmarks %s, %s: `%s` took %.1f s", label, side.label, command, time.monotonic() - started)
    if outcome.returncode is None:
        raise StepError(f"`{command}` did not finish within {b.timeout_seconds} s in {side.tree}")
    if outcome.returncode != 0:
        raise StepError(f"`{command}` exited {outcome.returncode} in {side.tree}: " + " | ".join(outcome.tail[-4:]))
    now = read_criterion_stamped(criterion_root(side.tree, side.target_dir, b.criterion_dir), known=side.known,
                                 statistic=side.statistic)
    measured = {id: estimate for id, (estimate, stamp) in now.items() if side.seen.get(id, (None, None))[1] != stamp}
    side.seen = now
    return measured


def warm_build(ctx: StepContext, side: Side) -> None:
    """`cargo bench --no-run` once per tree before the measured rounds: no round pays for (or is heated by) a build."""
    b = ctx.cfg.benchmarks
    env = {**b.env, **({"CARGO_TARGET_DIR": side.target_dir} if side.target_dir else {})}
    for command in b.commands:
        argv = shlex.split(command)
        if not _cargo_bench(argv):
            continue
        build = shlex.join([*(argv[:argv.index("--")] if "--" in argv else argv), "--no-run"])
        started = time.monotonic()
        outcome = run_bounded(build, side.tree, b.timeout_seconds, env=env, secrets=secret_names(ctx.cfg))
        if outcome.returncode != 0:
            raise StepError(f"`{build}` (the build before the rounds) "
                            f"{'timed out' if outcome.returncode is None else f'exited {outcome.returncode}'} in "
                            f"{side.tree}: " + " | ".join(outcome.tail[-4:]))
        step_logger().info("benchmarks: %s built in %.1f s (`%s`)", side.label, time.monotonic() - started, build)


def _criterion_now(ctx: StepContext, side: Side) -> dict[str, tuple[Estimate, int]]:
    root = criterion_root(side.tree, side.target_dir, ctx.cfg.benchmarks.criterion_dir)
    try:
        return read_criterion_stamped(root, known=side.known, statistic=side.statistic)
    except BadInputError:  # nothing benched there yet
        return {}


def baseline_target(repo: Path, target_dir: str | None) -> str:
    """The baseline tree's own cargo target dir, kept between rollbacks beside the current one, and seeded on
    first use with a copy of the current release build (the dependencies are then not compiled again)."""
    current = Path(target_dir) if target_dir else repo / "target"
    own = current / "actor-rollback-baseline"
    if not own.exists() and (current / "release").is_dir():
        shutil.copytree(current / "release", own / "release", symlinks=True, ignore_dangling_symlinks=True)
    return str(own)


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
    # -m: the files are new to cargo; with the commit's times a build of another tree could pass for fresh
    subprocess.run(["tar", "-x", "-m", "-C", str(tree)], input=archive, check=True)
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
    from prefect.artifacts import create_markdown_artifact

    key = artifact_key("benchmarks-phase", ctx.phase, ctx.incident)
    table_in_place(key, verdict_rows(results), f"{ctx.step_id} benchmark verdicts, phase {ctx.phase}, {ctx.incident}")
    create_markdown_artifact(markdown=report, key=f"{key}-report",
                             description=f"{ctx.step_id} benchmark report, phase {ctx.phase}, {ctx.incident}")


def _plan_benchmarks(ctx: StepContext) -> StepResult:
    """P1.C3 / A.3 read-only: the bench programs exist, the baseline is there and readable."""
    b = ctx.cfg.benchmarks
    for command in b.commands:
        require_program(command, ctx.repo, "benchmarks.commands")
    if b.mode == "instructions":
        if not b.baseline_ref:
            raise BadInputError("benchmarks.mode = 'instructions' needs benchmarks.baseline_ref (e.g. 'merge-parent')")
        if shutil.which("valgrind") is None:
            raise BadInputError("benchmarks.mode = 'instructions' needs Valgrind on PATH (Debian package valgrind)")
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
    resolves = cargo_resolves(ctx.repo, "benchmarks.commands")
    if b.mode == "instructions":
        return StepResult(id=ctx.step_id, name="benchmarks", status="planned", evidence=[
            *b.commands, resolves, f"by instruction counts under Callgrind, {b.instruction_repeats} runs per side; "
            f"compare with {source} (±{b.tolerance_pct:g} %)" + (", a regression confirmed by the wall clock"
                                                                  if b.confirm_by_wall else "")])
    return StepResult(id=ctx.step_id, name="benchmarks", status="planned", evidence=[
        *b.commands, resolves, f"at least {max(b.rounds, FIRST_LOOK)} rounds, more while undecided, at most "
        f"{b.budget_minutes:g} min; compare with {source} (±{b.tolerance_pct:g} %)"])


@dataclass
class Rounds:
    """The sequential rounds' state: each benchmark's paired changes, and the verdicts reached so far."""

    baseline_error_pct: dict[str, float]  # a baseline file's own uncertainty per benchmark (0 when benched here)
    changes: dict[str, list[float]] = field(default_factory=dict)
    settled: dict[str, Comparison] = field(default_factory=dict)
    produced: dict[str, set[str]] = field(default_factory=dict)  # command → the benchmarks it measures
    looks: int = 0

    @property
    def pending(self) -> set[str]:
        return set(self.changes) - set(self.settled)

    def series(self, id: str) -> PairedChanges:
        return PairedChanges(id, tuple(self.changes[id]), self.baseline_error_pct.get(id, 0.0))

    def look(self, ctx: StepContext, final: bool = False) -> None:
        """Take the next look: every undecided benchmark is judged at this look's alpha."""
        b, sev = ctx.cfg.benchmarks, ctx.cfg.severity
        self.looks += 1
        for id in sorted(self.pending):
            verdict = judge_paired(self.series(id), self.looks, b.tolerance_pct, sev.medium_regression_pct,
                                   sev.high_regression_pct, final=final)
            if verdict is not None:
                self.settled[id] = verdict

    def table(self) -> list[Comparison]:
        """Every benchmark: its verdict, or `undecided` with the median change so far."""
        rows = dict(self.settled)
        for id in self.pending:
            values = self.changes[id]
            centre = median(values) if values else 0.0
            rows[id] = Comparison(id=id, verdict="undecided", change_pct=centre, low_pct=min(values, default=0.0),
                                  high_pct=max(values, default=0.0), rounds=len(values))
        return [rows[id] for id in sorted(rows)]


def _interim(ctx: StepContext, rounds: Rounds, text: str) -> None:
    """After each round: the verdicts table (one artifact, updated in place) fills in as benchmarks settle."""
    table_in_place(artifact_key("benchmarks-phase", ctx.phase, ctx.incident), verdict_rows(rounds.table()),
                   f"{ctx.step_id} benchmark verdicts so far ({text})")


def _one_round(ctx: StepContext, n: int, sides: list[Side], state: Rounds) -> dict[str, dict[str, Estimate]]:
    """Round n: each command whose benchmarks are not all decided, on every side back to back — the baseline first
    in odd rounds, the current tree first in even ones, so a steady drift cancels — limited by criterion's
    filter to the undecided benchmarks. What each side measured, by its label."""
    b = ctx.cfg.benchmarks
    order = sides if n % 2 else sides[::-1]
    measured: dict[str, dict[str, Estimate]] = {side.label: {} for side in sides}
    for command in b.commands:
        wanted = state.produced.get(command)
        if wanted is not None and not wanted & state.pending:
            continue  # every benchmark of this command has its verdict
        only = None if wanted is None or wanted <= state.pending else wanted & state.pending
        for side in order:
            got = run_bench(ctx, side, command_for(command, b.criterion_args, only), f"round {n}")
            measured[side.label].update(got)
            if n == 1:
                state.produced.setdefault(command, set()).update(got)
    return measured


def _why_stop(state: Rounds, out_of_time: bool, budget_minutes: float) -> str:
    """Why the rounds end now, or "" to go on."""
    if not state.pending:
        return "every benchmark settled"
    if any(r.verdict == "regression" for r in state.settled.values()):
        return "a regression decides the step: the undecided benchmarks were not measured further"
    if out_of_time:
        return f"benchmarks.budget_minutes ({budget_minutes:g}) spent: {len(state.pending)} benchmark(s) undecided"
    return ""


def _describe_benchmarks(spec, cfg, phase) -> list[str]:
    b = cfg.benchmarks
    against = (f"{b.baseline_ref} built and benched in the same run, round by round" if b.baseline_ref
               else f"{b.baseline}, round by round")
    return [*b.commands, f"compare with {against} (±{b.tolerance_pct:g} %) until every benchmark is decided "
                         f"or {b.budget_minutes:g} min of measuring is spent"]


@declare_step("benchmarks", describe=_describe_benchmarks, evidence={"P1.C3": "benchmarks"})
def verify_benchmarks(ctx: StepContext) -> StepResult:
    """P1.C3 / A.3: bench the current tree against the baseline, round after round, until every benchmark has a
    verdict that holds at ALPHA however many looks were taken — or the time budget is spent (`unverifiable`)."""
    b = ctx.cfg.benchmarks
    if ctx.dry_run:
        return _plan_benchmarks(ctx)
    if b.mode == "instructions":
        return verify_by_instructions(ctx)
    started = time.monotonic()
    budget = b.budget_minutes * 60
    target_dir = ctx.cargo_target_dir()
    first = max(b.rounds, FIRST_LOOK)
    progress = StepProgress(ctx, "benchmarks", budget, f"at least {first} rounds, at most {b.budget_minutes:g} min")
    with tempfile.TemporaryDirectory(prefix="actor-rollback-bench-") as scratch:
        current = Side("current tree", ctx.repo, target_dir, "median" if b.baseline_ref else "mean")
        if b.baseline_ref:
            tree, sha = _baseline_tree(ctx, Path(scratch))
            baseline = Side(f"baseline {sha[:10]}", tree, baseline_target(ctx.repo, target_dir), "median")
            sides, source, fixed = [baseline, current], f"{b.baseline_ref} ({sha[:10]}), benched in the same run", {}
        else:
            fixed = read_baseline(str(ctx.repo / b.baseline))
            current.known = frozenset(fixed)
            sides, source = [current], b.baseline
        for side in sides:
            progress.update(0, f"building the benches of the {side.label} (cargo bench --no-run; cargo may first "
                               "wait for its lock on the build dir)")
            warm_build(ctx, side)
            side.seen = _criterion_now(ctx, side)  # what is there before round 1 is stale unless a command reruns it
        measuring = time.monotonic()  # the budget is for measuring: a cold build must not eat the rounds
        state = Rounds({id: 100 * e.standard_error / e.mean for id, e in fixed.items()})
        missing: list[Comparison] = []
        n = 0
        while True:
            n += 1
            round_started = time.monotonic()
            measured = _one_round(ctx, n, sides, state)
            cur = measured[current.label]
            base = measured[baseline.label] if b.baseline_ref else fixed
            if n == 1:
                missing = [Comparison(id=id, verdict="missing", side="current") for id in sorted(set(base) - set(cur))]
                missing += [Comparison(id=id, verdict="missing", side="baseline") for id in sorted(set(cur) - set(base))]
                state.changes = {id: [] for id in set(cur) & set(base)}
            for id in state.pending & set(cur) & set(base):
                state.changes[id].append(log_change_pct(cur[id].mean, base[id].mean))
            if n == look_rounds(first, state.looks + 1):
                state.look(ctx)
            last_round = time.monotonic() - round_started
            elapsed = time.monotonic() - measuring
            settled = f"{len(state.settled)} of {len(state.changes)} benchmarks settled"
            progress.update(min(elapsed, budget), f"round {n} ({last_round:.0f} s): {settled}")
            _interim(ctx, state, f"round {n}, {settled}")
            reason = _why_stop(state, elapsed + last_round > budget, b.budget_minutes)
            if reason:
                break
        if state.pending:
            state.look(ctx, final=True)
    results = sorted([*state.settled.values(), *missing], key=lambda r: r.id)
    elapsed = time.monotonic() - started
    publish(ctx, results, markdown_report(results, b.tolerance_pct, source, f"{ctx.repo} ({n} rounds)",
                                          method=f"The change is the median of the rounds' paired changes; {SEQUENTIAL}."))
    verdicts = {r.verdict for r in results}
    progress.finish(", ".join(f"{sum(r.verdict == v for r in results)} {v}" for v in sorted(verdicts)) or "no benchmarks")
    evidence = [f"{n} round(s) of {len(b.commands)} bench command(s) in {elapsed:.0f} s ({reason}); baseline: "
                f"{source}; {SEQUENTIAL}", *(r.describe() for r in results)]
    if "regression" in verdicts:
        worst = max(r.change_pct for r in results if r.verdict == "regression")
        return StepResult(id=ctx.step_id, name="benchmarks", status="failed", failure="fault", evidence=evidence,
                          data={"benchmarks": "fail", "regression_pct": f"{worst:.2f}"})
    if verdicts & {"unverifiable", "missing"} or not results:
        return StepResult(id=ctx.step_id, name="benchmarks", status="needs-human", evidence=evidence,
                          data={"benchmarks": "unverified"})
    return StepResult(id=ctx.step_id, name="benchmarks", status="done", evidence=evidence,
                      data={"benchmarks": "pass"})


SEQUENTIAL = ("each verdict is the sign test's interval of the median per-round change, alpha spent over the "
              "looks so that it holds at 95 % however many rounds were run")


# ---------------------------------------------------------------- by instruction counts (benchmarks.mode)

NOT_TIME = ("Instruction counts are not time: I/O, lock contention, cache misses and memory bandwidth change wall "
            "time without changing the count (and the reverse); `benchmarks.confirm_by_wall` has a regression "
            "confirmed by the wall-clock rounds.")


def verify_by_instructions(ctx: StepContext) -> StepResult:
    """P1.C3 / A.3 by Callgrind's instructions per iteration (tasks/instructions.py): the baseline ref and the current
    tree built in the same run, each benchmark counted `instruction_repeats` times per side, one verdict each."""
    from actor_rollback.runbook.instructions import judge
    from actor_rollback.tasks.instructions import build_targets, count

    b, sev = ctx.cfg.benchmarks, ctx.cfg.severity
    if not b.baseline_ref:
        raise BadInputError("benchmarks.mode = 'instructions' compares two builds in the same run: set "
                            "benchmarks.baseline_ref (e.g. 'merge-parent'); a file of times cannot be compared with "
                            "instruction counts")
    if shutil.which("valgrind") is None:
        raise BadInputError("benchmarks.mode = 'instructions' needs Valgrind (Debian package valgrind) on PATH; "
                            "install it or set benchmarks.mode = 'wall'")
    started = time.monotonic()
    target_dir = ctx.cargo_target_dir()
    progress = StepProgress(ctx, "benchmarks", b.budget_minutes * 60, "by instruction counts under Callgrind")
    with tempfile.TemporaryDirectory(prefix="actor-rollback-bench-") as scratch:
        tree, sha = _baseline_tree(ctx, Path(scratch))
        sides = {"baseline": (tree, baseline_target(ctx.repo, target_dir)), "current": (ctx.repo, target_dir)}
        built = {}
        for label, (where, directory) in sides.items():
            progress.update(0, f"building the benches of the {label} tree (cargo bench --no-run)")
            built[label] = build_targets(ctx, where, directory)
        counts: dict[str, dict[str, list[float]]] = {"baseline": {}, "current": {}}
        spreads: dict[str, list[float]] = {}
        iterations: dict[str, int] = {}
        for n in range(1, b.instruction_repeats + 1):
            for label in (("baseline", "current") if n % 2 else ("current", "baseline")):  # interleaved
                env = {**b.env, **({"CARGO_TARGET_DIR": sides[label][1]} if sides[label][1] else {})}
                for target in built[label]:
                    for id in target.ids:
                        progress.update(min(time.monotonic() - started, b.budget_minutes * 60),
                                        f"repeat {n} of {b.instruction_repeats}: {label} {id} under Callgrind")
                        value, spread, iters = count(ctx, target, id, env)
                        counts[label].setdefault(id, []).append(value)
                        spreads.setdefault(id, []).append(spread)
                        iterations[id] = max(iterations.get(id, 0), iters)
    base, cur = counts["baseline"], counts["current"]
    results = [judge(id, base[id], cur[id], spreads[id], b.tolerance_pct, sev.medium_regression_pct,
                     sev.high_regression_pct) for id in sorted(set(base) & set(cur))]
    results += [Comparison(id=id, verdict="missing", side="current") for id in sorted(set(base) - set(cur))]
    results += [Comparison(id=id, verdict="missing", side="baseline") for id in sorted(set(cur) - set(base))]
    results.sort(key=lambda r: r.id)
    elapsed = time.monotonic() - started
    source = f"{b.baseline_ref} ({sha[:10]}), built in the same run"
    exported = export_counts(ctx, counts)
    method = (f"Callgrind's instructions per iteration (criterion's doubling warm-up, the difference of the last two "
              f"parts), {b.instruction_repeats} runs per side, interleaved; the band is the runs' and estimates' "
              f"spread. {NOT_TIME}")
    publish(ctx, results, markdown_report(results, b.tolerance_pct, source, f"{ctx.repo} (instruction counts)",
                                          method=method) + "\n" + instruction_table(results, base, cur, iterations))
    verdicts = {r.verdict for r in results}
    progress.finish(", ".join(f"{sum(r.verdict == v for r in results)} {v}" for v in sorted(verdicts)) or "no benchmarks")
    evidence = [f"decided by instruction counts (Callgrind): {b.instruction_repeats} run(s) per side of "
                f"{sum(len(t.ids) for t in built['current'])} benchmark(s) in {elapsed:.0f} s; baseline: {source}; "
                f"counts in {exported}", *(f"{r.describe()}" + _count_note(r.id, base, cur) for r in results), NOT_TIME]
    data = {"measure": "instructions"}
    if "regression" in verdicts and b.confirm_by_wall:
        return _confirmed_by_wall(ctx, results, evidence, data)
    if "regression" in verdicts:
        worst = max(r.change_pct for r in results if r.verdict == "regression")
        return StepResult(id=ctx.step_id, name="benchmarks", status="failed", failure="fault", evidence=evidence,
                          data={**data, "benchmarks": "fail", "regression_pct": f"{worst:.2f}"})
    if verdicts & {"unverifiable", "missing"} or not results:
        return StepResult(id=ctx.step_id, name="benchmarks", status="needs-human", evidence=evidence,
                          data={**data, "benchmarks": "unverified"})
    return StepResult(id=ctx.step_id, name="benchmarks", status="done", evidence=evidence,
                      data={**data, "benchmarks": "pass"})


def _count_note(id: str, base: dict[str, list[float]], cur: dict[str, list[float]]) -> str:
    if id not in base or id not in cur:
        return ""
    return f" — {median(base[id]):,.0f} → {median(cur[id]):,.0f} instructions per iteration"


def instruction_table(results: list[Comparison], base: dict, cur: dict, iterations: dict[str, int]) -> str:
    lines = ["", "| benchmark | baseline instr/iter | current instr/iter | change | band | verdict | warm-up iterations |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if r.verdict == "missing":
            continue
        band = (r.high_pct - r.change_pct) if r.high_pct is not None else 0.0
        lines.append(f"| {r.id} | {median(base[r.id]):,.1f} | {median(cur[r.id]):,.1f} | {r.change_pct:+.3f} % | "
                     f"±{band:.3f} % | {r.verdict} | {iterations.get(r.id, 0)} |")
    return "\n".join(lines) + "\n"


def export_counts(ctx: StepContext, counts: dict[str, dict[str, list[float]]]) -> str:
    """Both sides' counts as compare-benchmarks reads them (A.3): one JSON file per side beside the build."""
    folder = Path(ctx.cargo_target_dir() or ctx.repo / "target") / "actor-rollback-instructions"
    folder.mkdir(parents=True, exist_ok=True)
    for label, by_id in counts.items():
        (folder / f"{ctx.incident}-{label}.json").write_text(json.dumps(
            {"measure": "instructions", "unit": "instructions per iteration", "benchmarks": by_id}, indent=1))
    return str(folder)


def _confirmed_by_wall(ctx: StepContext, results: list[Comparison], evidence: list[str], data: dict) -> StepResult:
    """A regression by instruction count, measured again by the wall-clock rounds (only its commands): both agree →
    failed; the clock says otherwise → a person decides, with both verdicts."""
    regressed = {r.id for r in results if r.verdict == "regression"}
    b = ctx.cfg.benchmarks
    wall_cfg = ctx.cfg.model_copy(update={"benchmarks": b.model_copy(update={"mode": "wall"})})
    wall = verify_benchmarks(dataclasses.replace(ctx, cfg=wall_cfg))
    said = {line.split(":")[0]: line for line in wall.evidence[1:] if ":" in line}
    confirmed = [id for id in sorted(regressed) if " regression " in said.get(id, "")]
    lines = [*evidence, f"confirmed by the wall clock (benchmarks.confirm_by_wall): {wall.evidence[0]}",
             *(said[id] for id in sorted(regressed) if id in said)]
    if confirmed:
        worst = max(r.change_pct for r in results if r.id in confirmed)
        return StepResult(id=ctx.step_id, name="benchmarks", status="failed", failure="fault", evidence=lines,
                          data={**data, "measure": "instructions+wall", "benchmarks": "fail",
                                "regression_pct": f"{worst:.2f}"})
    return StepResult(id=ctx.step_id, name="benchmarks", status="needs-human", evidence=[
        *lines, f"the instruction count says regression for {', '.join(sorted(regressed))}; the wall clock did not "
        "confirm it: a person decides"], data={**data, "measure": "instructions+wall", "benchmarks": "unverified"})
