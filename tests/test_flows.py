"""Phase flows on a real Prefect server: the run is the audit record (name, tags, parameters, artifacts)."""

from __future__ import annotations

import pytest
from helpers import run_git

from actor_rollback.deployments.cli import run_phase_flow

pytestmark = pytest.mark.prefect


def read_run_and_artifacts(flow_run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return run, {a.key: a for a in sorted(artifacts, key=lambda a: a.created)}  # a key's newest version wins


def test_phase_1_run_is_named_tagged_and_leaves_checklist_and_step_artifacts(sample, test_config, prefect_server):
    report = run_phase_flow("1", sample.repo, "p99 latency doubled", "INC-7.a", False, [], ["ci", "benchmarks"], "", test_config,
                            triggered_by="test")
    run, artifacts = read_run_and_artifacts(report.flow_run_id)
    assert run.name == "rollback-phase-1-INC-7.a"
    assert {"phase:1", "incident:INC-7.a"} <= set(run.tags)
    assert run.parameters["reason"] == "p99 latency doubled" and run.parameters["triggered_by"] == "test"
    assert report.outcome == "needs-human" and run.state.is_paused()  # P1.C3 unverified: a person checks it
    assert run.state.message.startswith("phase 1 rollback INC-7.a: A PERSON MUST — ") and "P1.C3" in run.state.message
    assert {"outcome:needs-human", "severity:untriaged"} <= set(run.tags)
    checklist = artifacts["rollback-phase-1-inc-7-a-checklist"]
    assert "**PASS** P1.C1 The feature flag is disabled" in checklist.data
    assert "**UNVERIFIED** P1.C3" in checklist.data
    assert "grafana: https://grafana.example.com/d/actor-scheduler" in checklist.data  # X.2 links
    steps = artifacts["rollback-phase-1-inc-7-a-steps"]
    assert steps.type == "table"
    revert = report.steps[3]
    assert revert.name == "revert" and revert.data["revert"][:10] in steps.data


def test_phase_2a_flow_reverts_its_merge_restores_config_and_finds_no_leaked_workers(sample, test_config, prefect_server):
    report = run_phase_flow("2A", sample.repo, "worker leak", "inc-2a", False, [], ["ci", "benchmarks"], "", test_config,
                            triggered_by="test")
    status = {s.name: s.status for s in report.steps}
    assert status["flag"] == status["revert"] == status["config"] == status["push"] == "done"
    assert 'type = "ready-queue-coordinator"' in run_git(sample.origin, "show", "main:config/actor_system.toml")
    assert 'Revert "Merge pull request #15 from acme/refactor/worker-executor"' in run_git(
        sample.origin, "log", "-3", "--format=%s", "main")
    assert {c.id: c.status for c in report.checklist} == {"P2A.4": "pass", "P2A.5": "pass"}  # 4 workers, no backlog
    assert report.exit_code == 0  # every checklist item passes; the benchmarks were skipped on request


def test_ambiguous_merge_stops_the_flow_before_any_revert(sample, test_config, prefect_server):
    run_git(sample.repo, "checkout", "-q", "-b", "again")
    run_git(sample.repo, "commit", "-q", "--allow-empty", "-m", "retry")
    run_git(sample.repo, "checkout", "-q", "main")
    run_git(sample.repo, "-c", "user.name=D", "-c", "user.email=d@e", "merge", "-q", "--no-ff", "-m",
            "Merge: Phase 1 second attempt", "again")
    run_git(sample.repo, "push", "-q", "origin", "main")
    remote_before = run_git(sample.origin, "rev-parse", "main")
    report = run_phase_flow("1", sample.repo, "x", "inc-amb", False, [], ["ci", "flag"], "", test_config, "test")
    find = next(s for s in report.steps if s.name == "find-merge")
    assert find.status == "failed" and find.failure == "bad-input" and "--merge SHA" in find.evidence[0]
    assert [s.status for s in report.steps[3:]] == ["skipped"] * (len(report.steps) - 3)
    assert report.exit_code == 2
    assert run_git(sample.origin, "rev-parse", "main") == remote_before


def test_phase_0_flow_archives_the_poc_branch_records_an_adr_and_hands_the_review_to_a_person(sample, test_config, prefect_server):
    report = run_phase_flow("0", sample.repo, "PoC abandoned", "inc-0", False, [], [], "", test_config, "test")
    status = {s.name: s.status for s in report.steps}
    assert status == {"archive": "done", "review": "needs-human", "adr": "done", "redesign": "needs-human"}
    assert "archive/feature/ready-queue-coordinator-poc" in run_git(sample.origin, "tag")
    adr = next(s for s in report.steps if s.name == "adr").data["adr"]  # P0.3, numbered after the sample's ADR-0001
    assert adr.startswith("docs/adr/0002-phase-0-rollback-inc-0")
    assert run_git(sample.origin, "show", f"main:{adr}").startswith("# ADR-0002: Phase 0 rollback inc-0: design change")


def test_phase_2b_flow_confirms_actor_cell_handles_messages_directly(sample, test_config, prefect_server):
    report = run_phase_flow("2B", sample.repo, "guardian errors", "inc-2b", False, [], ["ci", "benchmarks"], "", test_config,
                            "test")
    assert {s.name: s.status for s in report.steps}["code-checks"] == "done"
    checks = {c.id: c.status for c in report.checklist}
    assert checks == {"P2B.C1": "pass", "P2B.C2": "pass", "P2B.C3": "unverified"}


@pytest.mark.cargo
def test_phase_3_flow_disables_no_std_in_ci_and_builds_pinned_to_tokio(sample, test_config, prefect_server, cargo_env):
    report = run_phase_flow("3", sample.repo, "embassy crash", "inc-3", False, [], ["ci"], "", test_config,
                            "test")
    status = {s.name: s.status for s in report.steps}
    assert status["flag"] == status["ci-file"] == status["push"] == status["build"] == "done"
    assert "if: ${{ false }}" in run_git(sample.origin, "show", "main:.github/workflows/ci.yml")
    assert status["embedded"] == "needs-human"


def test_phase_4_last_resort_without_approval_changes_nothing(sample, test_config, prefect_server):
    before = run_git(sample.origin, "for-each-ref")
    report = run_phase_flow("4", sample.repo, "everything is on fire", "inc-4", False, ["reset"], [], "", test_config,
                            "test")
    reset = report.steps[-1]
    assert reset.id == "P4.3" and reset.status == "needs-human"
    assert report.exit_code == 3
    assert run_git(sample.origin, "for-each-ref") == before
