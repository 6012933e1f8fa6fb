"""The runbook's steps on a workspace shaped like a real one (root package + `modules/*`, the flag
declared by the phase merge, CI written as people write it), not on the project's own sample."""

from __future__ import annotations

import pytest
import yaml
from helpers import config, context, refs, run_git
from realistic_workspace import create_realistic_workspace

from actor_rollback.tasks.cargo_manifest import check_flag_gating, disable_feature_flag, remove_from_default, workspace_manifests
from actor_rollback.tasks.ci_workflow import disable_no_std_ci
from actor_rollback.tasks.git_repo import find_phase_merge, push_rollback, revert_merge

CORE = "modules/actor-core/Cargo.toml"


@pytest.fixture
def real(tmp_path):
    return create_realistic_workspace(tmp_path)


def _roll_back_phase_1(repo) -> None:
    assert disable_feature_flag(context(repo, step_id="P1.1")).status == "done"
    merge = find_phase_merge(context(repo, step_id="P1.2a")).data["merge"]
    assert revert_merge(context(repo, step_id="P1.2b", facts={"merge": merge})).status == "done"
    assert push_rollback(context(repo, step_id="P1.2b")).status == "done"


def test_workspace_members_dot_and_globs_are_the_root_package_and_each_member(real):
    found = [str(p.relative_to(real.repo)) for p in workspace_manifests(real.repo)]
    assert found == ["Cargo.toml", "modules/actor-core/Cargo.toml", "modules/actor-macros/Cargo.toml"]


def test_p1_1_takes_only_the_flag_out_of_the_member_that_enables_it(real):
    result = disable_feature_flag(context(real.repo, step_id="P1.1"))
    assert result.status == "done"
    assert run_git(real.repo, "show", "--format=", "--name-only", "HEAD").split() == [CORE]
    assert 'default = ["std"]' in (real.repo / CORE).read_text()
    assert 'default = ["std", "valuable?/std"]' in (real.repo / "Cargo.toml").read_text()


def test_p1_1_rerun_after_the_revert_removed_the_flags_declaration_is_already_done(real):
    _roll_back_phase_1(real.repo)
    assert "new-scheduler" not in (real.repo / CORE).read_text(), "the revert took the declaration out"
    head = refs(real.repo)
    again = disable_feature_flag(context(real.repo, step_id="P1.1"))
    assert again.status == "already-done", again.evidence
    assert again.data["flag"] == "off"
    revert = run_git(real.repo, "log", "-1", "--format=%h", "--grep=This reverts commit")
    assert any(revert in line and "Revert" in line for line in again.evidence)
    gating = check_flag_gating(context(real.repo, step_id="P1.1b"))
    assert gating.status == "done" and gating.data["old_path"] == "pass"
    assert any("removed by the revert" in line for line in gating.evidence)
    assert refs(real.repo) == head


def test_p1_1_a_flag_removed_by_an_ordinary_commit_needs_a_human(real):
    text = (real.repo / CORE).read_text().replace("new-scheduler = []   # Phase 1: ReadyQueueCoordinator\n", "")
    (real.repo / CORE).write_text(text.replace('"std", "new-scheduler"', '"std"'))
    run_git(real.repo, "commit", "-qam", "drop the flag")
    result = disable_feature_flag(context(real.repo, step_id="P1.1"))
    assert result.status == "needs-human"
    assert any("not a revert" in line for line in result.evidence)


def test_p1_1_removes_only_the_exact_item_never_an_outside_crates_feature_of_the_same_name():
    text = '[features]\ndefault = ["std", "valuable?/std", "serde/std", "alloc"]\nstd = ["alloc"]\nalloc = []\n'
    edited = remove_from_default(text, "std")
    assert 'default = ["valuable?/std", "serde/std", "alloc"]' in edited
    member = remove_from_default(text, "std", members=frozenset({"serde"}))
    assert 'default = ["valuable?/std", "alloc"]' in member


def test_p1_1b_a_flag_that_gates_no_code_needs_a_human(real):
    result = check_flag_gating(context(real.repo, step_id="P1.1b", cfg=config(flag="std")))
    assert result.status == "needs-human"
    assert any("gates nothing that was found" in line for line in result.evidence)


def test_p1_1b_finds_gates_in_every_member_not_only_modules_and_src(real):
    result = check_flag_gating(context(real.repo, step_id="P1.1b"))
    assert result.status == "done"
    assert any(line.startswith("modules/actor-core/src/lib.rs:2 cfg(feature)") for line in result.evidence)


def test_p3_3_a_script_only_no_std_job_and_other_thumb_targets_is_needs_human_with_the_candidates(real):
    before = refs(real.repo)
    result = disable_no_std_ci(context(real.repo, "3", "P3.3"))
    assert result.status == "needs-human"
    text = " ".join(result.evidence)
    assert "no job or step builds thumbv7em-none-eabihf" in text
    assert "job no_std (line 16)" in text and "job embedded (line 22)" in text
    assert "seen: thumbv6m-none-eabi, thumbv7m-none-eabi" in text and "phases.3.ci_disable_jobs" in text
    assert refs(real.repo) == before


def test_p3_3_with_the_jobs_named_in_the_config_edits_a_flow_style_workflow_and_commits(real):
    cfg = config(**{"phases.3.ci_disable_targets": ["thumbv6m-none-eabi", "thumbv7m-none-eabi"],
                    "phases.3.ci_disable_jobs": ["no_std"]})
    result = disable_no_std_ci(context(real.repo, "3", "P3.3", cfg=cfg))
    assert result.status == "done", result.evidence
    workflow = yaml.safe_load((real.repo / ".github/workflows/ci.yml").read_text())
    assert workflow["jobs"]["no_std"]["if"] == workflow["jobs"]["embedded"]["if"] == "${{ false }}"
    assert "branches: [ main ]" in (real.repo / ".github/workflows/ci.yml").read_text()
    assert disable_no_std_ci(context(real.repo, "3", "P3.3", cfg=cfg)).status == "already-done"


@pytest.mark.prefect
def test_p1_rerun_of_a_finished_rollback_converges_through_the_cli(real, prefect_server):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "actor-rollback")
    args = [cli, "run", "1", "--repo", str(real.repo), "--reason", "p99 latency +40 %", "--incident", "inc-rerun-1",
            "--only", "flag,gating,find-merge,revert,push", "--yes", "--json"]
    first = subprocess.run(args, capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    second = subprocess.run(args, capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert [s["status"] for s in one["steps"][:5]] == ["done", "done", "done", "done", "done"], first.stdout
    assert "new-scheduler" not in (real.repo / CORE).read_text()
    steps = {s["name"]: s for s in two["steps"]}
    assert steps["flag"]["status"] == "already-done" and steps["revert"]["status"] == "already-done"
    assert any("Revert" in line for line in steps["flag"]["evidence"])
    checklist = {c["id"]: c["status"] for c in two["checklist"]}
    assert checklist["P1.C1"] == "pass" and checklist["P1.C2"] == "pass"
    assert second.returncode == first.returncode != 2, second.stderr
    assert run_git(real.repo, "rev-parse", "HEAD") == run_git(real.origin, "rev-parse", "main")
