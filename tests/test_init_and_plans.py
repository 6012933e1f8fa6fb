"""A new user's path on a real-shaped workspace: `init` → review → `plan` (honest about what would
fail) → `run`; partial configs over the shipped defaults; plain output when piped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tree_digest
from realistic_workspace import create_realistic_workspace

from runbook.config import ConfigError, load_config

CLI = str(Path(sys.executable).parent / "actor-rollback")
CRITERION = Path(__file__).resolve().parent / "data" / "criterion-0.3.6"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=cwd,
                          env=os.environ.copy(), timeout=600)


def plan(real, phase: str, *extra: str) -> tuple[int, dict]:
    run = cli("plan", phase, "--repo", str(real.repo), "--json", *extra)
    return run.returncode, json.loads(run.stdout)


def steps_by_id(report: dict) -> dict[str, dict]:
    return {f"{s['id']} {s['name']}": s for s in report["steps"]}


@pytest.fixture
def real(tmp_path):
    return create_realistic_workspace(tmp_path)


# ---------------------------------------------------------------- plans that tell the truth


def test_plan_p0_1_for_a_poc_branch_that_exists_nowhere_would_fail_with_exit_2(real):
    code, report = plan(real, "0")
    archive = steps_by_id(report)["P0.1 archive"]
    assert archive["status"] == "would-fail" and code == 2 and report["outcome"] == "bad-input"
    assert "exists neither here nor on origin" in archive["evidence"][0] and "phases.0.branch" in archive["evidence"][0]


def test_plan_names_every_missing_file_and_goes_on_with_dependents_blocked(real):
    before = tree_digest(real.repo, real.origin)
    code, report = plan(real, "2A")
    steps = steps_by_id(report)
    assert code == 2
    assert steps["P2A.2 find-merge"]["status"] == "would-fail"
    assert steps["P2A.2 revert"]["status"] == "blocked"
    assert steps["P2A.3 config"]["status"] == "would-fail"
    assert "config/actor_system.toml does not exist" in steps["P2A.3 config"]["evidence"][0]
    assert steps["A.3 benchmarks"]["status"] == "would-fail"
    assert "baseline_before_refactor.md does not exist" in steps["A.3 benchmarks"]["evidence"][0]
    assert steps["P1.2c ci"]["status"] == "planned", "the plan goes on past what would fail"
    _, p2b = plan(real, "2B")
    assert steps_by_id(p2b)["P2B.3 code-checks"]["status"] == "would-fail"
    assert "actor_cell.rs does not exist" in steps_by_id(p2b)["P2B.3 code-checks"]["evidence"][0]
    _, p3 = plan(real, "3")
    build = steps_by_id(p3)["P3.1 build"]
    assert build["status"] == "would-fail"
    assert "feature runtime-tokio is declared in no Cargo.toml" in build["evidence"][0]
    assert tree_digest(real.repo, real.origin) == before, "a plan changes nothing"


def test_plan_1_shows_the_preconditions_with_their_verdict_on_this_workspace(real):
    _, report = plan(real, "1")
    steps = steps_by_id(report)
    assert [s["id"] for s in report["steps"][:3]] == ["P1.pre1", "P1.pre2", "P1.pre3"]
    assert steps["P1.pre1 pre-flag-off"]["evidence"][0].startswith("FAIL")
    assert any("modules/actor-core/Cargo.toml: default enables new-scheduler" in line
               for line in steps["P1.pre1 pre-flag-off"]["evidence"])
    assert steps["P1.pre2 pre-old-path"]["status"] == "done"
    assert any("scheduler.rs:6 pub type Scheduler = ReadyQueueScheduler;" in line
               for line in steps["P1.pre2 pre-old-path"]["evidence"])
    assert steps["P1.pre3 pre-baseline"]["evidence"][0].startswith("FAIL")


def test_plan_4_shows_the_last_resort_as_approval_gated():
    run = cli("plan", "4", "--json")
    steps = json.loads(run.stdout)["steps"]
    reset = steps[-1]
    assert (reset["id"], reset["name"], reset["status"]) == ("P4.3", "reset", "skipped")
    assert "approval-gated" in reset["evidence"][0]
    assert any("--force-with-lease" in line for line in reset["evidence"])


@pytest.mark.prefect
def test_dry_run_goes_on_past_a_would_fail_step_and_exits_2(real, prefect_server):
    before = tree_digest(real.repo, real.origin)
    run = cli("run", "2A", "--repo", str(real.repo), "--reason", "plan check", "--dry-run", "--json",
              "--incident", "inc-dry-2a")
    assert run.returncode == 2, run.stderr
    report = json.loads(run.stdout)
    steps = steps_by_id(report)
    assert report["outcome"] == "bad-input"
    assert steps["P2A.2 find-merge"]["status"] == "would-fail" and steps["P2A.2 revert"]["status"] == "blocked"
    assert steps["P2A.3 config"]["status"] == "would-fail"
    assert steps["P1.3a deploy"]["status"] == "would-fail", "later steps are still checked, not skipped"
    assert tree_digest(real.repo, real.origin) == before


# ---------------------------------------------------------------- partial configuration


def test_a_partial_config_overlays_the_shipped_defaults_key_by_key(tmp_path):
    path = tmp_path / "rollback.toml"
    path.write_text("[benchmarks]\ntolerance_pct = 3.0\n")
    cfg = load_config(path)
    assert cfg.benchmarks.tolerance_pct == 3.0
    assert cfg.benchmarks.commands == load_config().benchmarks.commands
    assert cfg.phase("3").title == "Runtime abstraction and no_std" and cfg.severity.owners["high"] == "tech-lead"
    assert cfg.non_defaults == [("benchmarks.tolerance_pct", "3.0", "2.0")]
    path.write_text("[benchmarks]\ntolerance_pc = 3.0\n")
    with pytest.raises(ConfigError, match=r"benchmarks\.tolerance_pc: unknown key"):
        load_config(path)


def test_plan_shows_where_each_non_default_value_came_from(tmp_path):
    path = tmp_path / "ours.toml"
    path.write_text('flag = "fast-sched"\n[benchmarks]\ntolerance_pct = 3.0\n')
    run = cli("plan", "1", "--config", str(path))
    assert run.returncode == 0, run.stderr
    assert f"benchmarks.tolerance_pct = 3.0   (default 2.0; from {path})" in run.stdout
    assert f"flag = 'fast-sched'   (default 'new-scheduler'; from {path})" in run.stdout
    data = json.loads(cli("plan", "1", "--config", str(path), "--json").stdout)["config"]
    assert {"key": "benchmarks.tolerance_pct", "value": "3.0", "default": "2.0"} in data["non_defaults"]


# ---------------------------------------------------------------- plain output when piped


def test_piped_compare_benchmarks_prints_unwrapped_markdown_rows(tmp_path):
    baseline = tmp_path / "baseline.md"
    name = "mailbox/throughput_1000_with_a_name_long_enough_to_wrap_at_eighty_columns"
    baseline.write_text(f"| Benchmark | Mean | Std Dev |\n|---|---|---|\n| {name} | 300 µs | 0.5 µs |\n"
                        "| mailbox/throughput_1000 | 307 µs | 0.5 µs |\n")
    current = tmp_path / "criterion"
    shutil.copytree(CRITERION, current)
    run = cli("compare-benchmarks", "--baseline", str(baseline), "--current", str(current))
    rows = [line for line in run.stdout.splitlines() if line.startswith("|")]
    assert rows and all(line.endswith("|") for line in rows), run.stdout
    assert any(name in line for line in rows)
    assert "\x1b[" not in run.stdout, "no colour codes in piped output"


# ---------------------------------------------------------------- init


def test_init_writes_a_starter_config_with_where_each_value_was_found(real):
    run = cli("init", "--repo", str(real.repo))
    assert run.returncode == 0, run.stderr
    text = (real.repo / "rollback.toml").read_text()
    assert 'flag = "new-scheduler"   # declared in modules/actor-core/Cargo.toml' in text
    assert f"# matches {real.merge[:10]} Merge pull request #31" in text
    assert 'commands = ["cargo bench -p actor-core --bench mailbox --features std"]' in text
    assert 'baseline = "benchmarks/before_refactor.md"' in text
    assert 'ci_disable_targets = ["thumbv6m-none-eabi", "thumbv7m-none-eabi"]' in text
    assert 'ci_disable_jobs = ["no_std"]' in text
    assert 'command = "./scripts/deploy.sh production --version={version}"' in text
    assert "a person must still fill in:" in run.stdout and "phases.0.branch" in run.stdout
    cfg = load_config(real.repo / "rollback.toml")
    assert cfg.phase("3").ci_disable_jobs == ["no_std"] and cfg.phase("2A").restore.file == ""


def test_init_never_overwrites_without_force(real):
    (real.repo / "rollback.toml").write_text("# mine\n")
    run = cli("init", "--repo", str(real.repo))
    assert run.returncode == 2 and "exists; nothing was written" in run.stderr
    assert (real.repo / "rollback.toml").read_text() == "# mine\n"
    assert cli("init", "--repo", str(real.repo), "--force").returncode == 0
    assert "written by `actor-rollback init`" in (real.repo / "rollback.toml").read_text()


def test_plan_after_init_shows_no_error_init_could_have_avoided(real):
    found = json.loads(cli("init", "--repo", str(real.repo), "--json").stdout)
    to_fill = " ".join(found["to_fill"])
    explains = {"archive": "phases.0.branch", "find-merge": "merge_patterns", "deploy": "deploy.sh",
                "code-checks": "phases.2B.code_checks", "ci-file": "phases.3", "benchmarks": "benchmarks.",
                "build": "tokio_build", "config": "restore"}
    for phase in ("0", "1", "2A", "2B", "3", "4"):
        _, report = plan(real, phase)
        for step in report["steps"]:
            if step["status"] == "would-fail":
                assert explains[step["name"]] in to_fill, (phase, step)
    _, p1 = plan(real, "1")
    statuses = {s["name"]: s["status"] for s in p1["steps"]}
    assert statuses["benchmarks"] == "planned" and statuses["flag"] == "planned"
    _, p3 = plan(real, "3")
    assert {s["name"]: s["status"] for s in p3["steps"]}["ci-file"] == "planned"
    assert {s["name"]: s["status"] for s in p3["steps"]}["build"] == "planned"
