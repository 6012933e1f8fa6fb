"""#29: a runbook step is declared once, beside its function (tasks/declare.py), and placed once in its phase's
page (runbook/phases.py); the flow, the plan, the checklist, the redaction of secrets and the time to mitigation
follow from those two places."""

from __future__ import annotations

import os
from typing import Literal, get_args

import pytest
from helpers import config_variant

from actor_rollback.deployments.cli import run_phase_flow
from actor_rollback.flows.plan import plan_phase
from actor_rollback.runbook import phases
from actor_rollback.runbook.config import load_config
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks import declare

TOKEN = "sp-token-8c1f77e2d4"  # a value that must never reach a record


@pytest.fixture
def status_page_step(monkeypatch):
    """The walkthrough of docs/ARCHITECTURE.md ("P1.4 post to a status page"), done the way it says: the function
    with its declaration, and one line in Phase 1's page. Returns the incidents it posted for."""
    posted: list[str] = []
    monkeypatch.setattr(declare, "StepName", Literal[(*get_args(phases.StepName), "status-page")])
    monkeypatch.setenv("STATUS_PAGE_TOKEN", TOKEN)

    @declare.declare_step("status-page", describe=lambda spec, cfg, phase: [f"POST 'phase {phase} rolled back' to "
                                                                            "the status page"],
                          secrets=lambda cfg: ["STATUS_PAGE_TOKEN"], evidence={"P1.C9": "posted"},
                          milestone="status page told")
    def post_status_page(ctx) -> StepResult:
        token = os.environ["STATUS_PAGE_TOKEN"]
        if ctx.dry_run:
            return StepResult(id=ctx.step_id, name="status-page", status="planned",
                              evidence=[f"would post with the token {token}"])
        posted.append(ctx.incident)
        return StepResult(id=ctx.step_id, name="status-page", status="done",
                          evidence=[f"posted with the token {token}"], data={"posted": "pass"})

    steps = phases.PHASE_STEPS["1"]
    after_push = next(i for i, spec in enumerate(steps) if spec.name == "push") + 1
    monkeypatch.setitem(phases.PHASE_STEPS, "1", [*steps[:after_push], phases.StepSpec(
        "P1.4", "status-page", "Post the rollback to the status page"), *steps[after_push:]])
    try:
        yield posted
    finally:
        declare.DECLARED.pop("status-page", None)


@pytest.mark.prefect
def test_a_step_declared_beside_its_function_runs_in_its_phase_flow_proves_its_item_and_keeps_its_secret(
        status_page_step, sample, test_config, prefect_server, tmp_path):
    config = config_variant(tmp_path, **{'{ id = "P1.C5", item = "All tests pass" },':
                                         '{ id = "P1.C5", item = "All tests pass" },\n'
                                         '  { id = "P1.C9", item = "The status page says rolled back" },'})
    others = [spec.name for spec in phases.PHASE_STEPS["1"] if spec.name != "status-page"]
    report = run_phase_flow("1", sample.repo, "status page walkthrough", "inc-status-page", False, [], others, "",
                            config, triggered_by="test")
    [step] = [s for s in report.steps if s.name == "status-page"]
    assert step.id == "P1.4" and step.status == "done" and status_page_step == ["inc-status-page"]
    assert TOKEN not in str(step.evidence) and "[redacted]" in step.evidence[0]  # its declared secret, redacted
    assert [s.name for s in report.steps].index("status-page") == [s.name for s in report.steps].index("push") + 1
    [item] = [i for i in report.checklist if i.id == "P1.C9"]
    assert item.status == "pass", item  # the checklist item its declaration says it proves

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        [ttm] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["rollback-phase-1-inc-status-page-ttm"])), limit=1)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[report.flow_run_id])))
    assert "status page told" in str(ttm.data)  # its milestone, in the time to mitigation
    [task_run] = [t for t in task_runs if t.name.startswith("P1.4 ")]
    assert "posted with the token [redacted]" in task_run.state.message  # the task run's record keeps it out too


@pytest.mark.fast
def test_a_declared_step_is_in_the_plan_with_what_it_will_do_and_skippable_by_name(status_page_step):
    report = plan_phase(load_config(None), "1")
    [step] = [s for s in report.steps if s.name == "status-page"]
    assert step.status == "planned" and step.evidence == ["POST 'phase 1 rolled back' to the status page"]
    skipped = plan_phase(load_config(None), "1", skip=["P1.4"])
    assert next(s for s in skipped.steps if s.name == "status-page").status == "skipped"
    assert status_page_step == []  # a plan without a workspace runs nothing


@pytest.mark.fast
def test_a_step_name_outside_the_typed_set_or_declared_twice_is_refused_at_import():
    with pytest.raises(ValueError, match="not one of runbook/phases.py's StepName"):
        declare.declare_step("status-pgae")(lambda ctx: None)
    with pytest.raises(ValueError, match="declared twice"):
        declare.declare_step("flag")(lambda ctx: None)
    with pytest.raises(ValueError, match="declared twice"):
        declare.described("flag")(lambda spec, cfg, phase: [])  # a describe alone never replaces a step's function
    with pytest.raises(ValueError, match="P1.C1 is proved by the step 'flag' already"):
        declare.declare_step("embedded", evidence={"P1.C1": None})(lambda ctx: None)
    assert "embedded" not in declare.DECLARED and declare.DECLARED["flag"].function is not None
