"""The plan of a phase: every step with its exact commands, resolved against the repository
when one is given (which merge, which manifests) — read-only: no flow run, no side effect."""

from __future__ import annotations

from pathlib import Path

from runbook.checklist import judge_checklist
from runbook.config import RollbackConfig, normalize_phase
from runbook.model import RollbackReport, StepResult
from runbook.phases import describe, select_steps
from tasks.context import StepContext
from tasks.git_repo import open_workspace
from tasks.registry import STEP_FUNCTIONS, execute_step


def plan_phase(cfg: RollbackConfig, phase: str, repo: Path | None = None, only: list[str] | None = None,
               skip: list[str] | None = None, merge: str = "", incident: str = "<incident>") -> RollbackReport:
    phase = normalize_phase(phase)
    if repo is not None:
        open_workspace(repo)  # a path that is not a clone is bad input, said before anything else
    ctx = StepContext(repo=Path(repo).resolve() if repo else Path("."), cfg=cfg, phase=phase, incident=incident,
                      reason="(plan)", dry_run=True, merge_override=merge)
    steps: list[StepResult] = []
    for spec, runs in select_steps(phase, only, skip):
        if not runs:
            steps.append(StepResult(id=spec.id, name=spec.name, status="skipped", evidence=["skipped on request"]))
        elif repo is None:
            steps.append(StepResult(id=spec.id, name=spec.name, status="planned",
                                    evidence=describe(spec, cfg, phase)))
        else:
            result = execute_step(spec, ctx.for_step(spec.id), STEP_FUNCTIONS.get(spec.name))
            ctx.facts.update(result.data)
            steps.append(result)
    return RollbackReport(phase=phase, incident=incident, dry_run=True, steps=steps,
                          checklist=judge_checklist(cfg.phase(phase).checklist, steps, dry_run=True))
