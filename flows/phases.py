"""One flow per phase of the runbook (section 2); its steps, in order, are the page's (runbook/phases.py).

Every flow takes the same parameters, which the Prefect UI shows as a form; the run is named
`rollback-phase-<P>-<incident>` and is itself the audit record of what was done and why.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Literal, Optional

from prefect import flow
from prefect.runtime import flow_run

from actor_rollback.flows.outcome import bad_input_state, pause_for_a_person
from actor_rollback.flows.runner import PhaseRun, default_incident_id
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.ids import MAX_LENGTH
from actor_rollback.runbook.phases import phase_steps, step_choices


def _run_name() -> str:
    phase = flow_run.flow_name.removeprefix("rollback-phase-")
    return f"rollback-phase-{phase}-{flow_run.parameters.get('incident_id') or default_incident_id()}"


def rollback_flow(phase: str):
    """The decorator every phase flow shares: its name, run name, the parameters' help for the UI form
    (`only` and `skip` a multi-select of the phase's step names and IDs), and input refused as a Failed run."""

    def decorate(fn):
        # read by Prefect when the flow is made: the UI shows the phase's page, then the form's help
        fn.__doc__ = inspect.cleandoc(fn.__doc__ or "") + _page(phase) + PARAMETER_DOCS
        steps = list[Literal[tuple(step_choices(phase))]]  # the form renders an enum list as a multi-select
        fn.__annotations__.update(only=steps, skip=steps)

        @functools.wraps(fn)
        def refusing_bad_input(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except BadInputError as exc:  # before anything changed (a config, a step name, an id: all this family)
                state = bad_input_state(exc)
                _emit_refused(phase, kwargs, state.message)  # told like every other outcome (the automation)
                return state

        made = flow(name=f"rollback-phase-{phase.lower()}", flow_run_name=_run_name, log_prints=True,
                    validate_parameters=True, persist_result=False, on_completion=[pause_for_a_person])(refusing_bad_input)
        made.serialize_parameters = functools.partial(_json_parameters, made)
        return made

    return decorate


def _page(phase: str) -> str:
    """The phase's steps in the runbook's order (runbook/phases.py, which the run follows), for the flow's
    description."""
    steps = [f"{spec.id} {spec.name}: {spec.title}" + ("" if spec.automated else " (a person)")
             for spec in phase_steps(phase)]
    return "\n\nSteps, in order: " + "; ".join(steps) + "."


def _json_parameters(made, parameters: dict) -> dict:
    """The run's parameters as the API stores them. They are JSON already (strings, booleans, lists, the approval's
    dict), so they go as they are; Prefect's own encoder imports FastAPI for it (0.1–0.3 s of every CLI run).
    Anything else takes Prefect's way."""
    try:
        return json.loads(json.dumps(parameters, allow_nan=False))
    except (TypeError, ValueError):
        return type(made).serialize_parameters(made, parameters)


def _emit_refused(phase: str, parameters: dict, message: str) -> None:
    """`rollback.finished` with outcome bad-input for a run refused at its entry (no PhaseRun was made)."""
    from pathlib import Path

    from actor_rollback.flows.outcome import emit, rollback_resource
    from actor_rollback.tasks.host_lock import target_name
    from actor_rollback.runbook.config import effective_config

    try:
        target = target_name(Path(parameters.get("repo") or "."), effective_config(parameters.get("config"), parameters.get("repo")))
    except Exception:  # the config itself may be what was refused
        target = str(parameters.get("repo") or "unknown")
    incident = str(parameters.get("incident_id") or flow_run.get_name() or "")[:96]
    emit("rollback.finished", rollback_resource(phase, incident, target, bool(parameters.get("dry_run")), "bad-input"),
         {"summary": message})


PARAMETER_DOCS = f"""

Args:
    reason: Why the rollback is done: recorded in every commit and in the audit trail (required).
    repo: Path of the target workspace's git clone.
    incident_id: The incident this belongs to; a rerun with the same id converges. Letters, digits, '.', '_'
        and '-' only, starting with a letter or digit, at most {MAX_LENGTH} characters (e.g. INC-123); empty: named
        after this run.
    dry_run: Show the plan and change nothing.
    only: Run only these steps (pick names or IDs); none picked: every step of the phase.
    skip: Skip these steps (pick names or IDs).
    merge: The phase's merge commit, when its message is ambiguous.
    config: Path of a rollback.toml; when empty, the repository's own rollback.toml, else the shipped one.
    triggered_by: Who or what started the run: your name from this form, a person, an alert, a schedule.
    severity: The triage decision's severity (critical, high, medium, low), when there is one.
    incident_started_at: When the incident began (ISO 8601, e.g. the alert's startsAt): the start of the
        time to mitigation this run records; the run's own start when empty.
    terminal_approval: Phase 4 only: set by the CLI after asking at its terminal; leave it empty.
    done_before: Set by triage: steps the alert receiver did for this incident before the run (a Critical's
        flag off and push); recorded as done then, and checked again. Leave it empty.
"""


@rollback_flow("0")
def rollback_phase_0(reason: str, repo: str, incident_id: str = "", dry_run: bool = False,
        only: list[str] = (), skip: list[str] = (), merge: str = "", config: str = "",
        triggered_by: str = "manual", severity: str = "", incident_started_at: str = "",
        done_before: Optional[list[dict]] = None) -> dict:
    """Phase 0 — design / prototype: the branch never reached main, so archive it and redesign."""
    with PhaseRun("0", repo, reason, incident_id, dry_run, only, skip, merge, config, severity, incident_started_at,
                  done_before) as run:
        run.all_steps()
    return run.finish()


@rollback_flow("1")
def rollback_phase_1(reason: str, repo: str, incident_id: str = "", dry_run: bool = False,
        only: list[str] = (), skip: list[str] = (), merge: str = "", config: str = "",
        triggered_by: str = "manual", severity: str = "", incident_started_at: str = "",
        done_before: Optional[list[dict]] = None) -> dict:
    """Phase 1 — ReadyQueueCoordinator: flag off, revert the merge, push, CI, deploy, watch, verify."""
    with PhaseRun("1", repo, reason, incident_id, dry_run, only, skip, merge, config, severity, incident_started_at,
                  done_before) as run:
        run.all_steps()
    return run.finish()


@rollback_flow("2A")
def rollback_phase_2a(reason: str, repo: str, incident_id: str = "", dry_run: bool = False,
        only: list[str] = (), skip: list[str] = (), merge: str = "", config: str = "",
        triggered_by: str = "manual", severity: str = "", incident_started_at: str = "",
        done_before: Optional[list[dict]] = None) -> dict:
    """Phase 2A — WorkerExecutor: flag off, revert, restore the worker config, push, deploy, check queues."""
    with PhaseRun("2A", repo, reason, incident_id, dry_run, only, skip, merge, config, severity, incident_started_at,
                  done_before) as run:
        run.all_steps()
    return run.finish()


@rollback_flow("2B")
def rollback_phase_2b(reason: str, repo: str, incident_id: str = "", dry_run: bool = False,
        only: list[str] = (), skip: list[str] = (), merge: str = "", config: str = "",
        triggered_by: str = "manual", severity: str = "", incident_started_at: str = "",
        done_before: Optional[list[dict]] = None) -> dict:
    """Phase 2B — MessageInvoker: flag off, revert, confirm ActorCell handles messages directly."""
    with PhaseRun("2B", repo, reason, incident_id, dry_run, only, skip, merge, config, severity, incident_started_at,
                  done_before) as run:
        run.all_steps()
    return run.finish()


@rollback_flow("3")
def rollback_phase_3(reason: str, repo: str, incident_id: str = "", dry_run: bool = False,
        only: list[str] = (), skip: list[str] = (), merge: str = "", config: str = "",
        triggered_by: str = "manual", severity: str = "", incident_started_at: str = "",
        done_before: Optional[list[dict]] = None) -> dict:
    """Phase 3 — runtime abstraction and no_std: back to the Tokio path, no_std out of CI."""
    with PhaseRun("3", repo, reason, incident_id, dry_run, only, skip, merge, config, severity, incident_started_at,
                  done_before) as run:
        run.all_steps()
    return run.finish()


@rollback_flow("4")
def rollback_phase_4(reason: str, repo: str, incident_id: str = "", dry_run: bool = False,
        only: list[str] = (), skip: list[str] = (), merge: str = "", config: str = "",
        triggered_by: str = "manual", severity: str = "", incident_started_at: str = "",
        terminal_approval: Optional[dict] = None, done_before: Optional[list[dict]] = None) -> dict:
    """Phase 4 — optimisation: revert the lock-free work, take the flag out of default, deploy.

    The last resort (P4.3, `only=["reset"]`) runs only after every contact is notified and a
    person approves; `terminal_approval` is set by the CLI on the embedded server and ignored
    for runs of a deployment, which pause for the approval instead.
    """
    with PhaseRun("4", repo, reason, incident_id, dry_run, only, skip, merge, config, severity, incident_started_at,
                  done_before) as run:
        run.all_steps(terminal_approval)  # P4.3 only when selected by name, after a person's approval
    return run.finish()


PHASE_FLOWS = {
    "0": rollback_phase_0, "1": rollback_phase_1, "2A": rollback_phase_2a, "2B": rollback_phase_2b,
    "3": rollback_phase_3, "4": rollback_phase_4,
}
