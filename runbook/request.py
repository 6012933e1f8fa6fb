"""What a rollback is asked with, checked in one place before anything changes.

The CLI checks a request before it asks the person to confirm (a typo is refused at once, with no run started);
the phase flow checks what it is given, since the UI form and the API reach it without the CLI. Both call
`check_request`, so the rules and their words are the same wherever a request comes from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actor_rollback.runbook.config import RollbackConfig, effective_config, normalize_phase
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.ids import check_incident_id
from actor_rollback.runbook.phases import StepSpec, select_steps


@dataclass(frozen=True)
class RunRequest:
    phase: str  # normalised: "2A", not "2a"
    cfg: RollbackConfig
    selection: list[tuple[StepSpec, bool]]  # every step of the phase with whether it runs
    incident: str  # "" when none was given: the caller names one
    reason: str


def check_request(phase: str, repo: Path | str | None, reason: str, incident: str = "",
                  only: list[str] | None = None, skip: list[str] | None = None,
                  config: Path | str | None = None) -> RunRequest:
    """The request's phase, configuration (the repository's or the given file, over the shipped one), step
    selection, incident id and reason, each refused as bad input naming the fix."""
    key = normalize_phase(phase)
    cfg = effective_config(config, repo)
    selection = select_steps(key, only, skip)
    if incident:
        check_incident_id(incident)
    if not reason.strip():
        raise BadInputError("the reason is empty (--reason, or the form's `reason`); say why the rollback is done "
                            "(it goes into every commit)")
    return RunRequest(key, cfg, selection, incident, reason)
