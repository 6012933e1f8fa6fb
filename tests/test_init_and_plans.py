"""A new user's path on a real-shaped workspace: `init` → review → `plan` (honest about what would
fail) → `run`; partial configs over the shipped defaults; plain output when piped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import tree_digest
from realistic_workspace import create_realistic_workspace

from actor_rollback.runbook.config import ConfigError, load_config

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
    assert steps["P2A.2 push"]["status"] == "blocked", "a push whose revert is blocked is blocked too"
    assert steps["P2A.3 config"]["status"] == "would-fail"
    assert "config/actor_system.toml does not exist" in steps["P2A.3 config"]["evidence"][0]
    assert steps["A.3 benchmarks"]["status"] == "would-fail"
    assert "baseline_before_refactor.md does not exist" in steps["A.3 benchmarks"]["evidence"][0]
    # the plan goes on past what would fail; CI is checked too: cargo cannot resolve this workspace here
    # (no Cargo.lock, an optional crates.io dependency, no registry), so its first cargo call would stop
    ci = steps["P1.2c ci"]
    assert ci["status"] == "would-fail" and "cargo cannot resolve the workspace" in ci["evidence"][0]
    assert "no matching package named `valuable` found" in ci["evidence"][0]
    assert "actor-rollback-resolve" not in ci["evidence"][0], "cargo's words name the clone, not the plan's copy"
    _, p2b = plan(real, "2B")
    assert steps_by_id(p2b)["P2B.3 code-checks"]["status"] == "would-fail"
    assert "actor_cell.rs does not exist" in steps_by_id(p2b)["P2B.3 code-checks"]["evidence"][0]
    _, p3 = plan(real, "3")
    build = steps_by_id(p3)["P3.1 build"]
    assert build["status"] == "would-fail"
    assert "feature runtime-tokio is declared in no Cargo.toml" in build["evidence"][0]
    assert tree_digest(real.repo, real.origin) == before, "a plan changes nothing"


def with_lines(where: Path, **lines: str) -> Path:
    """The session's test config with whole lines replaced: `key=value` replaces the first line starting `key =`
    after the section header given as `section__key` (or anywhere for a plain key)."""
    text = Path(os.environ["ACTOR_ROLLBACK_TEST_CONFIG"]).read_text().splitlines()
    for name, value in lines.items():
        section, _, key = name.rpartition("__")
        start = next(i for i, line in enumerate(text) if line.startswith(f"[{section}]")) if section else 0
        at = next(i for i in range(start, len(text)) if text[i].startswith(f"{key} ="))
        text[at] = f"{key} = {value}"
    path = where / "rollback.toml"
    path.write_text("\n".join(text) + "\n")
    return path


def test_plan_p1_3b_and_p1_3c_that_cannot_read_metrics_or_logs_now_say_needs_human_and_exit_3(sample, tmp_path):
    from conftest import free_port

    config = with_lines(tmp_path, metrics_url=f'"http://127.0.0.1:{free_port()}/metrics"',
                        logs__file='"/nonexistent/actor-system.log"')
    run = cli("plan", "1", "--repo", str(sample.repo), "--config", str(config), "--json")
    report = json.loads(run.stdout)
    steps = steps_by_id(report)
    assert run.returncode == 3 and report["outcome"] == "needs-human", run.stderr
    monitor, logs = steps["P1.3b monitor"], steps["P1.3c logs"]
    assert monitor["status"] == "needs-human" and "does not answer now" in monitor["evidence"][0]
    assert "Connection refused" in monitor["evidence"][0]
    assert logs["status"] == "needs-human" and "/nonexistent/actor-system.log does not exist" in logs["evidence"][0]
    rest = {s["status"] for k, s in steps.items() if k not in ("P1.3b monitor", "P1.3c logs") and ".pre" not in k}
    assert rest <= {"done", "planned"}, steps


def test_plan_p1_3b_asks_prometheus_each_query_once_and_names_the_ones_without_data(sample_in_production, prometheus,
                                                                                    tmp_path):
    config = with_lines(tmp_path, prometheus_url=f'"{prometheus}"')
    text = config.read_text().replace(
        'throughput = "sum(rate(actor_messages_processed_total[1m]))"', 'throughput = "up"').replace(
        'latency_p99 = "histogram_quantile', 'latency_p99 = "no_such_metric_total + histogram_quantile')
    config.write_text(text)
    deadline = time.monotonic() + 30
    while not httpx.get(f"{prometheus}/api/v1/query", params={"query": "up"}).json()["data"]["result"]:
        assert time.monotonic() < deadline, "Prometheus scraped nothing in 30 s"
        time.sleep(0.5)
    run = cli("plan", "1", "--repo", str(sample_in_production.repo), "--config", str(config), "--only", "monitor",
              "--json")
    monitor = steps_by_id(json.loads(run.stdout))["P1.3b monitor"]
    assert run.returncode == 3 and monitor["status"] == "needs-human", monitor
    assert monitor["evidence"][0].startswith("no data now for latency_p99 (no_such_metric_total + ")
    assert any(line.startswith(f"{prometheus}: throughput = up: ") for line in monitor["evidence"])
    config.write_text(text.replace('throughput = "up"', 'throughput = "sum(rate("'))
    run = cli("plan", "1", "--repo", str(sample_in_production.repo), "--config", str(config), "--only", "monitor",
              "--json")
    monitor = steps_by_id(json.loads(run.stdout))["P1.3b monitor"]
    assert run.returncode == 2 and monitor["status"] == "would-fail", monitor
    assert "Prometheus rejected the throughput query 'sum(rate('" in monitor["evidence"][0]


def test_plan_p4_3_in_the_full_plan_is_checked_as_only_reset_checks_it_and_does_not_decide_the_exit(
        sample_in_production, tmp_path):
    repo = str(sample_in_production.repo)
    config = with_lines(tmp_path, baseline_commit_pattern='"no such Phase 0 commit"')
    full = cli("plan", "4", "--repo", repo, "--config", str(config), "--json")
    alone = cli("plan", "4", "--repo", repo, "--config", str(config), "--only", "reset", "--json")
    reset = steps_by_id(json.loads(full.stdout))["P4.3 reset"]
    assert reset["status"] == steps_by_id(json.loads(alone.stdout))["P4.3 reset"]["status"] == "would-fail"
    assert 'no commit on origin/main contains "no such Phase 0 commit"' in reset["evidence"][0]
    assert any("approval-gated" in line for line in reset["evidence"])
    assert alone.returncode == 2 and full.returncode == 0, "the phase's run does not run P4.3: its exit is the rest's"
    shipped = steps_by_id(json.loads(cli("plan", "4", "--repo", repo, "--json").stdout))["P4.3 reset"]
    assert shipped["status"] == "planned" and shipped["evidence"][0].startswith("last resort, approval-gated")


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


def test_init_names_every_gap_a_baseline_must_cover_the_benches_and_finds_what_selects_tokio(real):
    files = {
        "modules/actor-core/benches/spawn.rs": "fn main() {}\n", "modules/actor-core/benches/ring.rs": "fn main() {}\n",
        "benchmarks/fixtures/criterion-table.md": "# Test fixture: a criterion table for the parser\n\n"
        "| Benchmark | Mean | Std Dev |\n|---|---|---|\n" + "".join(f"| mailbox/case{i} | {i + 1}.0 ns | 0.1 ns |\n"
                                                                 for i in range(4)),
        "Cargo.toml": (real.repo / "Cargo.toml").read_text().replace(
            'std = ["actor-core/std"]\n', 'std = ["actor-core/std"]\nrt-tokio = ["dep:tokio"]\n') +
        'tokio = { version = "1", optional = true }\n',
    }
    for rel, text in files.items():
        (real.repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (real.repo / rel).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=real.repo, check=True)
    subprocess.run(["git", "commit", "-qm", "more benches, a tokio runtime feature"], cwd=real.repo, check=True)
    found = json.loads(cli("init", "--repo", str(real.repo), "--json").stdout)
    text = (real.repo / "rollback.toml").read_text()
    # a baseline stands for the benches found: neither a fixture nor a table of 1 of 3 bench targets
    assert 'baseline_ref = "merge-parent"' in text and "baseline = " not in text
    assert any("benchmarks/fixtures/criterion-table.md" in line and "fixture" in line for line in found["found"])
    assert any("benchmarks/before_refactor.md (covers 1 of 3 bench targets: mailbox, ring, spawn)" in line for line in found["found"])
    # P3.1 pins Tokio through the feature that enables it — not a `cargo build` that pins nothing
    assert 'tokio_build = "cargo build -p actor-rt --features rt-tokio"' in text
    # every shipped value that cannot be this repository's is on the list, by key
    to_fill = "\n".join(found["to_fill"])
    for key in ("monitoring.prometheus_url", "logs:", "ci.command", "contacts: tech-lead", "dashboards:",
                "phases.4.baseline_commit_pattern"):
        assert key in to_fill, key
    assert "phases.3.merge_patterns" not in to_fill + text, "Phase 3 has no revert step: no merge to find"


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
                "build": "tokio_build", "config": "restore", "reset": "baseline_commit_pattern"}
    for phase in ("0", "1", "2A", "2B", "3", "4"):
        _, report = plan(real, phase)
        for step in report["steps"]:
            if step["status"] == "would-fail":
                cargo = step["evidence"][0].startswith("cargo cannot resolve")  # CI, benchmarks and build alike
                assert ("cargo cannot resolve" if cargo else explains[step["name"]]) in to_fill, (phase, step)
    _, p1 = plan(real, "1")
    steps = {s["name"]: s for s in p1["steps"]}
    assert steps["flag"]["status"] == "planned"
    # init's baseline_ref fixed the benchmarks' input; what is left is cargo's, and init said so
    assert steps["benchmarks"]["status"] == "would-fail" and steps["benchmarks"]["evidence"][0].startswith("cargo cannot")
    _, p3 = plan(real, "3")
    steps3 = {s["name"]: s for s in p3["steps"]}
    assert steps3["ci-file"]["status"] == "planned"
    # nothing here selects Tokio: init left tokio_build empty and listed it, never `cargo build` that pins nothing
    assert steps3["build"]["status"] == "would-fail" and "tokio_build" in steps3["build"]["evidence"][0]
