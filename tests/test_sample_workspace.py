"""The sample workspace has the properties the runbook's steps are tested against."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import git

from actor_rollback.runbook.config import load_config
from actor_rollback.tasks.cargo_manifest import find_gates, inspect_manifests
from actor_rollback.deployments.sample import POC_BRANCH, create_sample_workspace

CFG = load_config()
MERGED_PHASES = ["1", "2A", "2B", "3", "4"]


@pytest.mark.parametrize("phase", MERGED_PHASES)
def test_each_phase_merge_is_found_exactly_once_by_the_runbook_patterns(sample, phase):
    greps = [f"--grep={p}" for p in CFG.phase(phase).merge_patterns]
    found = git(sample.repo, "log", "--format=%H %P", "--first-parent", "--merges", "-i", "--fixed-strings",
                *greps, "main").splitlines()
    assert len(found) == 1
    assert len(found[0].split()) == 3, "a merge commit has two parents"


def test_naive_grep_of_the_runbook_is_ambiguous(sample):
    # The runbook's own command: git log --oneline --grep="Phase 1" --grep="ReadyQueueCoordinator" -i
    naive = git(sample.repo, "log", "--oneline", "--grep=Phase 1", "--grep=ReadyQueueCoordinator", "-i").splitlines()
    assert len(naive) >= 4
    assert sum("Merge pull request" in line for line in naive) == 1


def test_phase_0_start_commit_and_unmerged_poc_branch_exist(sample):
    assert git(sample.repo, "log", "--format=%s", "--grep=Phase 0 start", "main")
    remote_branches = git(sample.origin, "branch", "--format=%(refname:short)").split()
    assert POC_BRANCH in remote_branches
    merged = git(sample.repo, "branch", "-a", "--merged", "main", "--format=%(refname:short)").split()
    assert f"origin/{POC_BRANCH}" not in merged


def test_history_reads_like_a_real_project(sample):
    subjects = git(sample.repo, "log", "--format=%s", "main").splitlines()
    assert len(subjects) >= 20
    assert subjects[0] != "Phase 4: enable new-scheduler by default", "unrelated work follows the phases"
    dates = git(sample.repo, "log", "--format=%ad", "--date=short", "main").splitlines()
    assert len(set(dates)) > 10


def test_flag_is_declared_enabled_by_default_and_gates_code(sample):
    findings = {str(f.path): f for f in inspect_manifests(sample.repo, "new-scheduler")}
    core = findings["modules/actor-core/Cargo.toml"]
    assert core.declares_flag and core.direct == ["new-scheduler"]
    assert "modules/actor-utils/Cargo.toml" in findings, "glob members are found"
    sites = find_gates(sample.repo, "new-scheduler")
    items = {(s.negated, s.item) for s in sites}
    assert (False, "pub type ActiveScheduler = ReadyQueueCoordinator;") in items
    assert (True, "pub type ActiveScheduler = ReadyQueueScheduler;") in items


def test_runbook_files_are_where_the_runbook_says(sample):
    for path in ("modules/actor-core/src/api/actor_cell.rs", "config/actor_system.toml", ".github/workflows/ci.yml",
                 "scripts/deploy.sh", "benchmarks/baseline_before_refactor.md", "docs/adr/template.md"):
        assert (sample.repo / path).is_file(), path
    assert os.access(sample.repo / "scripts/deploy.sh", os.X_OK)
    ci = (sample.repo / ".github/workflows/ci.yml").read_text()
    assert "thumbv7em-none-eabihf" in ci and "needs: [test, no-std]" in ci
    assert 'type = "worker-executor"' in (sample.repo / "config/actor_system.toml").read_text()
    assert "MiddlewareChain" in (sample.repo / "modules/actor-core/src/api/actor_cell.rs").read_text()


@pytest.mark.parametrize("phase", MERGED_PHASES)
def test_each_phase_merge_reverts_cleanly_at_the_head(sample, phase):
    greps = [f"--grep={p}" for p in CFG.phase(phase).merge_patterns]
    merge = git(sample.repo, "log", "--format=%H", "--first-parent", "--merges", "-i", "--fixed-strings", *greps)
    git(sample.repo, "revert", "-m", "1", "--no-edit", merge)
    assert git(sample.repo, "status", "--porcelain") == ""


def test_existing_folder_is_refused(tmp_path):
    create_sample_workspace(tmp_path)
    with pytest.raises(FileExistsError, match="choose an empty folder"):
        create_sample_workspace(tmp_path)


def _bench_mean_ns(repo, bench: str, env: dict[str, str]) -> float:
    subprocess.run(["cargo", "bench", "--bench", bench, "--features", "std"], cwd=repo, check=True,
                   capture_output=True, env={**os.environ, **env, "ACTOR_BENCH_QUICK": "500"})
    target = env["CARGO_TARGET_DIR"]
    estimates = json.loads(open(f"{target}/criterion/scheduler/schedule_to_run/new/estimates.json").read())
    return estimates["mean"]["point_estimate"]


@pytest.mark.cargo
def test_benches_build_and_run_offline_and_the_flag_makes_scheduling_slower(sample, cargo_env, tmp_path):
    env = {**cargo_env}
    run = subprocess.run(["cargo", "bench", "--features", "std"], cwd=sample.repo, capture_output=True, text=True,
                         env={**os.environ, **env, "ACTOR_BENCH_QUICK": "200"})
    assert run.returncode == 0, run.stderr[-2000:]
    criterion = f"{env['CARGO_TARGET_DIR']}/criterion"
    for bench in ("mailbox/throughput_1000", "scheduler/schedule_to_run"):
        with open(f"{criterion}/{bench}/new/benchmark.json") as f:
            assert json.load(f)["full_id"] == bench
    manifest = sample.repo / "modules/actor-core/Cargo.toml"
    flag_on_text = manifest.read_text()
    flag_off_text = flag_on_text.replace('["std", "new-scheduler"]', '["std"]')
    on, off = [], []
    for _ in range(3):  # interleaved, so a busy moment of the machine hits both sides
        manifest.write_text(flag_on_text)
        on.append(_bench_mean_ns(sample.repo, "scheduler_latency", env))
        manifest.write_text(flag_off_text)
        off.append(_bench_mean_ns(sample.repo, "scheduler_latency", env))
    flag_on, flag_off = sorted(on)[1], sorted(off)[1]
    assert flag_on > flag_off * 1.15, f"new scheduler {on} ns vs old {off} ns"


def test_the_sample_is_made_of_real_files_and_every_build_makes_the_same_commits(tmp_path):
    from actor_rollback.deployments.sample import stage_files, template

    first = create_sample_workspace(tmp_path / "one")
    second = create_sample_workspace(tmp_path / "two")
    log = ["log", "--all", "--format=%H %s"]
    assert git(first.repo, *log) == git(second.repo, *log)  # fixed dates and author: the same SHAs every time
    assert len(git(first.repo, *log).splitlines()) == 28
    # every file of the head comes from the template tree, byte for byte
    assert (first.repo / "modules/actor-core/src/lock_free.rs").read_text() == template(
        "phase4", "modules/actor-core/src/lock_free.rs")
    assert ".cargo/config.toml" in stage_files("base") and ".github/workflows/ci.yml" in stage_files("phase3")
    assert "/usr/share/cargo/registry" in (first.repo / ".cargo/config.toml").read_text()


@pytest.mark.cargo
def test_the_template_tree_before_the_refactor_is_a_workspace_cargo_checks(cargo_env, tmp_path):
    """files/base/ is a whole cargo workspace: its Rust files check as they are (copied, so that no Cargo.lock
    lands in the package)."""
    import shutil
    from importlib.resources import files

    base = shutil.copytree(str(files("actor_rollback.deployments.sample").joinpath("files", "base")), tmp_path / "base")
    checked = subprocess.run(
        ["cargo", "check", "--offline", "--workspace", "--manifest-path", str(base / "Cargo.toml"),
         "--config", 'source.crates-io.replace-with="debian"',
         "--config", 'source.debian.directory="/usr/share/cargo/registry"'],
        capture_output=True, text=True, timeout=900, env={**os.environ, **cargo_env})
    assert checked.returncode == 0, checked.stderr[-2000:]
