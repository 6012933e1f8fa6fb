"""#19: the tool keeps working when part of its own platform fails.

- Highly available Prefect on loopback, all real processes (bench/_ha.py): PostgreSQL, Redis, two
  API servers behind HAProxy, the background services once, two process workers, one `serve --pool
  … --name …` per target. The smaller version of bench/ha_faults.py: 8 incidents over 2 targets
  within 8 s; one API server SIGKILLed while they arrive; the worker running a rollback SIGKILLed
  in the middle of it.
- The lost-run retrier on the session's server: a Crashed triage run, and one left Pending by a
  worker that is gone, are put back for another worker — as often as allowed, then left.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import require
from helpers import bench_module


def _have(tool: str) -> bool:
    return bool(shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists() or Path(f"/usr/bin/{tool}").exists())


def test_incidents_on_ha_prefect_survive_a_killed_api_server_and_a_killed_worker_each_target_rolled_back_once(
        tmp_path):
    services = bench_module("_services")
    require(all(services.pg_binary(n) for n in ("initdb", "pg_ctl", "createdb")), "PostgreSQL (initdb, pg_ctl)")
    require(_have("redis-server"), "Redis (Debian package redis-server)")
    require(_have("haproxy"), "HAProxy (Debian package haproxy)")
    ha_faults = bench_module("ha_faults")

    outcome = ha_faults.run_scenario(tmp_path, incidents=8, targets=2, spread=8, log=print)

    assert outcome.problems == [], outcome.problems  # every triage ended, with its record; every target once
    assert outcome.killed_api_at > 0, "API server 1 was not killed while the incidents arrived"
    for incident, entry in outcome.incidents.items():
        assert entry["triage_runs"] == 1, (incident, entry)  # exactly one triage run, even for the retried one
        assert set(entry["states"]) <= {"Completed", "Paused"}, (incident, entry)  # Paused: F.1 leaves the rest to a person
    for target, counts in outcome.targets.items():
        assert (counts["flag_commits"], counts["reverts"], counts["pushes"]) == (1, 1, 1), (target, counts)
    # the killed worker's run: detected (Crashed by the zombie automation), put back, and it converged
    killed = outcome.killed_worker_run.removeprefix("triage-")
    assert outcome.crashed_detected_after is not None and outcome.crashed_detected_after < 120
    assert outcome.incidents[killed]["retried"] >= 1 and outcome.incidents[killed]["run_counts"] == [2]
    assert outcome.runs_retried >= 1


@pytest.mark.prefect
def test_a_crashed_triage_run_and_one_left_pending_are_put_back_as_often_as_allowed_never_an_old_one(
        prefect_server, sample, test_config):
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Crashed, Pending

    from actor_rollback.deployments.lost_runs import LostRunRetrier
    from actor_rollback.deployments.serve import build_deployments

    triage = next(d for d in build_deployments(sample.repo, test_config, name="lost-runs") if d.flow_name == "triage")
    deployment_id = triage.apply()
    with get_client(sync_client=True) as client:
        incident = {"id": "INC-LOST", "phase": "1", "kind": "service-down"}
        crashed, pending, done = (client.create_flow_run_from_deployment(deployment_id, parameters={"incident": incident})
                                  for _ in range(3))
        client.set_flow_run_state(crashed.id, Crashed(message="worker gone"), force=True)
        client.set_flow_run_state(pending.id, Pending(), force=True)
        client.set_flow_run_state(done.id, Completed(), force=True)
        time.sleep(1.2)
        retrier = LostRunRetrier("triage/lost-runs", every_seconds=60, retries=1, pending_seconds=1)

        assert sorted(retrier.check()) == sorted([client.read_flow_run(crashed.id).name,
                                                  client.read_flow_run(pending.id).name])
        for run_id, why in ((crashed.id, "Crashed: worker gone"), (pending.id, "the worker that took it is gone")):
            state = client.read_flow_run(run_id).state
            assert state.name == "AwaitingRetry" and state.is_scheduled(), state
            assert "started again (1 of 1)" in state.message and why in state.message
        assert client.read_flow_run(done.id).state.is_completed()  # an ended run is never touched

        client.set_flow_run_state(crashed.id, Crashed(message="lost again"), force=True)
        assert retrier.check() == []  # its one retry is spent: left Crashed, for a person
        assert client.read_flow_run(crashed.id).state.is_crashed()

        old = client.create_flow_run_from_deployment(deployment_id, parameters={"incident": incident})
        client.set_flow_run_state(old.id, Crashed(message="lost while serve was down"), force=True)
        time.sleep(1.2)
        # lost longer ago than the limit (serve was down): its incident may be over — never rerun unasked
        assert LostRunRetrier("triage/lost-runs", 60, retries=1, pending_seconds=1, max_age_seconds=1).check() == []
        assert client.read_flow_run(old.id).state.is_crashed()


def test_a_triage_run_its_runner_cancelled_on_shutdown_is_put_back_and_an_operators_cancel_is_not(
        prefect_server, sample, test_config):
    """serve's SIGTERM: Prefect's runner cancels the runs it was starting ("Runner is shutting down.") — lost, not
    cancelled by anyone (found by bench/incident_day.py: a Low incident's issue was never filed). An operator's
    cancel stays final, and is the only one the person-waits watch tags outcome:cancelled."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from actor_rollback.deployments.lost_runs import LostRunRetrier
    from actor_rollback.deployments.person_waits import PersonWaits
    from actor_rollback.deployments.serve import build_deployments
    from actor_rollback.runbook.config import load_config

    triage = next(d for d in build_deployments(sample.repo, test_config, name="shutdown-runs") if d.flow_name == "triage")
    deployment_id = triage.apply()
    with get_client(sync_client=True) as client:
        incident = {"id": "INC-SHUTDOWN", "phase": "1", "kind": "docs"}
        lost, cancelled = (client.create_flow_run_from_deployment(deployment_id, parameters={"incident": incident},
                                                                 tags=["actor-rollback"]) for _ in range(2))
        client.set_flow_run_state(lost.id, Cancelled(message="Runner is shutting down."), force=True)
        client.set_flow_run_state(cancelled.id, Cancelled(message="cancelled from the UI"), force=True)
        watched = PersonWaits(load_config(test_config)).check()
        assert lost.name not in watched and watched.get(cancelled.name) == "cancelled"
        put_back = LostRunRetrier("triage/shutdown-runs", every_seconds=60, retries=2, pending_seconds=1).check()
        assert put_back == [lost.name]
        state = client.read_flow_run(lost.id).state
        assert state.name == "AwaitingRetry" and "Cancelled by its runner's shutdown" in state.message
        assert client.read_flow_run(cancelled.id).state.is_cancelled()
        assert "outcome:cancelled" in client.read_flow_run(cancelled.id).tags


def test_serve_refuses_a_deployment_name_that_is_not_a_plain_name(sample, test_config, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", "t" * 32)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    cli = str(Path(sys.executable).parent / "actor-rollback")
    done = subprocess.run([cli, "serve", "--repo", str(sample.repo), "--config", str(test_config), "--pool", "p",
                           "--name", "../x y"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--name '../x y'" in done.stderr, (done.returncode, done.stderr[-500:])


@pytest.mark.prefect
def test_a_warm_triage_lost_with_its_receiver_is_reopened_in_the_intake_spool_unless_a_run_is_live(
        prefect_server, tmp_path):
    """A Critical triage on the warm path runs inside the receiver's process, not as a deployment run: when the
    receiver dies with it (Crashed by the zombie automation), its incident goes back to the intake spool, so the
    warm path starts it again. Not while a run of that incident is alive, not beyond the retries."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Running

    from actor_rollback.deployments.intake import IntakeSpool
    from actor_rollback.deployments.lost_runs import LostRunRetrier
    from actor_rollback.flows.triage import triage

    spool = IntakeSpool(tmp_path / "intake.sqlite3")
    incidents = {"lost": "INC-WARM-LOST", "alive": "INC-WARM-ALIVE"}
    spool.add([(key, json.dumps({"id": ident, "phase": "1", "kind": "service-down"})) for key, ident in incidents.items()])
    for key, ident in incidents.items():
        assert spool.claim() is not None
        spool.done(key, f"in-process triage-{ident}")
    with get_client(sync_client=True) as client:
        client.create_flow_run(triage, name="triage-INC-WARM-LOST", state=Crashed(message="no heartbeat"))
        client.create_flow_run(triage, name="triage-INC-WARM-ALIVE", state=Running())
    retrier = LostRunRetrier("triage/none-here", 60, retries=1, pending_seconds=60, spool=spool)

    assert retrier.check() == ["triage-INC-WARM-LOST"]
    assert spool.claim() == ("lost", json.dumps({"id": "INC-WARM-LOST", "phase": "1", "kind": "service-down"}))
    assert spool.claim() is None  # the live one stays done: its run is going
    spool.done("lost", "in-process triage-INC-WARM-LOST")
    with get_client(sync_client=True) as client:  # the rerun crashed as well: its one retry is spent
        client.create_flow_run(triage, name="triage-INC-WARM-LOST", state=Crashed(message="no heartbeat again"))
    assert retrier.check() == [] and spool.claim() is None
