"""The plan of a phase: every step with its exact commands, resolved against the repository
when one is given (which merge, which manifests, whether each step's files and programs are
there) — read-only: no flow run, no side effect.

A step whose read-only preconditions fail is `would-fail` with the reason; the plan goes on so
one call shows everything that is wrong, and a step that needs what a would-fail step was to
establish is `blocked`. The runbook's preconditions (P1.pre*) come first with their verdict, and
Phase 4's last resort (P4.3) is shown as the approval-gated step it is.
"""

from __future__ import annotations

from pathlib import Path

from actor_rollback.runbook.checklist import judge_checklist
from actor_rollback.runbook.config import RollbackConfig, normalize_phase
from actor_rollback.runbook.model import RollbackReport, StepResult
from actor_rollback.runbook.phases import LAST_RESORT, NEEDS, PRECONDITIONS, select_steps
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.git_repo import open_workspace
from actor_rollback.tasks.preconditions import check_precondition
from actor_rollback.tasks.registry import describe, evidence_sources, execute_step, step_function


def plan_phase(cfg: RollbackConfig, phase: str, repo: Path | None = None, only: list[str] | None = None,
               skip: list[str] | None = None, merge: str = "", incident: str = "<incident>") -> RollbackReport:
    phase = normalize_phase(phase)
    if repo is not None:
        open_workspace(repo)  # a path that is not a clone is bad input, said before anything else
    ctx = StepContext(repo=Path(repo).resolve() if repo else Path("."), cfg=cfg, phase=phase, incident=incident,
                      reason="(plan)", dry_run=True, merge_override=merge)
    steps: list[StepResult] = []
    for spec in PRECONDITIONS.get(phase, []):
        if repo is None:
            steps.append(StepResult(id=spec.id, name=spec.name, status="planned", evidence=describe(spec, cfg, phase)))
        else:
            steps.append(check_precondition(spec, ctx.for_step(spec.id)))
    would_fail: set[str] = set()
    selection = select_steps(phase, only, skip)
    for spec, runs in selection:
        if not runs:
            steps.append(StepResult(id=spec.id, name=spec.name, status="skipped", evidence=["skipped on request"]))
        elif repo is None:  # nothing to check against: what each step will do, and which a person does
            steps.append(StepResult(id=spec.id, name=spec.name, status="planned" if spec.automated else "needs-human",
                                    evidence=describe(spec, cfg, phase) if spec.automated else [
                                        "a person does this step:", *describe(spec, cfg, phase)]))
        elif NEEDS.get(spec.name) in would_fail:
            would_fail.add(spec.name)
            steps.append(StepResult(id=spec.id, name=spec.name, status="blocked", evidence=[
                f"needs what {NEEDS[spec.name]} would establish, and that step would fail or is blocked"]))
        else:
            result = execute_step(spec, ctx.for_step(spec.id), step_function(spec.name))
            ctx.facts.update(result.data)
            if result.status in ("would-fail", "blocked"):
                would_fail.add(spec.name)
            steps.append(result)
    if phase == "4" and all(spec.name != "reset" for spec, _ in selection):
        steps.append(last_resort(ctx, cfg, repo is not None))
    return RollbackReport(phase=phase, incident=incident, dry_run=True, steps=steps, config_source=cfg.source,
                          checklist=judge_checklist(cfg.phase(phase).checklist, steps, evidence_sources(), dry_run=True))


def last_resort(ctx: StepContext, cfg: RollbackConfig, checked: bool) -> StepResult:
    """P4.3 in a full Phase 4 plan: checked as `--only reset` checks it (the same status), shown as the
    approval-gated step it is, and not deciding the plan's exit — the phase's run does not run it."""
    gate = ("last resort, approval-gated: runs only with --only reset and a person's approval "
            "(approver named, branch typed back)")
    if not checked:
        return StepResult(id=LAST_RESORT.id, name=LAST_RESORT.name, status="skipped", data={"last_resort": "not-selected"},
                          evidence=[gate, *describe(LAST_RESORT, cfg, "4")])
    result = execute_step(LAST_RESORT, ctx.for_step(LAST_RESORT.id), step_function(LAST_RESORT.name))
    result.evidence = [*result.evidence, gate] if result.status == "would-fail" else [gate, *result.evidence]
    result.data = {**result.data, "last_resort": "not-selected"}
    return result
