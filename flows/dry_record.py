"""`run --dry-run` from the CLI: the plan's checks (flows/plan.py) in this process, recorded as a flow run of the
phase's flow — its parameters, tags, state, a log line per step and the same checklist and steps artifacts as a
rollback — in a handful of API calls, without starting Prefect's flow engine.

Why: the on-call runs `plan` and `run --dry-run` again and again in an incident; through the engine a dry run
cost 1.8 × `plan` (a second of engine and task runs for read-only checks). The record is what the audit needs
(who looked, at what, what it said); what it does not have is a task run per step (the steps table holds each
step's status and evidence instead) and the rollback events, which nothing consumes for a dry run. A dry run
started from the Prefect UI (the deployment's `dry_run`) still runs the flow itself.

The report is the plan's: the same steps as the flow's dry run (a test holds them equal), with Phase 1's
preconditions and Phase 4's last resort shown first and last as `plan` shows them — neither decides the outcome.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from actor_rollback.flows.plan import plan_phase
from actor_rollback.flows.report_text import checklist_markdown, run_tags, state_message, steps_table
from actor_rollback.runbook.config import RollbackConfig
from actor_rollback.runbook.model import RollbackReport
from actor_rollback.tasks.context import artifact_key
from actor_rollback.tasks.host_lock import target_name

def recorded_dry_run(cfg: RollbackConfig, phase: str, repo: Path, reason: str, incident: str, only: list[str],
                     skip: list[str], merge: str, parameters: dict) -> RollbackReport:
    report = plan_phase(cfg, phase, repo, only, skip, merge, incident=incident)
    report = report.model_copy(update={"reason": reason})
    return report.model_copy(update={"flow_run_id": record(report, cfg, repo, parameters)})


def record(report: RollbackReport, cfg: RollbackConfig, repo: Path, parameters: dict) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate, LogCreate
    from prefect.states import Completed, Failed, Running

    outcome = report.outcome
    message = state_message(report.summary())
    # a dry run is nobody's to-do: needs-human stays Completed (its tag says it); would-fail is the operator's to fix
    final = Failed(message=message) if outcome in ("failed", "bad-input") else Completed(message=message)
    tags = [*run_tags(report.phase, report.incident, "", target_name(repo, cfg), True), f"outcome:{outcome}"]
    flow = SimpleNamespace(name=f"rollback-phase-{report.phase.lower()}", version=None, retries=0,
                           retry_delay_seconds=0)  # what create_flow_run reads of a flow
    key = artifact_key("rollback-phase", report.phase, report.incident)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow, name=f"{flow.name}-{report.incident}", parameters=parameters, tags=tags,
                                     state=Running())
        client.create_logs([LogCreate(name="actor-rollback", level=20, flow_run_id=run.id,
                                      timestamp=datetime.now(timezone.utc),
                                      message=f"{step.id} {step.name}: {step.status}") for step in report.steps])
        client.create_artifact(ArtifactCreate(key=f"{key}-checklist", type="markdown", flow_run_id=run.id,
                                              data=checklist_markdown(report, cfg),
                                              description=f"Phase {report.phase} checklist for {report.incident}"))
        client.create_artifact(ArtifactCreate(key=f"{key}-steps", type="table", flow_run_id=run.id,
                                              data=json.dumps(steps_table(report)),
                                              description=f"Phase {report.phase} steps for {report.incident}"))
        client.set_flow_run_state(run.id, final, force=True)
    return str(run.id)


class _SendingAtExit(logging.Filter):
    """The artifacts' "created" events (Prefect's client emits them) go out as the command exits; Prefect's events
    worker says "Still processing items: 2 items remaining..." while it sends them — normal, and not the user's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Still processing items")


logging.getLogger("EventsWorker").addFilter(_SendingAtExit())
