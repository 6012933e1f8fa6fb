"""A.6: reintroduce a rolled-back phase step by step — only after the retry lock (A.4) and with the
improvement plan written (A.5).

    retry lock holds?  → refuse (lift it early only with `actor-rollback lock lift`)
    ADR filled in?     → else refuse
    re-apply           → revert the rollback's revert (once)
    flag               → stays off by default (P1.1's edit if the re-apply brought it back)
    push               → never forced
    canary             → one instance with the flag on
    watch the canary   → against the stable service, over reintroduce.canary_window_seconds
    promote            → the re-applied code everywhere, the flag still off by default; turning it
                         on by default is a reviewed change, not this flow's
    or roll back       → stop the canary and run the phase's rollback as a new incident
                         (which locks the phase for another week)
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from actor_rollback.flows.outcome import add_tags, outcome_state, pause_for_a_person, run_flow
from actor_rollback.flows.retry_lock import read_retry_lock
from actor_rollback.tasks.host_lock import TargetBusy
from actor_rollback.flows.target_lock import holding_target
from actor_rollback.runbook.config import effective_config, normalize_phase
from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.runbook.ids import check_incident_id, derived_id
from actor_rollback.runbook.model import RollbackReport, StepResult
from actor_rollback.runbook.phases import StepSpec
from actor_rollback.tasks.cargo_manifest import disable_feature_flag
from actor_rollback.tasks.context import StepContext, artifact_key
from actor_rollback.tasks.git_repo import push_rollback
from actor_rollback.tasks.reintroduce import check_adr, deploy_canary, promote, reapply_phase, stop_canary, watch_canary
from actor_rollback.tasks.registry import execute_step


@flow(name="reintroduce-phase", flow_run_name="reintroduce-phase-{phase}-{incident_id}", log_prints=True,
      on_completion=[pause_for_a_person],
      persist_result=False)
def reintroduce(phase: str, repo: str, reason: str, incident_id: str, config: str = "",
                now: Optional[datetime] = None, rollback_skip: Optional[list[str]] = None) -> dict:
    """Bring a rolled-back phase back behind its flag, through a canary (A.6).

    Args:
        phase: The phase to reintroduce.
        repo: Path of the target workspace's git clone.
        reason: Why now (the ADR's plan): recorded in every commit.
        incident_id: An id for this reintroduction; its automatic rollback is `<id>-canary` (a long id is cut
            and given a hash to fit).
        config: Path of a rollback.toml; when empty, the repository's own rollback.toml, else the shipped one.
        now: Judge the retry lock at this time instead of now (what-if, tests).
        rollback_skip: Steps the automatic rollback skips (default: benchmarks).
    """
    cfg = effective_config(config, repo)
    key = normalize_phase(phase)
    check_incident_id(incident_id)
    ctx = StepContext(repo=Path(repo).resolve(), cfg=cfg, phase=key, incident=incident_id, reason=reason,
                      step_id="A.6")
    steps: list[StepResult] = []

    def run(name: str, step_id: str, fn) -> StepResult:
        result = execute_step(StepSpec(step_id, name, name), ctx.for_step(step_id), fn)
        ctx.facts.update(result.data)
        steps.append(result)
        get_run_logger().info("%s %s: %s — %s", step_id, name, result.status, "; ".join(result.evidence[-2:]))
        return result

    def gate(_ctx) -> StepResult:
        lock = read_retry_lock(ctx.repo, cfg, key)
        at = now or datetime.now(timezone.utc)
        if lock is not None and lock.holds(at):
            raise BadInputError(f"{lock.describe(at)}; reintroduce after it, or lift it early with "
                                f"`actor-rollback lock lift --phase {key} --approver NAME --reason WHY`")
        return StepResult(id="A.4", name="retry-lock", status="done",
                          evidence=[lock.describe(at) if lock else f"phase {key} was never rolled back: no lock"])

    def locked(*calls) -> bool:
        """Writes and deploys under the target's lock, in a work tree of their own (no rollback beside them)."""
        try:
            with holding_target(ctx, log=get_run_logger().warning, purpose="reintroduce"):
                return all(run(name, step_id, fn).ok for name, step_id, fn in calls)
        except TargetBusy as exc:
            steps.append(StepResult(id="A.6", name="target-lock", status="failed", failure=exc.failure,
                                    evidence=[str(exc)]))
            return False

    ok = run("retry-lock", "A.4", gate).ok and run("adr", "A.5", check_adr).ok and locked(
        ("reapply", "A.6", reapply_phase), ("flag", "A.6", disable_feature_flag), ("push", "A.6", push_rollback),
        ("canary", "A.6", deploy_canary))
    if ok:  # the watch holds no lock: a Critical incident meanwhile is not kept waiting by a canary
        watched = run("watch-canary", "A.6", watch_canary)
        locked(("stop-canary", "A.6", stop_canary), *([("promote", "A.6", promote)] if watched.status == "done" else []))
        if watched.status == "failed":  # after the lock is released: the phase's rollback takes it itself
            sub = _roll_back(key, repo, config, incident_id, watched, rollback_skip)
            steps.append(sub)
    create_table_artifact(table=[{"id": s.id, "step": s.name, "status": s.status,
                                  "evidence": " / ".join(s.evidence)[:2000]} for s in steps],
                          key=artifact_key("reintroduce-phase", key, incident_id),
                          description=f"Reintroduction of phase {key} ({incident_id})")
    report = RollbackReport(phase=key, incident=incident_id, dry_run=False, reason=reason, steps=steps)
    add_tags("actor-rollback", "reintroduce", f"phase:{key}", f"incident:{incident_id}", f"outcome:{report.outcome}")
    summary = report.summary().replace(f"phase {key} rollback", f"phase {key} reintroduction", 1)
    return outcome_state(report.outcome, summary, {**report.public(), "exit_code": report.exit_code})


def _roll_back(phase: str, repo: str, config: str, incident_id: str, watched: StepResult,
               skip: list[str] | None) -> StepResult:
    """The canary regressed: the phase's own rollback, as a new incident."""
    from actor_rollback.flows.phases import PHASE_FLOWS

    new = derived_id(incident_id, "-canary")  # a 90-character id still gets its rollback
    size = watched.data.get("regression_pct") or "?"
    try:
        result = RollbackReport.model_validate(run_flow(
            PHASE_FLOWS[phase], reason=f"A.6 canary regressed ({size} %) while reintroducing phase {phase} ({incident_id})", repo=repo,
            incident_id=new, config=config, skip=skip if skip is not None else ["benchmarks"],
            triggered_by=f"reintroduce ({incident_id})", severity="high"))
    except StepError as exc:
        return StepResult(id="A.6", name="auto-rollback", status="failed", failure="fault", evidence=[str(exc)])
    revert = next((s.data.get("revert", "") for s in result.steps if s.name == "revert"), "")
    return StepResult(id="A.6", name="auto-rollback", status="failed", failure="fault",
                      evidence=[f"the canary regressed: phase {phase} rolled back again as {new} "
                                f"({result.outcome}; revert {revert[:10]})"],
                      data={"rollback_incident": new, "revert": revert})
