"""`actor-rollback compare-benchmarks` (A.3), kept apart from the rest of the CLI.

The command a user runs on thousands of benchmarks must start and finish like a plain script:
it imports no Prefect, no git and no pydantic (the shipped severity thresholds are read with
tomllib; `--config` loads and validates the whole configuration), reads only each benchmark's
`<run>/estimates.json`, and prints a summary with the rows that are not within tolerance (every
row with `--all`; `--report` and `--json` always hold every row). `deployments/entry.py` starts
it without loading the rest of the CLI; `actor-rollback --help` lists it with the others.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from actor_rollback.runbook import SHIPPED_CONFIG

EXIT_BAD_INPUT = 2

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _commands() -> None:
    """compare-benchmarks alone (the rest of the CLI is `actor-rollback --help`)."""


def bad_input(message: str, as_json: bool) -> typer.Exit:
    """Exit 2 naming the problem: one JSON object on stdout with --json, the message on stderr always."""
    if as_json:
        print(json.dumps({"error": message, "exit_code": EXIT_BAD_INPUT}))
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(EXIT_BAD_INPUT)


def severity_thresholds(config: Path | None) -> tuple[float, float]:
    """(medium, high) regression %: the shipped values, or those of --config laid over them (validated)."""
    if config is not None:
        from actor_rollback.runbook.config import load_config

        severity = load_config(config).severity
        return severity.medium_regression_pct, severity.high_regression_pct
    import tomllib

    severity = tomllib.loads(SHIPPED_CONFIG.read_text())["severity"]
    return float(severity["medium_regression_pct"]), float(severity["high_regression_pct"])


def instruction_counts(baseline: Path, current: Path, export: Path | None):
    """(baseline, current) counts when both are instruction-count exports; None when neither is; bad input for a
    mix (times cannot be compared with instruction counts)."""
    from actor_rollback.runbook.benchstats import BenchmarkInputError
    from actor_rollback.runbook.instructions import read_counts

    base, cur = read_counts(baseline), read_counts(current)
    if base is None and cur is None:
        return None
    if base is None or cur is None:
        raise BenchmarkInputError("one side is an instruction-count export and the other is not: compare counts "
                                  "with counts (the benchmark step's <incident>-baseline.json and -current.json)")
    if export:
        raise BenchmarkInputError("--export saves criterion's times; instruction counts are already an export")
    return base, cur


@app.command("compare-benchmarks")
def compare_benchmarks(
    baseline: Annotated[str, typer.Option("--baseline", help="A | Benchmark | Mean | Std Dev | table (.md), an export (.json/.csv), a criterion folder, a saved baseline name, or the benchmark step's instruction-count export (<incident>-baseline.json)")],
    current: Annotated[Path, typer.Option("--current", help="criterion's output folder (target/criterion), or an instruction-count export (<incident>-current.json)")],
    tolerance: Annotated[float, typer.Option("--tolerance", help="± percent that counts as back at baseline")] = 2.0,
    config: Annotated[Optional[Path], typer.Option("--config", help="rollback.toml for the severity thresholds (default: the shipped one)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with every benchmark on stdout")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Print every benchmark's row, not only those outside tolerance")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the markdown report (every row) here")] = None,
    chart_file: Annotated[Optional[Path], typer.Option("--chart", help="Write a PNG chart here")] = None,
    export: Annotated[Optional[Path], typer.Option(
        "--export", help="Also save the current results as a baseline for later runs (.csv or .json)")] = None,
) -> None:
    """Compare criterion results with a baseline: 0 within tolerance, 1 regression, 2 bad input, 3 unverifiable."""
    from actor_rollback.runbook.benchstats import BenchmarkInputError, compare
    from actor_rollback.runbook.instructions import compare_counts
    from actor_rollback.tasks.bench_files import chart, markdown_report, read_baseline, read_criterion, summary, write_export

    try:
        if not 0 < tolerance < 100:
            raise BenchmarkInputError(f"--tolerance {tolerance}: expected a percentage between 0 and 100")
        if export and export.suffix not in (".csv", ".json"):
            raise BenchmarkInputError(f"--export {export}: name a .csv or .json file")
        medium, high = severity_thresholds(config)
        counted = instruction_counts(Path(baseline), current, export)
        if counted is not None:  # two instruction-count exports of the benchmark step (benchmarks.mode)
            results = compare_counts(*counted, tolerance, medium, high)
        else:
            base = read_baseline(baseline, current)
            estimates = read_criterion(current, known=frozenset(base))
            results = compare(base, estimates, tolerance, medium, high)
    except ValueError as exc:  # BenchmarkInputError, or ConfigError from --config: each names the problem
        raise bad_input(str(exc), as_json) from None
    verdicts = {r.verdict for r in results}
    code = 1 if "regression" in verdicts else 3 if verdicts & {"unverifiable", "missing"} else 0
    if report:
        report.write_text(markdown_report(results, tolerance, baseline, str(current)))
    if export:
        write_export(estimates, export)
    if chart_file:
        chart(results, tolerance, medium, high, chart_file)
    if as_json:
        print(json.dumps({"tolerance_pct": tolerance, "exit_code": code,
                          "benchmarks": [r.__dict__ for r in results]}))
    else:
        sys.stdout.write(summary(results, tolerance, baseline, str(current), show_all, code))
    raise typer.Exit(code)
