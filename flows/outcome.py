"""One truth about an outcome: a run's Prefect state, its tags and its events say what the CLI's
exit code and the JSON `outcome` say.

    outcome        state of the run                                        exit
    done           Completed, a one-line summary                             0
    failed         Failed, naming the failed step and why                    1
    bad-input      Failed, naming what to fix                                2
    needs-human    Paused (key "needs-human", no timeout, no process left    3
                   waiting): the message lists what a person must do; the
                   person closes it with its acknowledgement (Resume's form,
                   or `actor-rollback ack`): Completed or Failed, with the
                   record (deployments/person_waits.py closes a resumed one)
    busy           Cancelled: nothing was done, the message names the holder 4

Why Paused and Cancelled rather than a Completed state named "NeedsHuman": the Prefect UI's run
lists filter by a fixed list of state names (its "All except scheduled" view), so a run in a
custom-named state is listed nowhere; Paused is the state Prefect itself uses for "waiting for a
person", and both are in every list and filter.

How: a failed or busy run's state carries its report inside a `RunOutcome` exception (the data of
a Failed or Cancelled state must be one, or the engine of a deployment run dies on it); a
needs-human run ends Completed and the `on_completion` hook `pause_for_a_person` moves it to
Paused at once — a flow that *returned* Paused would exit its process with an error, and the
runner would then mark it Crashed.

Every rollback run carries the tags `outcome:<outcome>`, `severity:<s>` (`untriaged` when no
triage decided it) and `target:<remote>`, so the runs list filters "failed rollbacks of this
target this week". Rollbacks emit `actor-rollback.rollback.started`, `.step.finished` and
`.rollback.finished` events, whose resource carries outcome, phase, incident and target; the
automation in deployments/automations.py notifies on the finished ones that need a person.
"""

from __future__ import annotations

import logging

from typing import Any, Callable, Literal

from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.input import RunInput
from prefect.input.run_input import keyset_from_base_key
from prefect.runtime import flow_run
from prefect.states import Cancelled, Completed, Failed, Paused, State
from pydantic import Field

from actor_rollback.flows.report_text import state_message
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import EXIT_CODES, Outcome, StepResult
from actor_rollback.tasks.context import artifact_key

NEEDS_HUMAN_KEY = "needs-human"  # the pause key of a run that ended waiting for a person


def pause_key(*parts: str) -> str:
    """A pause key Prefect accepts: it becomes part of the run-input keys, which must be lowercase letters,
    digits and dashes — an alert-style incident id (`AM-…T140808`) as it is would fail the run."""
    return artifact_key(*parts)  # the same alphabet as artifact keys
STATE_NAMES: dict[str, str] = {"done": "Completed", "failed": "Failed", "bad-input": "Failed",
                               "needs-human": "Paused", "busy": "Cancelled"}
EVENT_PREFIX = "actor-rollback"


class RunOutcome(Exception):
    """A failed or busy run's report, as the exception a Failed or Cancelled state must carry."""

    def __init__(self, message: str, data: Any) -> None:
        super().__init__(message)
        self.data = data


def outcome_state(outcome: Outcome, message: str, data: Any) -> State:
    """The final state a flow returns for its outcome; `data` is what the CLI and a parent flow read back."""
    message = state_message(message)
    if outcome in ("failed", "bad-input"):
        return Failed(message=message, data=RunOutcome(message, data))
    if outcome == "busy":
        return Cancelled(message=message, data=RunOutcome(message, data))
    return Completed(message=message, data=data)  # needs-human: tagged so, pause_for_a_person makes it Paused


class Acknowledgement(RunInput):
    """What a person did about a run that ended needing one: the form on its Resume button in the UI, or
    `actor-rollback ack`. It closes the run Completed (resolved) or Failed, with this record in its message."""

    person: str = Field(min_length=1, max_length=120, description="Your name: recorded in the audit trail")
    did: str = Field(min_length=1, max_length=1500, description="What you did about each item of the run's message")
    result: Literal["resolved", "failed"] = Field(
        description="resolved: the run ends Completed; failed: it ends Failed (the rollback did not hold)")


ACK_KEYSET = keyset_from_base_key(f"paused-{NEEDS_HUMAN_KEY}")
ACKNOWLEDGED = "acknowledged"  # the tag of a needs-human run a person has closed


class _QuietHook(logging.Filter):
    """Prefect logs every hook it runs; pause_for_a_person runs on every completion and acts on needs-human
    only, so "Running hook 'pause_for_a_person'" in a done run's log is noise (it logs itself when it pauses)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("'pause_for_a_person'" in text and text.startswith(("Running hook ", "Hook ")))


logging.getLogger("prefect.flow_runs").addFilter(_QuietHook())


def pause_for_a_person(flow, flow_run, state: State) -> None:
    """on_completion hook: a run whose outcome is needs-human (its `outcome:` tag) rests Paused, its message
    saying what to do, with the acknowledgement form on its Resume button."""
    with get_client(sync_client=True) as client:
        if not _rests_paused(client.read_flow_run(flow_run.id).tags):
            return  # a dry run or a drill is nobody's to-do: it stays Completed (the drill reports it)
        Acknowledgement.save(ACK_KEYSET, flow_run_id=flow_run.id)  # the form's schema: Resume asks for it
        paused = Paused(message=state.message, pause_key=NEEDS_HUMAN_KEY, reschedule=False, timeout_seconds=None)
        paused.state_details.run_input_keyset = ACK_KEYSET
        client.set_flow_run_state(flow_run.id, paused, force=True)  # forced: no process waits for it


def close_acknowledged(client, run) -> State | None:
    """A needs-human run resumed with its acknowledgement (no process runs it: the UI's Resume leaves it Running)
    ends Completed or Failed with the person's record; None while no acknowledgement was given."""
    from prefect.input import read_flow_run_input

    answer = read_flow_run_input(ACK_KEYSET["response"], flow_run_id=run.id)
    if not answer:
        return None
    ack = Acknowledgement.model_validate(answer)
    before = next((s.message for s in reversed(client.read_flow_run_states(run.id))
                   if s.is_paused() and s.state_details.pause_key == NEEDS_HUMAN_KEY), "") or ""
    record = f"ACKNOWLEDGED by {ack.person} ({ack.result}): {ack.did}"
    message = state_message(f"{record} — was: {before}")
    from datetime import datetime, timezone

    from prefect.client.schemas.actions import LogCreate

    final = Completed(message=message) if ack.result == "resolved" else Failed(message=message)
    # the tags and the log line first: once the state says closed, the record is all there
    client.update_flow_run(run.id, tags=sorted({*client.read_flow_run(run.id).tags, ACKNOWLEDGED,
                                                f"closed:{ack.result}"}))
    client.create_logs([LogCreate(name="actor-rollback", level=20, message=record, flow_run_id=run.id,
                                  timestamp=datetime.now(timezone.utc))])  # in the run's log too, where people read
    client.set_flow_run_state(run.id, final, force=True)
    return final


def has_ended(run) -> bool:
    """A flow run that will not change by itself any more: final, or paused for a person after its work (a
    needs-human run is Completed for a moment before its hook pauses it: not ended yet — unless it is a dry run or
    a drill, which its hook leaves Completed)."""
    state = run.state
    if state is None:
        return False
    if state.is_paused():
        return state.state_details.pause_key == NEEDS_HUMAN_KEY
    return state.is_final() and not (state.is_completed() and _rests_paused(run.tags))


def _rests_paused(tags) -> bool:
    """Whether pause_for_a_person pauses a completed run with these tags."""
    return "outcome:needs-human" in tags and "dry-run" not in tags and DRILL_TAG not in tags


def data_of(state: State) -> Any:
    """What the flow returned with its state, whatever the state."""
    data = state.result(raise_on_failure=False)
    return data.data if isinstance(data, RunOutcome) else data


def bad_input_state(error: Exception) -> State:
    """A run refused before it changed anything (the UI form and the API reach flows without the CLI's checks)."""
    add_tags("outcome:bad-input")
    return outcome_state("bad-input", f"BAD INPUT (fix and rerun) — {error}",
                         {"outcome": "bad-input", "error": str(error), "exit_code": EXIT_CODES["bad-input"]})


def run_flow(flow: Callable, **parameters) -> Any:
    """Call a flow (in this process, or as a subflow) and give back what it returned, whatever its state;
    a run refused as bad input raises BadInputError, a crash raises its error."""
    state = flow(**parameters, return_state=True)
    data = data_of(state)
    if isinstance(data, BaseException):
        raise data
    if isinstance(data, dict) and data.get("outcome") == "bad-input" and "error" in data:
        raise BadInputError(data["error"])
    return data


def add_tags(*tags: str) -> None:
    """Add tags to the current flow run (a run started by the CLI, the UI or an alert alike)."""
    run_id = flow_run.get_id()
    if not run_id:
        return
    with get_client(sync_client=True) as client:
        current = set(client.read_flow_run(run_id).tags)
        if not set(tags) <= current:
            client.update_flow_run(run_id, tags=sorted(current | set(tags)))


DRILL_TAG = "drill"  # a rehearsal's runs (flows/drill.py): never a real rollback's record, never anybody's to-do


def is_drill() -> bool:
    """Whether the current run is part of a drill (started under the `drill` tag)."""
    return DRILL_TAG in (flow_run.get_tags() or [])


def rollback_resource(phase: str, incident: str, target: str, dry_run: bool, outcome: str = "") -> dict[str, str]:
    run_id = flow_run.get_id()
    resource = {"prefect.resource.id": f"{EVENT_PREFIX}.rollback.{run_id or incident}",
                "prefect.resource.name": flow_run.get_name() or f"rollback-phase-{phase.lower()}-{incident}",
                "phase": phase, "incident": incident, "target": target, "dry-run": str(dry_run).lower(),
                "drill": str(is_drill()).lower()}
    if outcome:
        resource["outcome"] = outcome
    return resource


def emit(what: str, resource: dict[str, str], payload: dict[str, Any] | None = None) -> None:
    """`actor-rollback.<what>`; the flow run is added as a related resource by Prefect's event worker."""
    emit_event(event=f"{EVENT_PREFIX}.{what}", resource=resource, payload=payload or {})


def emit_step(resource: dict[str, str], result: StepResult) -> None:
    emit("step.finished", {**resource, "prefect.resource.id": f"{resource['prefect.resource.id']}.{result.id}",
                           "step": result.name, "step-id": result.id, "status": result.status},
         {"headline": result.headline(), "seconds": round(result.seconds, 3)})
