"""One truth about an outcome: for each outcome the CLI's exit code, its JSON `outcome`, the flow
run's Prefect state (read back through the API), its tags, its task runs, its events and the
shipped automation's notification agree (flows/outcome.py, deployments/automations.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import config_variant, paged_config_text, pager_block

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")


def cli_run(*args: str) -> tuple[int, dict]:
    done = subprocess.run([CLI, "run", *args, "--yes", "--json"], capture_output=True, text=True, timeout=300,
                          env=os.environ)
    assert done.stdout.strip(), done.stderr[-2000:]
    return done.returncode, json.loads(done.stdout)


def read_run(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def task_runs(run_id: str) -> dict[str, object]:
    """The run's task runs by name ("P1.2c check_ci")."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {run.name: run for run in runs}


def events_of(run_id: str, expect: int, timeout: float = 30) -> list:
    """The actor-rollback events of a run (the event worker sends them after the run; wait for `expect`)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(
                event=EventNameFilter(prefix=["actor-rollback."]),
                resource=EventResourceFilter(id_prefix=[f"actor-rollback.rollback.{run_id}"])), limit=50)
        if len(page.events) >= expect or time.monotonic() > deadline:
            return sorted(page.events, key=lambda e: e.occurred)
        time.sleep(0.5)


def test_each_outcome_is_the_runs_state_its_tags_and_the_cli_exit_code(sample_in_production, test_config, tmp_path,
                                                                        prefect_server):
    sample = sample_in_production
    # done: a plan that finds nothing wrong
    code, done = cli_run("1", "--repo", str(sample.repo), "--reason", "plan it", "--incident", "out-done", "--dry-run",
                         "--config", str(test_config))
    # needs-human: phase 0's review (P0.2) is a person's
    code0, needs = cli_run("0", "--repo", str(sample.repo), "--reason", "PoC abandoned", "--incident", "out-human")
    # failed: CI (P1.2c) runs a command that fails — a fault, not the operator's input
    failing_ci = config_variant(tmp_path, **{'command = "cargo test --workspace"': 'command = "false"'})
    code1, failed = cli_run("1", "--repo", str(sample.repo), "--reason", "ci red", "--incident", "out-failed",
                            "--only", "ci", "--config", str(failing_ci))
    # bad-input: P1.1 cannot find the configured flag in any Cargo.toml
    (tmp_path / "typo").mkdir()
    typo = config_variant(tmp_path / "typo", **{'flag = "new-scheduler"': 'flag = "new-schedular"'})
    code2, bad = cli_run("1", "--repo", str(sample.repo), "--reason", "typo", "--incident", "out-bad",
                         "--only", "flag", "--config", str(typo))

    expected = {  # outcome → (exit code, state type, state name)
        "done": (0, "COMPLETED", "Completed"), "needs-human": (3, "PAUSED", "Paused"),
        "failed": (1, "FAILED", "Failed"), "bad-input": (2, "FAILED", "Failed")}
    target = f"target:{str(sample.origin.resolve()).removesuffix('.git').lower()}"
    for exit_code, report, outcome, names_step in ((code, done, "done", None), (code0, needs, "needs-human", "P0.2"),
                                                   (code1, failed, "failed", "P1.2c"), (code2, bad, "bad-input", "P1.1")):
        assert report["outcome"] == outcome and exit_code == expected[outcome][0], (outcome, exit_code, report)
        run = read_run(report["flow_run_id"])
        assert (run.state.type.value, run.state.name) == expected[outcome][1:], (outcome, run.state)
        assert f"outcome:{outcome}" in run.tags and "severity:untriaged" in run.tags and target in run.tags, run.tags
        if names_step:  # the message names the step and why, for someone scanning the runs list
            assert f"{names_step} " in run.state.message, run.state.message
        else:
            assert run.state.message.startswith("phase 1 plan out-done: done"), run.state.message
    waiting = read_run(needs["flow_run_id"]).state
    assert "A PERSON MUST" in waiting.message and waiting.state_details.pause_key == "needs-human"
    assert "P0.2 review needs-human: a person does this step: " in waiting.message  # what to do, not only "do it"
    assert "exited 1" in read_run(failed["flow_run_id"]).state.message or "false" in read_run(failed["flow_run_id"]).state.message
    assert "new-schedular" in read_run(bad["flow_run_id"]).state.message
    # a step that failed is a Failed task run; one that went well is Completed
    ci_task = next(run for name, run in task_runs(failed["flow_run_id"]).items() if name.startswith("P1.2c"))
    assert ci_task.state.is_failed(), ci_task.state
    flag_task = next(run for name, run in task_runs(bad["flow_run_id"]).items() if name.startswith("P1.1 "))
    assert flag_task.state.is_failed(), flag_task.state
    archive = next(run for name, run in task_runs(needs["flow_run_id"]).items() if name.startswith("P0.1"))
    assert archive.state.is_completed() and archive.state.name == "Completed", archive.state
    # a run paused for a person is not waiting for an approval: `approve` says so and changes nothing
    approve = subprocess.run([CLI, "approve", needs["flow_run_id"], "--approver", "Aiko", "--branch", "main"],
                             capture_output=True, text=True, timeout=120, env=os.environ)
    assert approve.returncode == 2 and "not waiting for an approval" in " ".join(approve.stderr.split())
    assert read_run(needs["flow_run_id"]).state.is_paused()


def test_a_rollback_emits_started_step_and_finished_events_naming_outcome_phase_incident_target(
        sample, test_config, tmp_path, prefect_server):
    failing_ci = config_variant(tmp_path, **{'command = "cargo test --workspace"': 'command = "false"'})
    _, report = cli_run("1", "--repo", str(sample.repo), "--reason", "ci red", "--incident", "ev-1",
                        "--only", "ci", "--config", str(failing_ci))
    run_id = report["flow_run_id"]
    events = events_of(run_id, expect=2 + len(report["steps"]))
    names = [e.event for e in events]
    assert names[0] == "actor-rollback.rollback.started" and names[-1] == "actor-rollback.rollback.finished", names
    assert names.count("actor-rollback.step.finished") == len(report["steps"])  # skipped ones too: the full record
    finished = events[-1]
    assert finished.resource["outcome"] == "failed" and finished.resource["phase"] == "1"
    assert finished.resource["incident"] == "ev-1" and finished.resource["dry-run"] == "false"
    assert finished.resource["target"] == str(sample.origin.resolve()).removesuffix(".git").lower()
    assert "P1.2c ci failed" in finished.payload["summary"]
    assert any(r.id == f"prefect.flow-run.{run_id}" for r in finished.related)  # the event links to its run
    ci = next(e for e in events if e.event == "actor-rollback.step.finished" and e.resource["step"] == "ci")
    assert ci.resource["status"] == "failed" and ci.resource["step-id"] == "P1.2c"


def test_the_shipped_automation_tells_the_tech_lead_of_a_failed_or_needs_human_rollback_not_of_a_plan_or_a_drill(
        sample, test_config, tmp_path, prefect_server):
    from actor_rollback.deployments.automations import OUTCOME_AUTOMATION, ensure_outcome_automation
    from prefect.automations import Automation
    from actor_rollback.runbook.config import load_config

    sink = pager_block("tech-lead-outcomes")
    text = paged_config_text("custom-webhook/tech-lead-outcomes", ("tech-lead",)).replace(
        'command = "cargo test --workspace"', 'command = "false"')
    cfg_path = config_variant(tmp_path, text)
    lines = ensure_outcome_automation(load_config(cfg_path))
    assert lines[0].startswith("outcome automation ") and "NOT" not in lines[0] and "tech-lead" in lines[0], lines
    try:
        time.sleep(2)  # the triggers service loads new automations every few seconds
        cli_run("1", "--repo", str(sample.repo), "--reason", "plan", "--incident", "auto-plan", "--dry-run",
                "--config", str(cfg_path))
        from prefect import tags

        from actor_rollback.deployments.cli import run_phase_flow

        with tags("drill"):  # a rehearsal's failure: the drill reports it itself, nobody is paged for it
            drilled = run_phase_flow("1", sample.repo, "drill", "auto-drill", False, ["ci"], [], "", cfg_path,
                                     triggered_by="test")
        assert drilled.outcome == "failed", drilled.steps
        _, failed = cli_run("1", "--repo", str(sample.repo), "--reason", "ci red", "--incident", "auto-failed",
                            "--only", "ci", "--config", str(cfg_path))
        _, needs = cli_run("0", "--repo", str(sample.repo), "--reason", "PoC abandoned", "--incident", "auto-human",
                           "--config", str(cfg_path))
        got_failed = sink.wait_for(lambda b: "auto-failed" in b["subject"], timeout=60)
        got_needs = sink.wait_for(lambda b: "auto-human" in b["subject"], timeout=60)
    finally:
        Automation.read(name=OUTCOME_AUTOMATION).delete()  # other tests' rollbacks must not page this sink
    assert "FAILED" in got_failed["subject"] and "P1.2c ci failed" in got_failed["text"]
    assert "NEEDS-HUMAN" in got_needs["subject"] and "P0.2" in got_needs["text"]
    assert failed["flow_run_id"] in got_failed["text"] and needs["flow_run_id"] in got_needs["text"]  # links the run
    assert not any("auto-plan" in b["subject"] for b in sink.bodies)  # a plan is nobody's emergency
    assert not any("auto-drill" in b["subject"] for b in sink.bodies)  # the failed drill ran before the failed run


def test_without_a_notify_block_the_automation_is_not_made_and_says_why(prefect_server):
    from actor_rollback.deployments.automations import ensure_outcome_automation
    from helpers import config

    lines = ensure_outcome_automation(config(**{"contacts.tech-lead.notify": []}))
    assert lines == ["outcome automation NOT created: tech-lead: no notify block configured "
                     "([contacts.tech-lead] notify = [...])"]
    command = subprocess.run([CLI, "automations"], capture_output=True, text=True, timeout=120, env=os.environ)
    assert command.returncode == 3 and "outcome automation NOT created: tech-lead" in command.stdout  # the shipped config


def test_a_flow_run_refused_as_bad_input_from_the_api_is_failed_with_the_rule_it_broke(sample, prefect_server):
    """The UI form and the API reach the flow without the CLI's checks: a bad incident id is a Failed run."""
    from actor_rollback.flows.phases import rollback_phase_1

    state = rollback_phase_1(reason="x", repo=str(sample.repo), incident_id="../../etc", return_state=True)
    assert state.is_failed() and state.message.startswith("BAD INPUT (fix and rerun) — the incident id '../../etc'")
    run = read_run(str(state.state_details.flow_run_id))
    assert "outcome:bad-input" in run.tags and run.state.is_failed()
    [finished] = events_of(str(run.id), expect=1)  # the outcome is told like the others: the automation sees it
    assert finished.event == "actor-rollback.rollback.finished" and finished.resource["outcome"] == "bad-input"
    assert "the incident id '../../etc'" in finished.payload["summary"]


def test_the_form_offers_the_phases_step_names_and_ids_as_a_multi_select_and_states_the_id_rules():
    from actor_rollback.flows.phases import PHASE_FLOWS
    from prefect.utilities.callables import parameter_schema
    from actor_rollback.runbook.phases import step_choices

    for phase, flow in PHASE_FLOWS.items():
        schema = parameter_schema(flow.fn).model_dump_for_openapi()
        for name in ("only", "skip"):
            prop = schema["properties"][name]
            assert prop["type"] == "array" and "anyOf" not in prop, prop  # a list, not "list / None"
            items = prop["items"]
            items = schema["definitions"][items["$ref"].split("/")[-1]] if "$ref" in items else items
            assert items["enum"] == step_choices(phase), (phase, items)
        assert "Letters, digits" in schema["properties"]["incident_id"]["description"]
    assert {"reset", "P4.3"} <= set(step_choices("4")) and "flag" in step_choices("1") and "P1.1" in step_choices("1")


def test_a_needs_human_dry_run_or_drill_has_ended_when_completed_and_a_real_one_once_paused():
    """A needs-human run is Completed for a moment before its hook pauses it; the hook leaves a dry run or a drill
    Completed, and whoever waits for those (the lock, the benches) must see them ended, not wait forever."""
    from types import SimpleNamespace

    from prefect.states import Completed, Paused

    from actor_rollback.flows.outcome import DRILL_TAG, NEEDS_HUMAN_KEY, has_ended

    def run(state, *tags):
        return SimpleNamespace(state=state, tags=["outcome:needs-human", *tags])

    assert not has_ended(run(Completed()))  # its hook is about to pause it
    assert has_ended(run(Completed(), "dry-run")) and has_ended(run(Completed(), DRILL_TAG))
    assert has_ended(run(Paused(pause_key=NEEDS_HUMAN_KEY)))
