"""Scheduled verification (R1.1): a real regression on the sample service becomes an incident with
its evidence and goes to triage; here the policy's thresholds are raised so the triage ends at F.4
(an issue on the remote) instead of a rollback."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import free_port
from helpers import config_variant, run_git

pytestmark = pytest.mark.prefect


def test_a_regression_found_on_schedule_starts_triage_with_its_evidence(sample, test_config, prefect_server, tmp_path,
                                                                      monkeypatch):
    from actor_rollback.flows.verify import verify

    port = free_port()
    monkeypatch.setenv("ACTOR_SERVICE_PORT", str(port))
    monkeypatch.setenv("ACTOR_DEPLOY_STATE", str(tmp_path / "prod"))
    deployed = subprocess.run(["./scripts/deploy.sh", "production", "--version=v0.4.0"], cwd=sample.repo,
                              capture_output=True, text=True, timeout=60, env=os.environ)
    assert "new-scheduler=on" in deployed.stdout, deployed.stderr  # the regressed head: ~700 msg/s, 4 % errors
    text = config_variant(tmp_path, **{}).read_text()
    metrics = next(line for line in text.splitlines() if line.startswith("metrics_url"))
    config = config_variant(tmp_path, text, **{
        metrics: f'metrics_url = "http://127.0.0.1:{port}/metrics"',
        "high_regression_pct = 10.0": "high_regression_pct = 2000.0",
        "medium_regression_pct = 5.0": "medium_regression_pct = 1000.0",
        'checks = ["monitor", "benchmarks"]': 'checks = ["monitor"]'})
    try:
        from actor_rollback.flows.outcome import data_of

        state = verify(repo=str(sample.repo), config=str(config), phase="1", return_state=True)
    finally:
        subprocess.run(["./scripts/deploy.sh", "production", "--stop"], cwd=sample.repo, capture_output=True, env=os.environ)
    report = data_of(state)
    assert [c["status"] for c in report["checks"]] == ["failed"], report["checks"]
    assert state.is_failed() and report["outcome"] == "failed"  # the run's state says what it found
    assert state.message.startswith("verify phase 1: FAILED — ") and "monitor failed" in state.message and "triage verify-1-" in state.message
    incident = report["incident"]
    assert incident["source"] == "schedule" and incident["kind"] == "perf-regression" and incident["phase"] == "1"
    assert incident["regression_pct"] > 5  # the error rate or the throughput floor, by how much
    assert any("FAIL" in line and "error_rate" in line for line in incident["evidence"])
    triage = report["triage"]
    assert triage["decision"]["severity"] == "low" and triage["decision"]["rule"] == "S.L/F.4"
    issue = run_git(sample.origin, "show", f"main:docs/issues/{incident['id']}.md")
    assert "scheduled verification: monitor regressed" in issue and "error_rate" in issue
