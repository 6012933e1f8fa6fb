"""A.6 on a sample workspace, all real: the reintroduction is refused while the retry lock holds
(day 6, the clock injected) and without a filled-in ADR; on day 8 it re-applies the phase, keeps
the flag off by default, runs a canary with the flag on — which regresses against the stable
service — and rolls itself back as a new incident."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from conftest import free_port
from helpers import commit_change, config_variant, run_git

from actor_rollback.runbook.ids import derived_id
from actor_rollback.runbook.postmortem import TO_FILL

pytestmark = pytest.mark.prefect


LONG_ID = ("REINT-1-" + "scheduler-fairness-bookkeeping-" * 3)[:90]


def test_a6_refused_while_locked_or_without_an_adr_then_a_regressing_canary_rolls_itself_back(
        sample, test_config, prefect_server, tmp_path, monkeypatch):
    from actor_rollback.deployments.cli import run_phase_flow
    from actor_rollback.flows.outcome import data_of, run_flow
    from actor_rollback.flows.postmortem import postmortem
    from actor_rollback.flows.reintroduce import reintroduce
    from actor_rollback.flows.retry_lock import read_retry_lock
    from actor_rollback.runbook.config import load_config

    stable, canary = free_port(), free_port()
    monkeypatch.setenv("ACTOR_SERVICE_PORT", str(stable))
    monkeypatch.setenv("ACTOR_DEPLOY_STATE", str(tmp_path / "stable"))
    text = config_variant(tmp_path).read_text()
    metrics = next(line for line in text.splitlines() if line.startswith("metrics_url"))
    config = config_variant(tmp_path, text, **{
        metrics: f'metrics_url = "http://127.0.0.1:{stable}/metrics"',
        'canary_env = {}': f'canary_env = {{ ACTOR_SERVICE_PORT = "{canary}", ACTOR_DEPLOY_STATE = "{tmp_path / "canary"}" }}',
        'canary_metrics_url = "http://127.0.0.1:19101/metrics"': f'canary_metrics_url = "http://127.0.0.1:{canary}/metrics"',
        "canary_window_seconds = 300 ": "canary_window_seconds = 2 "})
    rolled = datetime.now(timezone.utc)
    report = run_phase_flow("1", sample.repo, "throughput -12 %", "INC-re", False, [], ["ci", "benchmarks"], "", config,
                            triggered_by="test")
    assert report.outcome in ("done", "needs-human"), report.steps
    after_rollback = run_git(sample.origin, "rev-parse", "main")

    def attempt(days: int) -> dict:
        state = reintroduce(phase="1", repo=str(sample.repo), reason="ADR-0002: fairness bookkeeping fixed",
                            incident_id=LONG_ID, config=str(config), now=rolled + timedelta(days=days),
                            rollback_skip=["ci", "benchmarks"], return_state=True)
        result = data_of(state)
        assert state.is_failed() == (result["outcome"] in ("failed", "bad-input"))  # the run's state is its outcome
        return result

    try:
        day6 = attempt(6)
        assert day6["outcome"] == "bad-input" and "LOCKED until" in day6["steps"][0]["evidence"][0]
        assert run_git(sample.origin, "rev-parse", "main") == after_rollback

        no_adr = attempt(8)
        assert [s["status"] for s in no_adr["steps"]] == ["done", "failed"]
        assert "no ADR for phase 1" in no_adr["steps"][1]["evidence"][0]

        drafted = run_flow(postmortem, ref="INC-re", repo=str(sample.repo), config=str(config))
        unfilled = attempt(8)
        assert "still has sections marked" in unfilled["steps"][1]["evidence"][0]

        adr = sample.repo / drafted["adr"]
        commit_change(sample.repo, drafted["adr"], adr.read_text().replace(TO_FILL, "Decided: bounded fairness."),
                      "ADR-0002: the improvement plan", push=True)
        result = attempt(8)
        steps = {s["name"]: s for s in result["steps"]}
        assert steps["reapply"]["status"] == "done" and steps["flag"]["status"] in ("done", "already-done")
        assert steps["canary"]["status"] == "done" and "new-scheduler=on" in " ".join(steps["canary"]["evidence"])
        assert steps["watch-canary"]["status"] == "failed"
        assert any(line.startswith("FAIL") and "throughput" in line for line in steps["watch-canary"]["evidence"])
        assert steps["stop-canary"]["status"] == "done" and "promote" not in steps
        canary_id = derived_id(LONG_ID, "-canary")  # 90 + 7 characters would not be an id: cut, with a hash
        assert len(canary_id) <= 96 and canary_id.endswith("-canary") and canary_id.startswith("REINT-1-")
        assert f"rolled back again as {canary_id}" in steps["auto-rollback"]["evidence"][0]
        assert result["outcome"] == "failed"
        subjects = run_git(sample.origin, "log", "--format=%s", "-3", "main").splitlines()
        assert subjects[0].startswith('Revert "Merge pull request #12')  # the phase is reverted again
        assert subjects[1].startswith('Revert "Revert "Merge pull request #12')  # after its re-application
        lock = read_retry_lock(sample.repo, load_config(config), "1")
        assert lock.incident == canary_id and lock.holds()  # another week
        assert not (tmp_path / "canary" / "service.pid").exists()
    finally:
        for state in ("stable", "canary"):
            subprocess.run(["./scripts/deploy.sh", "x", "--stop"], cwd=sample.repo, capture_output=True,
                           env={"PATH": "/usr/bin:/bin", "ACTOR_DEPLOY_STATE": str(tmp_path / state)})
    assert json.dumps(result)
