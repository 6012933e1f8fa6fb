"""The CLI contract: exit codes, the --json shape, plan without side effects, run on a real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tree_digest
from helpers import run_git

from actor_rollback.runbook import SHIPPED_CONFIG

CLI = str(Path(sys.executable).parent / "actor-rollback")
STEP_KEYS = {"id", "name", "status", "evidence", "seconds"}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})}, timeout=600)


def as_json(run: subprocess.CompletedProcess) -> dict:
    return json.loads(run.stdout)  # the whole of stdout is one JSON object


def test_plan_lists_the_steps_in_runbook_order_with_commands():
    run = cli("plan", "1", "--json")
    assert run.returncode == 0, run.stderr
    report = as_json(run)
    assert report["phase"] == "1" and report["dry_run"] is True
    assert [(s["id"], s["name"]) for s in report["steps"]] == [
        ("P1.pre1", "pre-flag-off"), ("P1.pre2", "pre-old-path"), ("P1.pre3", "pre-baseline"), ("P1.1", "flag"), ("P1.1b", "gating"), ("P1.2a", "find-merge"), ("P1.2b", "revert"), ("P1.2b", "push"),
        ("P1.2c", "ci"), ("P1.3a", "deploy"), ("P1.3b", "monitor"), ("P1.3c", "logs"), ("P1.C3", "benchmarks")]
    assert all(set(s) == STEP_KEYS for s in report["steps"])
    deploy = next(s for s in report["steps"] if s["name"] == "deploy")
    assert deploy["evidence"][0].startswith("./scripts/deploy.sh production --version=rollback-phase1")
    assert [c["id"] for c in report["checklist"]] == ["P1.C1", "P1.C2", "P1.C3", "P1.C4", "P1.C5"]
    assert {c["status"] for c in report["checklist"]} == {"unverified"}


def test_plan_against_the_repository_checks_every_step_resolves_the_merge_and_changes_nothing(sample_in_production,
                                                                                              test_config):
    sample = sample_in_production
    before = tree_digest(sample.repo, sample.origin)
    run = cli("plan", "1", "--repo", str(sample.repo), "--config", str(test_config), "--json")
    assert run.returncode == 0, run.stderr
    steps = {s["name"]: s for s in as_json(run)["steps"]}
    assert all(s["status"] in ("planned", "done") for name, s in steps.items() if not name.startswith("pre-")), steps
    # a precondition is shown with its verdict (the flag is on: P1.1 turns it off) but the run does not check it,
    # so it does not decide the plan's exit
    assert steps["pre-flag-off"]["status"] == "needs-human" and run.returncode == 0
    # planned means checked: the service answers each metric, the log is there, cargo resolves offline
    assert steps["monitor"]["evidence"][0].startswith("watch ") and any(
        "throughput (actor_messages_processed_total)" in line for line in steps["monitor"]["evidence"])
    assert any("bytes" in line for line in steps["logs"]["evidence"])
    assert "cargo resolves the workspace offline" in steps["ci"]["evidence"]
    assert "cargo resolves the workspace offline" in steps["benchmarks"]["evidence"]
    merge = run_git(sample.repo, "log", "--format=%h", "--merges", "--grep=Phase 1: integrate")
    assert any(merge[:7] in line for line in steps["find-merge"]["evidence"])
    assert steps["flag"]["evidence"] == ["modules/actor-core/Cargo.toml: remove new-scheduler from [features] default"]
    assert tree_digest(sample.repo, sample.origin) == before


def test_plan_of_every_phase_exits_as_its_run_would_and_a_persons_steps_say_needs_human():
    persons = {"0": ["P0.2", "P0.4"], "3": ["P3.4"]}  # the run stops at these for a person: exit 3, in a plan too
    for phase in ("0", "1", "2A", "2B", "3", "4"):
        run = cli("plan", phase, "--json")
        report = as_json(run)
        assert run.returncode == (3 if phase in persons else 0), (phase, run.stderr)
        needs = [s["id"] for s in report["steps"] if s["status"] == "needs-human"]
        assert needs == persons.get(phase, []), (phase, needs)
        for step in report["steps"]:
            if step["status"] == "needs-human":
                assert step["evidence"][0] == "a person does this step:", step


@pytest.mark.parametrize("args,message", [
    (("plan", "5"), "unknown phase '5'; choose one of 0, 1, 2A, 2B, 3, 4"),
    (("plan", "1", "--only", "flog"), "--only: unknown step flog for phase 1; choose from"),
    (("plan", "1", "--config", "/nonexistent/rollback.toml"), "no such file"),
])
def test_bad_input_exits_2_with_the_problem_and_the_fix(args, message):
    run = cli(*args)
    assert run.returncode == 2
    assert message in " ".join(run.stderr.split())


def test_invalid_config_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "rollback.toml"
    bad.write_text(SHIPPED_CONFIG.read_text().replace("tolerance_pct = 2.0", "tolerance_pct = -1"))
    run = cli("plan", "1", "--config", str(bad), "--json")
    assert run.returncode == 2
    assert "benchmarks.tolerance_pct: Input should be greater than 0" in as_json(run)["error"]


def test_run_on_a_folder_that_is_not_a_clone_exits_2(tmp_path):
    run = cli("run", "1", "--repo", str(tmp_path), "--reason", "x", "--json")
    assert run.returncode == 2
    assert "is not a git repository" in as_json(run)["error"]


def test_run_with_a_usage_error_exits_2():
    run = cli("run", "1")
    assert run.returncode == 2 and "Missing option" in run.stderr


# A dirty shared clone no longer stops a run (#24.2): every run writes in a work tree of its own; the person's
# edit and unpushed commit are left as they were — tests/test_run_work_trees.py shows it through this CLI.


@pytest.mark.prefect
def test_run_dry_run_exits_0_and_changes_nothing(sample_in_production, prefect_server, test_config):
    sample = sample_in_production
    before = tree_digest(sample.repo, sample.origin)
    run = cli("run", "1", "--repo", str(sample.repo), "--reason", "test", "--dry-run", "--config", str(test_config),
              "--json")
    assert run.returncode == 0, run.stderr
    assert as_json(run)["dry_run"] is True
    assert tree_digest(sample.repo, sample.origin) == before


@pytest.mark.prefect
@pytest.mark.cargo
def test_run_phase_1_end_to_end_then_rerun_converges(sample, prefect_server, cargo_env, test_config):
    run = cli("run", "1", "--repo", str(sample.repo), "--reason", "throughput -15 %", "--incident", "inc-e2e",
              "--config", str(test_config), "--skip", "benchmarks", "--json")
    report = as_json(run)
    # the benchmarks were skipped on request: P1.C3 stays unverified, so exit 3 — never a pass
    assert run.returncode == 3, run.stderr
    assert report["incident"] == "inc-e2e" and report["flow_run_id"]
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert status == {"flag": "done", "gating": "done", "find-merge": "done", "revert": "done", "push": "done",
                      "ci": "done", "deploy": "done", "monitor": "done", "logs": "done",
                      "benchmarks": "skipped"}
    checks = {c["id"]: c["status"] for c in report["checklist"]}
    assert checks == {"P1.C1": "pass", "P1.C2": "pass", "P1.C3": "unverified", "P1.C4": "pass",
                      "P1.C5": "pass"}
    remote_log = run_git(sample.origin, "log", "--format=%s", "-2", "main").splitlines()
    assert remote_log[0].startswith('Revert "Merge pull request #12')
    assert remote_log[1].startswith("rollback(inc-e2e): P1.1 remove new-scheduler")
    assert "version=rollback-phase1" in Path(os.environ["ACTOR_DEPLOY_STATE"], "deploys.log").read_text()

    head = run_git(sample.origin, "rev-parse", "main")
    rerun = as_json(cli("run", "1", "--repo", str(sample.repo), "--reason", "rerun", "--incident", "inc-e2e",
                        "--skip", "ci,benchmarks", "--config", str(test_config), "--json"))
    rerun_status = {s["name"]: s["status"] for s in rerun["steps"]}
    assert rerun_status["flag"] == rerun_status["revert"] == rerun_status["push"] == "already-done"
    assert run_git(sample.origin, "rev-parse", "main") == head, "a rerun adds no commit"


def test_run_without_a_server_uses_prefects_ephemeral_server(sample_in_production, tmp_path, test_config):
    sample = sample_in_production
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    run = subprocess.run([CLI, "run", "1", "--repo", str(sample.repo), "--reason", "embedded", "--dry-run",
                          "--config", str(test_config), "--json"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    assert run.returncode == 0, run.stderr
    assert as_json(run)["flow_run_id"]
    assert (tmp_path / "prefect-home" / "prefect.db").exists(), "the embedded server kept its own database"


def test_run_piped_shows_the_metrics_watch_progress_as_plain_lines_and_json_stays_one_object(sample, prefect_server,
                                                                                              tmp_path):
    from helpers import MetricsEndpoint

    metrics = MetricsEndpoint()
    try:
        config = metrics.config(tmp_path, window_seconds=3)
        piped = cli("run", "1", "--repo", str(sample.repo), "--reason", "watch", "--incident", "progress-lines",
                    "--only", "monitor", "--yes", "--config", str(config))
        quiet = cli("run", "1", "--repo", str(sample.repo), "--reason", "watch", "--incident", "progress-json",
                    "--only", "monitor", "--yes", "--config", str(config), "--json")
    finally:
        metrics.close()
    lines = [line for line in piped.stderr.splitlines() if line.startswith("P1.3b monitor: ")]
    assert lines and lines[0] == "P1.3b monitor: 0 % — metrics window opened", piped.stderr[-3000:]
    assert lines[-1].startswith("P1.3b monitor: 100 % — watching ") and lines[-1].endswith("3 s done")
    assert 3 <= len(lines) <= 12  # a line per tenth at most, not one per tick
    watched = next(step for step in as_json(quiet)["steps"] if step["name"] == "monitor")
    assert watched["status"] != "skipped" and "P1.3b monitor: 0 %" not in quiet.stderr


@pytest.mark.prefect
def test_one_config_whatever_starts_the_run_the_repositorys_own_file(sample, test_config, prefect_server):
    """#26 §3: the CLI, a deployment's run (UI form, worker: `config: ""` in deployments/prefect.yaml) and the
    receiver's triage of one repository all read the repository's rollback.toml."""
    import yaml

    from actor_rollback.flows.outcome import run_flow
    from actor_rollback.flows.phases import rollback_phase_3
    from actor_rollback.flows.triage import triage
    from actor_rollback.runbook.model import Incident

    own = sample.repo / "rollback.toml"
    own.write_text(test_config.read_text().replace("high_regression_pct = 10.0", "high_regression_pct = 20.0"))
    plan = as_json(cli("plan", "3", "--repo", str(sample.repo), "--only", "ci-file", "--json"))
    dry = as_json(cli("run", "3", "--repo", str(sample.repo), "--reason", "config check", "--incident", "cfg-cli",
                      "--only", "ci-file", "--dry-run", "--json"))
    deployment = yaml.safe_load((Path(__file__).resolve().parents[1] / "deployments" / "prefect.yaml").read_text())
    parameters = {**next(d for d in deployment["deployments"] if d["entrypoint"].endswith(":rollback_phase_3"))[
        "parameters"], "repo": str(sample.repo)}
    assert parameters["config"] == "", "the deployment names no file: the repository's is read"
    ui = run_flow(rollback_phase_3, **parameters, reason="config check", incident_id="cfg-ui", only=["ci-file"],
                  dry_run=True)
    assert plan["config"]["source"] == dry["config_source"] == ui["config_source"] == str(own)
    # the receiver starts triage with config "" too: a 15 % regression is High by the shipped matrix (> 10 %),
    # Medium by this repository's (> 20 %)
    incident = Incident(id="cfg-alert", source="alertmanager", phase="1", kind="perf-regression", regression_pct=15)
    decided = run_flow(triage, incident=incident, repo=str(sample.repo), config="", dry_run=True)
    assert decided["decision"]["severity"] == "medium", decided["decision"]
    own.unlink()
    shipped = as_json(cli("plan", "3", "--repo", str(sample.repo), "--only", "ci-file", "--json"))
    assert shipped["config"]["source"] == str(SHIPPED_CONFIG), "no file in the repository: the shipped one"


@pytest.mark.prefect
def test_run_names_its_flow_run_and_where_its_record_is_on_stdout(sample, test_config, prefect_server):
    run = cli("run", "3", "--repo", str(sample.repo), "--reason", "record check", "--incident", "rec-1",
              "--only", "ci-file", "--dry-run", "--config", str(test_config))
    record = [line for line in run.stdout.splitlines() if line.startswith("record: flow run ")]
    assert run.returncode == 0 and len(record) == 1, run.stdout + run.stderr
    run_id = record[0].split()[3]
    ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
    assert record[0].endswith(f"{ui}/runs/flow-run/{run_id}")
    assert f"config: {test_config}" in run.stdout.splitlines()
    assert not [line for line in run.stdout.splitlines() if line and not line.strip()], "no line of only spaces"
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))]
    assert logs and not [m for m in logs if "pause_for_a_person" in m], "a done run's log has no hook noise"


@pytest.mark.prefect
def test_a_cli_dry_run_is_the_plan_recorded_as_the_phases_flow_run_with_the_steps_of_the_flows_own_dry_run(
        sample, test_config, prefect_server):
    """#26 §5: `run --dry-run` checks in the CLI's process (as `plan`) and records the phase's flow run without the
    engine; from the UI the flow itself runs the dry run. Both must tell the same story, step by step."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

    from actor_rollback.flows.outcome import run_flow
    from actor_rollback.flows.phases import PHASE_FLOWS
    from actor_rollback.runbook.model import RollbackReport

    for phase in ("0", "1", "2A", "2B", "3", "4"):
        run = cli("run", phase, "--repo", str(sample.repo), "--reason", "what would it do", "--incident",
                  f"dry-rec-{phase}", "--dry-run", "--config", str(test_config), "--json")
        report = as_json(run)
        flow = run_flow(PHASE_FLOWS[phase], reason="what would it do", repo=str(sample.repo), incident_id=f"dry-ui-{phase}",
                        dry_run=True, config=str(test_config))
        shown = [(s["id"], s["name"], s["status"]) for s in report["steps"]
                 if not s["name"].startswith("pre-") and not (phase == "4" and s["name"] == "reset")]
        assert shown == [(s["id"], s["name"], s["status"]) for s in flow["steps"]], phase
        outcome = RollbackReport.model_validate(flow).outcome
        assert report["outcome"] == outcome and run.returncode == {"done": 0, "needs-human": 3}[outcome], phase
        with get_client(sync_client=True) as client:
            recorded = client.read_flow_run(report["flow_run_id"])
            flow_name = client.read_flow(recorded.flow_id).name
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[recorded.id])))
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[recorded.id])))
        assert flow_name == f"rollback-phase-{phase.lower()}" and recorded.name == f"{flow_name}-dry-rec-{phase}"
        assert recorded.state.is_completed() and recorded.start_time and recorded.end_time, recorded.state
        assert {"dry-run", f"outcome:{report['outcome']}", "severity:untriaged", f"phase:{phase}"} <= set(recorded.tags)
        assert recorded.parameters["dry_run"] is True and recorded.parameters["reason"] == "what would it do"
        assert len(logs) == len(report["steps"]) and logs[0].message.startswith(report["steps"][0]["id"])
        assert {a.key for a in artifacts} == {f"rollback-phase-{phase.lower()}-dry-rec-{phase.lower()}-checklist",
                                               f"rollback-phase-{phase.lower()}-dry-rec-{phase.lower()}-steps"}


@pytest.mark.prefect
def test_a_dry_run_that_would_stop_for_a_person_exits_3_and_its_run_is_nobodys_to_do(sample, test_config, prefect_server):
    from prefect.client.orchestration import get_client

    run = cli("run", "0", "--repo", str(sample.repo), "--reason", "what would phase 0 do", "--incident", "dry-0",
              "--dry-run", "--config", str(test_config), "--json")
    report = as_json(run)
    assert run.returncode == 3 and report["outcome"] == "needs-human", run.stderr  # P0.2/P0.4: a person's steps
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(report["flow_run_id"]).state
    assert state.is_completed() and not state.is_paused(), "a dry run does not sit Paused on the on-call's list"
