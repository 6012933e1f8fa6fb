"""Prefect automations that `serve` ships (as code, created or updated when it starts).

A runner killed with its runs (SIGKILL, an evicted pod, a lost machine) leaves them "Running" for
ever: nothing is left to report their end. Prefect's own mechanism covers it — every run started
by `serve` emits a heartbeat event (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`), and this automation marks
a run Crashed when its heartbeats stop without a final state.
"""

from __future__ import annotations

from datetime import timedelta

from runbook.config import RollbackConfig

ZOMBIE_AUTOMATION = "actor-rollback: a run whose heartbeats stopped is Crashed"
FINAL = ("Completed", "Failed", "Cancelled", "Crashed")


def zombie_automation(cfg: RollbackConfig):
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    after = cfg.runner.crashed_after_seconds
    return Automation(
        name=ZOMBIE_AUTOMATION,
        description=f"No heartbeat for {after} s and no final state: the process running the flow is gone.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in FINAL)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=(
            f"no heartbeat for {after} s: the runner running this flow was killed or lost; rerun the incident, the "
            "steps converge"))],
    )


def ensure_zombie_automation(cfg: RollbackConfig) -> str:
    """Create the automation, or bring an existing one of that name up to date; its id."""
    from prefect.automations import Automation

    wanted = zombie_automation(cfg)
    try:
        existing = Automation.read(name=ZOMBIE_AUTOMATION)
    except ValueError:  # not there yet
        return str(wanted.create().id)
    if existing.trigger != wanted.trigger or existing.actions != wanted.actions or not existing.enabled:
        existing.trigger, existing.actions, existing.enabled = wanted.trigger, wanted.actions, True
        existing.description = wanted.description
        existing.update()
    return str(existing.id)
