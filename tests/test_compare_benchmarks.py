"""`actor-rollback compare-benchmarks` on real criterion output (tests/data/criterion-0.3.6: a
capture of a real criterion 0.3.6 run, from ../shared/reference/samples), against each baseline format."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runbook.benchstats import BenchmarkInputError
from tasks.benchmarks import read_baseline, read_criterion, write_export

CLI = str(Path(sys.executable).parent / "actor-rollback")
SAMPLE = Path(__file__).resolve().parent / "data" / "criterion-0.3.6"


@pytest.fixture
def criterion(tmp_path) -> Path:
    root = tmp_path / "criterion"
    shutil.copytree(SAMPLE, root)
    return root


def compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "compare-benchmarks", *args], capture_output=True, text=True, timeout=120)


def baseline_md(tmp_path: Path, mean: str, spread: str = "0.5 µs") -> Path:
    path = tmp_path / "baseline_before_refactor.md"
    path.write_text(f"| Benchmark | Mean | Std Dev |\n|-----------|------|---------|\n"
                    f"| mailbox/throughput_1000 | {mean} | {spread} |\n")
    return path


def test_reads_criterion_estimates_with_their_ids(criterion):
    estimates = read_criterion(criterion)
    assert list(estimates) == ["mailbox/throughput_1000"]
    assert estimates["mailbox/throughput_1000"].mean == pytest.approx(307175.048234127)
    assert estimates["mailbox/throughput_1000"].standard_error == pytest.approx(1832.3631218392643)


def test_a_regression_against_the_markdown_baseline_exits_1_with_report_and_chart(criterion, tmp_path):
    report, chart = tmp_path / "report.md", tmp_path / "chart.png"
    run = compare("--baseline", str(baseline_md(tmp_path, "270 µs")), "--current", str(criterion),
                  "--report", str(report), "--chart", str(chart), "--json")
    assert run.returncode == 1, run.stderr
    result = json.loads(run.stdout)["benchmarks"][0]
    assert result["verdict"] == "regression" and result["severity"] == "high"  # +13.8 %
    assert report.read_text().startswith("# Benchmarks against the baseline (±2 %)\n\n**1 regression**")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_run_as_its_own_baseline_is_within_tolerance(criterion, tmp_path):
    export = tmp_path / "export.json"
    write_export(read_criterion(criterion), export)
    run = compare("--baseline", str(export), "--current", str(criterion), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["benchmarks"][0]["verdict"] == "within-tolerance"


def test_a_noisy_baseline_is_unverifiable_not_within_tolerance(criterion, tmp_path):
    run = compare("--baseline", str(baseline_md(tmp_path, "307 µs", spread="60 µs")), "--current", str(criterion),
                  "--json")
    assert run.returncode == 3
    result = json.loads(run.stdout)["benchmarks"][0]
    assert result["verdict"] == "unverifiable" and result["runs_needed"] > 1


def test_a_benchmark_on_one_side_only_is_missing(criterion, tmp_path):
    path = tmp_path / "b.md"
    path.write_text("| Benchmark | Mean | Std Dev |\n|---|---|---|\n| scheduler/schedule_to_run | 4.2 ns | 0.1 ns |\n")
    run = compare("--baseline", str(path), "--current", str(criterion), "--json")
    assert run.returncode == 3
    assert {(r["id"], r["verdict"]) for r in json.loads(run.stdout)["benchmarks"]} == {
        ("mailbox/throughput_1000", "missing"), ("scheduler/schedule_to_run", "missing")}


@pytest.mark.parametrize("args,message", [
    (("--baseline", "nope.md", "--current", "{criterion}"), "nope.md: no such baseline file"),
    (("--baseline", "{md}", "--current", "/nonexistent"), "no such criterion folder"),
    (("--baseline", "{md}", "--current", "{criterion}", "--tolerance", "0"), "expected a percentage"),
])
def test_bad_input_exits_2_naming_the_problem(criterion, tmp_path, args, message):
    md = baseline_md(tmp_path, "300 µs")
    run = compare(*(a.format(criterion=criterion, md=md) for a in args))
    assert run.returncode == 2 and message in " ".join(run.stderr.split())


def test_a_saved_criterion_baseline_is_read_by_name(criterion):
    saved = criterion / "mailbox" / "throughput_1000" / "before-refactor"
    shutil.copytree(criterion / "mailbox" / "throughput_1000" / "new", saved)
    assert read_baseline("before-refactor", criterion)["mailbox/throughput_1000"].mean == pytest.approx(307175.048234127)
    with pytest.raises(BenchmarkInputError, match="no nope/estimates.json"):
        read_baseline("nope", criterion)
