"""Prefect automations that `serve` ships (as code, created or updated when it starts).

Outcomes: every rollback emits `actor-rollback.rollback.finished` (flows/outcome.py) with its outcome
in the event's resource; the outcome automation sends a notification through the notify blocks of
the roles in `runner.outcome_notify` (the tech lead by default) when a rollback, not a plan, ends
failed, bad-input, needs-human or busy — whoever started it (CLI, UI, alert, schedule).

Zombies: a runner killed with its runs (SIGKILL, an evicted pod, a lost machine) leaves them "Running" for
ever: nothing is left to report their end. Prefect's own mechanism covers it — every run started
by `serve` emits a heartbeat event (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`), and this automation marks
a run Crashed when its heartbeats stop without a final state.
"""

from __future__ import annotations

from datetime import timedelta

from actor_rollback.runbook.config import RollbackConfig

ZOMBIE_AUTOMATION = "actor-rollback: a run whose heartbeats stopped is Crashed"
# a run's end: its final states, Paused — a needs-human rollback ends paused for a person, its process gone — and
# Suspended: an F.3 triage waiting for its owner, its process gone until the answer schedules it again
FINAL = ("Completed", "Failed", "Cancelled", "Crashed", "Paused", "Suspended")


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


OUTCOME_AUTOMATION = "actor-rollback: a rollback that failed or needs a person is told to its roles"
NOTIFIED_OUTCOMES = ["failed", "bad-input", "needs-human", "busy"]
SUBJECT = ("[actor-rollback] {{ event.resource['prefect.resource.name'] }}: {{ event.resource['outcome'] | upper }}"
           " (phase {{ event.resource['phase'] }}, {{ event.resource['incident'] }})")
BODY = """{{ event.payload['summary'] }}

target: {{ event.resource['target'] }}
flow run: {{ flow_run|ui_url }}"""


def outcome_automation(cfg: RollbackConfig, block_ids: list):
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    roles = ", ".join(cfg.runner.outcome_notify)
    return Automation(
        name=OUTCOME_AUTOMATION,
        description=f"A rollback ended {', '.join(NOTIFIED_OUTCOMES)}: {roles} told through their notify blocks.",
        trigger=EventTrigger(
            expect={"actor-rollback.rollback.finished"},
            match=ResourceSpecification({"prefect.resource.id": "actor-rollback.rollback.*",
                                         "outcome": NOTIFIED_OUTCOMES, "dry-run": "false",
                                         "drill": "false"}),  # a drill tells the tech lead itself
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY) for block_id in block_ids],
    )


def outcome_blocks(cfg: RollbackConfig) -> tuple[list, list[str]]:
    """The notify blocks of `runner.outcome_notify`'s roles (their ids), and what is missing, in words."""
    from prefect.blocks.core import Block

    ids, gaps = [], []
    for role in cfg.runner.outcome_notify:
        contact = cfg.contacts.get(role)
        if contact is None or not contact.notify:
            gaps.append(f"{role}: no notify block configured ([contacts.{role}] notify = [...])")
            continue
        for name in contact.notify:
            try:
                ids.append(Block.load(name)._block_document_id)
            except Exception as exc:  # a block named but not saved on this server
                gaps.append(f"{role}: notify block {name!r} cannot be loaded ({type(exc).__name__}); save it first")
    return ids, gaps


def ensure_outcome_automation(cfg: RollbackConfig) -> list[str]:
    """Create or update the outcome automation; lines saying what it does, or why it could not be made."""
    ids, gaps = outcome_blocks(cfg)
    if not ids:
        _remove(OUTCOME_AUTOMATION)
        return [f"outcome automation NOT created: {'; '.join(gaps) or 'runner.outcome_notify is empty'}"]
    automation_id = _ensure(outcome_automation(cfg, ids))
    return [f"outcome automation {automation_id}: failed/needs-human rollbacks notify "
            f"{', '.join(cfg.runner.outcome_notify)} ({len(ids)} block(s))", *gaps]


def ensure_zombie_automation(cfg: RollbackConfig) -> str:
    return _ensure(zombie_automation(cfg))


def _ensure(wanted) -> str:
    """Create the automation, or bring an existing one of that name up to date; its id."""
    from prefect.automations import Automation

    try:
        existing = Automation.read(name=wanted.name)
    except ValueError:  # not there yet
        return str(wanted.create().id)
    if existing.trigger != wanted.trigger or existing.actions != wanted.actions or not existing.enabled:
        existing.trigger, existing.actions, existing.enabled = wanted.trigger, wanted.actions, True
        existing.description = wanted.description
        existing.update()
    return str(existing.id)


def _remove(name: str) -> None:
    from prefect.automations import Automation

    try:
        Automation.read(name=name).delete()
    except ValueError:
        pass
