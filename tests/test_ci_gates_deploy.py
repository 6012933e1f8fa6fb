"""The runbook's order on a real sample with a bare remote: revert → push → CI green (P1.2c) → deploy (P1.3a).
A red CI ships nothing; `ci.gate_deploy = false` is the only way to run both at once, and the plan says the
risk; a rerun does not test again a commit whose CI already passed."""

from __future__ import annotations

import pytest
from helpers import config_variant

from actor_rollback.deployments.cli import run_phase_flow
from actor_rollback.runbook.config import load_config
from actor_rollback.runbook.phases import PHASE_STEPS
from actor_rollback.tasks.registry import describe

pytestmark = pytest.mark.prefect
CI_LINE = 'command = "cargo test --workspace"'
DEPLOY_LINE = 'command = "./scripts/deploy.sh production --version={version}"'
NOT_NEEDED = ["monitor", "logs", "benchmarks"]


def marking_config(tmp_path, ci: str, **more: str):
    """CI and deploy commands that leave a line in a file of the test's each time they run."""
    return config_variant(tmp_path, **{
        CI_LINE: f'command = "sh -c \'echo ci >> {tmp_path}/ran; {ci}\'"',
        DEPLOY_LINE: f'command = "sh -c \'echo deploy >> {tmp_path}/ran\'"', **more})


def ran(tmp_path) -> list[str]:
    path = tmp_path / "ran"
    return path.read_text().split() if path.exists() else []


def test_p1_3a_a_red_ci_stops_the_rollback_before_the_deploy(sample, tmp_path, prefect_server):
    config = marking_config(tmp_path, "echo 3 tests failed; exit 1")
    report = run_phase_flow("1", sample.repo, "CI gate", "inc-ci-red", False, [], NOT_NEEDED, "", config,
                            triggered_by="test")
    status = {s.name: s for s in report.steps}
    assert status["push"].status == "done" and status["ci"].status == "failed"
    assert "3 tests failed" in " ".join(status["ci"].evidence)
    assert status["deploy"].status == "skipped" and "P1.2c ci failed" in status["deploy"].evidence[0]
    assert ran(tmp_path) == ["ci"]  # nothing was deployed
    assert report.outcome == "failed"


def test_p1_3a_deploy_starts_only_when_ci_has_passed(sample, tmp_path, prefect_server):
    config = marking_config(tmp_path, f"sleep 1; echo ci-passed >> {tmp_path}/ran")
    report = run_phase_flow("1", sample.repo, "CI gate", "inc-ci-green", False, [], NOT_NEEDED, "", config,
                            triggered_by="test")
    status = {s.name: s for s in report.steps}
    assert status["ci"].status == status["deploy"].status == "done", report.steps
    assert ran(tmp_path) == ["ci", "ci-passed", "deploy"]  # at once, the deploy would have come before ci-passed


def test_p1_2c_a_rerun_does_not_test_again_a_commit_whose_ci_passed(sample, tmp_path, prefect_server):
    config = marking_config(tmp_path, "true")
    first = run_phase_flow("1", sample.repo, "CI once", "inc-ci-once", False, [], NOT_NEEDED, "", config,
                           triggered_by="test")
    again = run_phase_flow("1", sample.repo, "CI once", "inc-ci-once", False, [], NOT_NEEDED, "", config,
                           triggered_by="test")
    assert {s.name: s.status for s in first.steps}["ci"] == "done"
    ci = next(s for s in again.steps if s.name == "ci")
    assert ci.status == "already-done" and "not run again for the same commit" in ci.evidence[0]
    assert ran(tmp_path) == ["ci", "deploy", "deploy"]  # the redeploy is idempotent; the CI is not paid twice
    off = marking_config(tmp_path, "true", **{"remember_pass = true": "remember_pass = false"})
    third = run_phase_flow("1", sample.repo, "CI once", "inc-ci-once", False, [], NOT_NEEDED, "", off,
                           triggered_by="test")
    assert {s.name: s.status for s in third.steps}["ci"] == "done" and ran(tmp_path).count("ci") == 2


def test_the_plan_says_the_deploy_waits_for_ci_or_names_the_risk_of_not_waiting(tmp_path):
    from actor_rollback.runbook import SHIPPED_CONFIG

    deploy = next(s for s in PHASE_STEPS["1"] if s.name == "deploy")
    assert "only after CI is green (P1.2c)" in describe(deploy, load_config(None), "1")[-1]
    loose = config_variant(tmp_path, SHIPPED_CONFIG.read_text(), **{"gate_deploy = true": "gate_deploy = false"})
    assert describe(deploy, load_config(loose), "1")[-1].startswith("RISK: at the same time as CI")
