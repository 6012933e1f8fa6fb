"""`actor-rollback compare-benchmarks` on real criterion output (tests/data/criterion-0.3.6: a
capture of a real criterion 0.3.6 run, from ../shared/reference/samples), against each baseline format."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from actor_rollback.runbook.benchstats import BenchmarkInputError
from actor_rollback.tasks.bench_files import read_baseline, read_criterion, write_export

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote

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


@pytest.mark.parametrize("mean", [0.0, -5000.0, 1e400])
def test_a3_a_mean_of_zero_or_less_in_criterion_output_is_bad_input_naming_the_file(criterion, tmp_path, mean):
    estimates = criterion / "mailbox" / "throughput_1000" / "new" / "estimates.json"
    data = json.loads(estimates.read_text())
    data["mean"]["point_estimate"] = mean  # 1e400 is written as Infinity
    estimates.write_text(json.dumps(data))
    run = compare("--baseline", str(baseline_md(tmp_path, "300 µs")), "--current", str(criterion))
    assert run.returncode == 2, (run.stdout, run.stderr)  # not 1 (a regression) nor 0 (an "improvement")
    assert str(estimates) in " ".join(run.stderr.split()) and "cannot be a benchmark's time" in run.stderr


def test_a3_a_json_export_with_a_zero_mean_is_bad_input_naming_the_file_and_benchmark(criterion, tmp_path):
    export = tmp_path / "baseline.json"
    export.write_text(json.dumps({"benchmarks": {"mailbox/throughput_1000": {"mean_ns": 0, "standard_error_ns": 1}}}))
    run = compare("--baseline", str(export), "--current", str(criterion))
    assert run.returncode == 2 and f"{export}: benchmark 'mailbox/throughput_1000': a mean of 0.0 ns" in " ".join(
        run.stderr.split()), run.stderr


def test_a_saved_criterion_baseline_is_read_by_name(criterion):
    saved = criterion / "mailbox" / "throughput_1000" / "before-refactor"
    shutil.copytree(criterion / "mailbox" / "throughput_1000" / "new", saved)
    assert read_baseline("before-refactor", criterion)["mailbox/throughput_1000"].mean == pytest.approx(307175.048234127)
    with pytest.raises(BenchmarkInputError, match="no nope/estimates.json"):
        read_baseline("nope", criterion)


def test_a_csv_export_round_trips_and_serves_as_baseline(criterion, tmp_path):
    export = tmp_path / "baseline.csv"
    write_export(read_criterion(criterion), export)
    assert export.read_text().splitlines()[0] == "benchmark,mean_ns,standard_error_ns"
    assert read_baseline(str(export)) == read_criterion(criterion)
    run = compare("--baseline", str(export), "--current", str(criterion), "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["benchmarks"][0]["verdict"] == "within-tolerance"


@pytest.mark.parametrize("text,message", [
    ("id,mean,se\na,1,1\n", ":1: expected the header benchmark,mean_ns,standard_error_ns"),
    ("benchmark,mean_ns,standard_error_ns\na,100,1\nb,fast,1\n", ":3: mean_ns 'fast' must be a positive"),
    ("benchmark,mean_ns,standard_error_ns\na,0,1\n", ":2: mean_ns '0' must be a positive"),
    ("benchmark,mean_ns,standard_error_ns\na,100,-1\n", ":2: mean_ns '100' must be a positive and standard_error_ns '-1'"),
    ("benchmark,mean_ns,standard_error_ns\na,100\n", ":2: expected 3 cells, found 2"),
    ("benchmark,mean_ns,standard_error_ns\na,100,1\na,101,1\n", ":3: benchmark 'a' appears twice"),
    ("benchmark,mean_ns,standard_error_ns\n", "has a header but no benchmarks"),
])
def test_a_broken_csv_baseline_names_the_line_and_cell(tmp_path, text, message):
    path = tmp_path / "baseline.csv"
    path.write_text(text)
    with pytest.raises(BenchmarkInputError, match=re.escape(f"{path}{message}" if message.startswith(":") else message)):
        read_baseline(str(path))


def test_compare_benchmarks_exports_the_current_run_as_a_baseline(criterion, tmp_path):
    export = tmp_path / "after-rollback.csv"
    run = compare("--baseline", str(baseline_md(tmp_path, "307 µs")), "--current", str(criterion),
                  "--export", str(export))
    assert run.returncode in (0, 3), run.stderr
    assert read_baseline(str(export)) == read_criterion(criterion)


def criterion_tree(root: Path, means: dict[str, float], first: str = "mean", full_ids: dict[str, str] | None = None) -> Path:
    """A criterion-shaped folder: `<path>/new/{estimates,benchmark}.json` per benchmark, a report/ beside."""
    for path, mean in means.items():
        new = root / path / "new"
        new.mkdir(parents=True)
        stats = {name: {"confidence_interval": {"confidence_level": 0.95, "lower_bound": 0, "upper_bound": 0},
                        "point_estimate": mean * scale, "standard_error": mean * 0.001}
                 for name, scale in (("median", 0.98), ("mean", 1.0), ("std_dev", 0.01))}
        order = [first] + [k for k in stats if k != first]
        (new / "estimates.json").write_text(json.dumps({k: stats[k] for k in order}))
        (new / "benchmark.json").write_text(json.dumps({"full_id": (full_ids or {}).get(path, path)}))
        (root / path / "report").mkdir()
        (root / path / "report" / "index.html").write_text("<html></html>")
    return root


def table(tmp_path: Path, means: dict[str, float]) -> Path:
    path = tmp_path / "baseline.md"
    path.write_text("| Benchmark | Mean | Std Dev |\n|---|---|---|\n"
                    + "".join(f"| {id} | {mean} ns | 1 ns |\n" for id, mean in means.items()))
    return path


def test_a3_prints_a_summary_and_only_the_rows_outside_tolerance_unless_all(tmp_path):
    current = criterion_tree(tmp_path / "criterion", {"g/same": 1000.0, "g/slower": 1100.0, "g/faster": 900.0})
    baseline = table(tmp_path, {"g/same": 1000.0, "g/slower": 1000.0, "g/faster": 1000.0})
    run = compare("--baseline", str(baseline), "--current", str(current), "--report", str(tmp_path / "r.md"))
    lines = run.stdout.splitlines()
    assert run.returncode == 1
    assert lines[0].startswith("3 benchmarks, current ") and lines[0].endswith(
        "1 within-tolerance, 1 regression, 1 improvement — exit 1"), lines[0]
    rows = [line for line in lines if line.startswith("| g/")]
    assert [row.split(" | ")[:2] for row in rows] == [["| g/faster", "improvement"], ["| g/slower", "regression"]]
    assert lines[-1] == "1 within tolerance not shown (--all shows every row; --report FILE writes them all)"
    assert "| g/same | within-tolerance |" in (tmp_path / "r.md").read_text()  # the report has every row
    every = compare("--baseline", str(baseline), "--current", str(current), "--all")
    assert len([line for line in every.stdout.splitlines() if line.startswith("| g/")]) == 3
    assert "not shown" not in every.stdout


def test_a3_the_id_is_the_folder_path_and_benchmark_json_names_a_folder_criterion_made_file_safe(tmp_path):
    current = criterion_tree(tmp_path / "criterion", {"g/plain": 1000.0, "g/a_b": 2000.0}, first="median",
                             full_ids={"g/a_b": "g/a:b"})
    baseline = table(tmp_path, {"g/plain": 1000.0, "g/a:b": 2000.0})
    run = compare("--baseline", str(baseline), "--current", str(current), "--json")
    verdicts = {r["id"]: r["verdict"] for r in json.loads(run.stdout)["benchmarks"]}
    assert verdicts == {"g/plain": "within-tolerance", "g/a:b": "within-tolerance"}, verdicts  # mean found after median


def test_a3_compare_benchmarks_starts_without_prefect_git_rich_or_the_config_models(tmp_path):
    """What makes it as fast as a plain script: none of the heavy libraries is even imported (typer brings
    pydantic itself; the configuration's models are not built without --config)."""
    current = criterion_tree(tmp_path / "criterion", {"g/x": 1000.0})
    baseline = table(tmp_path, {"g/x": 1000.0})
    probe = ("import sys\nfrom actor_rollback.deployments.entry import main\n"
             f"sys.argv = ['actor-rollback', 'compare-benchmarks', '--baseline', {str(baseline)!r}, '--current', "
             f"{str(current)!r}]\n"
             "try:\n    main()\nexcept SystemExit as end:\n    code = end.code\n"
             "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'git', 'rich', 'pandas', 'matplotlib'}"
             " | ({'actor_rollback.runbook.config'} & set(sys.modules)))\n"
             "print(code, heavy)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr
