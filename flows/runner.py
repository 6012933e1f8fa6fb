"""What every phase flow shares: run the runbook's steps in order, stop safely, leave the record.

A phase flow opens `with PhaseRun(...) as run:` (which holds the target's lock) and calls
`run.all_steps()`: the phase's steps in runbook/phases.py's order — two at once where the runbook has them
independent (`alongside_next`), P4.3 after a person's approval. A failed step stops the rest (they are
reported as not run), a step not automated yet is handed to a person with its exact commands, and the
checklist is judged from the steps' own evidence.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from actor_rollback.flows.report_text import checklist_markdown, run_tags, steps_table
from actor_rollback.flows.outcome import add_tags, emit, emit_step, is_drill, outcome_state, rollback_resource
from actor_rollback.flows.target_lock import one_rollback_per_target
from actor_rollback.runbook.checklist import judge_checklist
from actor_rollback.runbook.ids import check_incident_id, new_incident_id
from actor_rollback.runbook.model import RollbackReport, StepResult
from actor_rollback.runbook.phases import NEEDS, StepSpec
from actor_rollback.runbook.request import check_request
from actor_rollback.tasks.commands import end_commands_on_sigterm
from actor_rollback.tasks.context import StepContext, artifact_key
from actor_rollback.tasks.host_lock import TargetBusy, target_name
from actor_rollback.tasks.registry import changes_target, evidence_sources, execute_step, milestone
from actor_rollback.tasks.steps import step_call, step_result, step_task
from actor_rollback.tasks.work_tree import WorkTree, leftover_note, unpublished, working_in_own_tree

# Fault injection for the kill-and-rerun tests: "kill-before:<step name>" SIGKILLs this process.
FAULT_INJECT = "ACTOR_ROLLBACK_FAULT_INJECT"


def default_incident_id() -> str:
    """For a run started without an incident id (e.g. from the UI): named after the run itself."""
    run_id = flow_run.get_id()
    return f"run-{str(run_id)[:8]}" if run_id else new_incident_id()


class PhaseRun:
    def __init__(self, phase: str, repo: str, reason: str, incident_id: str = "", dry_run: bool = False,
                 only: list[str] | None = None, skip: list[str] | None = None, merge: str = "",
                 config: str = "", severity: str = "", incident_started_at: str = "",
                 done_before: list[dict] | None = None) -> None:
        # the UI form and the API reach here without the CLI's checks: refuse before anything changes
        request = check_request(phase, repo, reason, incident_id, only, skip, config)
        self.phase, self.cfg, self.selection = request.phase, request.cfg, request.selection
        self.ctx = StepContext(repo=Path(repo).resolve(), cfg=self.cfg, phase=self.phase,
                               incident=request.incident or check_incident_id(default_incident_id()),
                               reason=reason, dry_run=dry_run, merge_override=merge)
        self.severity = severity
        self.results: list[StepResult] = []
        self.retry_lock = None  # A.4, set when the run changed the target
        self.milestones: dict[str, datetime] = {"run started": datetime.now(timezone.utc)}
        if incident_started_at:
            started = datetime.fromisoformat(incident_started_at.replace("Z", "+00:00"))
            self.milestones["incident started"] = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
        self.stopped_by: StepResult | None = None
        # what the receiver did for this incident before the run (F.1's flag off first), by step name
        self.done_before = {step.name: step for step in map(StepResult.model_validate, done_before or [])}
        self.would_fail: set[str] = set()  # dry run: steps whose preconditions fail (the run goes on past them)
        self.logger = get_run_logger()
        self._queue = list(self.selection)
        self._exit = ExitStack()
        self.work: WorkTree | None = None
        self.leftovers: list[str] = []

    # ------------------------------------------------------------ the target's lock

    def __enter__(self) -> PhaseRun:
        end_commands_on_sigterm()  # a cancelled or terminated run ends its commands, not waits for them
        self._tag_run()
        emit("rollback.started", self.resource, {"reason": self.ctx.reason, "steps": [
            spec.id for spec, runs in self.selection if runs]})
        if self.ctx.dry_run:
            return self
        try:
            self._exit.enter_context(one_rollback_per_target(
                self.ctx.repo, self.cfg, self.ctx.incident, self._run_id(), log=self.logger.warning))
        except TargetBusy as exc:
            self.stopped_by = StepResult(id="lock", name="target-lock", status="failed", evidence=[str(exc)],
                                         failure=exc.failure)
            self.results.append(self.stopped_by)
            return self
        try:  # every write in a tree of the run's own: a dirty clone or another run's leftovers never block it
            self.work = self._exit.enter_context(working_in_own_tree(self.ctx, log=self.logger.warning))
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.leftovers = self._leftovers()  # while the work tree is still there
        self._exit.close()

    def _run_id(self) -> str | None:
        run_id = flow_run.get_id()
        return str(run_id) if run_id else None

    def _tag_run(self) -> None:
        """Phase, incident, severity and target as tags, however the run was started (CLI, UI, alert)."""
        self.target = target_name(self.ctx.repo, self.cfg)
        self.resource = rollback_resource(self.phase, self.ctx.incident, self.target, self.ctx.dry_run)
        add_tags(*run_tags(self.phase, self.ctx.incident, self.severity, self.target, self.ctx.dry_run))

    # ------------------------------------------------------------ steps

    def all_steps(self, terminal_approval: dict | None = None) -> None:
        """Every step of the phase in the runbook's order (runbook/phases.py): a step with `alongside_next` runs
        at the same time as the one after it (monitor ∥ logs; CI ∥ deploy only with `ci.gate_deploy = false` —
        faster, and a red CI may ship, which the plan says — else CI green first, then the deploy: a failed CI
        stops the run before anything ships); one that needs `approval` asks a person first (P4.3)."""
        while self._queue:
            spec = self._queue[0][0]
            together = spec.alongside_next == "always" or (
                spec.alongside_next == "unless-ci-gates" and not self.cfg.ci.gate_deploy)
            if together and len(self._queue) > 1:
                self.parallel(spec.name, self._queue[1][0].name)
                continue
            if spec.approval:
                self.approve_last_resort(terminal_approval)
            self.step(spec.name)

    def step(self, name: str) -> StepResult:
        spec, runs = self._next(name)
        result = self._blocked(spec, runs) or self._execute(spec)
        self._record(spec, result)
        return result

    def parallel(self, *names: str) -> list[StepResult]:
        """Independent steps at once (CI ∥ deploy, monitor ∥ logs); the slower one sets the pace."""
        specs = [self._next(name) for name in names]
        started = time.monotonic()
        pending = []
        for spec, runs in specs:
            blocked = self._blocked(spec, runs)
            task = step_task(spec.name)
            if blocked is None and task is not None:
                self._maybe_die(spec)
                future = task.submit(self.ctx.for_step(spec.id))
                pending.append((spec, None, lambda _ctx, f=future: step_result(f.result(raise_on_failure=False))))
            else:
                pending.append((spec, blocked, None))
        results = []
        for spec, blocked, wait in pending:
            result = blocked or execute_step(spec, self.ctx.for_step(spec.id), wait)
            if blocked is None:
                result.seconds = time.monotonic() - started
            results.append(result)
        for (spec, _), result in zip(specs, results):
            self._record(spec, result)
        return results

    def _next(self, name: str) -> tuple[StepSpec, bool]:
        spec, runs = self._queue.pop(0)
        if spec.name != name:  # the flow and runbook/phases.py must tell the same story
            raise RuntimeError(f"phase {self.phase} flow runs '{name}' where the runbook has '{spec.name}'")
        return spec, runs

    def _blocked(self, spec: StepSpec, runs: bool) -> StepResult | None:
        if not runs:
            return StepResult(id=spec.id, name=spec.name, status="skipped", evidence=["skipped on request"])
        if self.stopped_by is not None:
            return StepResult(id=spec.id, name=spec.name, status="skipped", evidence=[
                f"not run: {self.stopped_by.id} {self.stopped_by.name} {self.stopped_by.status}"])
        if NEEDS.get(spec.name) in self.would_fail:
            return StepResult(id=spec.id, name=spec.name, status="blocked", evidence=[
                f"needs what {NEEDS[spec.name]} would establish, and that step would fail or is blocked"])
        return None

    def _maybe_die(self, spec: StepSpec) -> None:
        if os.environ.get(FAULT_INJECT) == f"kill-before:{spec.name}":
            os.kill(os.getpid(), signal.SIGKILL)

    def _execute(self, spec: StepSpec) -> StepResult:
        self._maybe_die(spec)
        return execute_step(spec, self.ctx.for_step(spec.id), step_call(spec.name))

    def _record(self, spec: StepSpec, result: StepResult) -> None:
        result = self._as_done_before(result)
        self.ctx.facts.update(result.data)
        self.results.append(result)
        mark = milestone(spec.name)
        if mark and result.status in ("done", "already-done") and not self.ctx.dry_run:
            self.milestones.setdefault(mark, result.finished_at or datetime.now(timezone.utc))
        self.logger.info("%s %s: %s", result.id, result.name, result.status)
        emit_step(self.resource, result)
        if result.status in ("would-fail", "blocked"):  # a dry run goes on, so one call shows everything that is wrong
            self.would_fail.add(spec.name)
        # A change that failed or waits for a person stops what builds on it; a check only reports.
        stops = result.status in ("failed", "needs-human") and not self.ctx.dry_run and (
            spec.automated and spec.pending_issue is None and not spec.check)
        if stops:  # later steps build on this one: stop here, safely
            self.stopped_by = self.stopped_by or result

    def _as_done_before(self, result: StepResult) -> StepResult:
        """A step this run found done that the receiver did for this incident before the run: the record says it was
        done then (its time is the time to mitigation), and that this run checked it again."""
        before = self.done_before.get(result.name)
        if result.status != "already-done" or before is None or before.status not in ("done", "already-done"):
            return result
        said = ("done by the alert receiver before this run (F.1, flag-off first):" if before.status == "done" else
                "found done on the remote by the alert receiver before this run (F.1, flag-off first):")
        return before.model_copy(update={
            "id": result.id, "data": {**before.data, **result.data},
            "evidence": [said, *before.evidence,
                         f"checked again by this run: {result.evidence[-1] if result.evidence else 'already done'}"]})

    def approve_last_resort(self, given: dict | None) -> None:
        """P4.3 asks a person first; the answer (or its absence) goes into the reset step's evidence."""
        from actor_rollback.flows.approval import ask_for_approval

        if self.ctx.dry_run or self.stopped_by is not None or not any(
                spec.approval and runs for spec, runs in self._queue):
            return
        approval, evidence = ask_for_approval(self.cfg, self.ctx.incident, self.ctx.reason, given)
        self.ctx.approval = approval
        self.ctx.facts["approval_note"] = "\n".join(evidence)
        self.logger.warning("last resort approval: %s", evidence[-1])

    # ------------------------------------------------------------ the record

    def finish(self):
        """The run's final state (flows/outcome.py), carrying the report as its data."""
        if self._queue:
            raise RuntimeError(f"phase {self.phase} flow ended before steps {[s.name for s, _ in self._queue]}")
        report = RollbackReport(
            phase=self.phase, incident=self.ctx.incident, dry_run=self.ctx.dry_run, reason=self.ctx.reason,
            steps=self.results,
            checklist=judge_checklist(self.cfg.phase(self.phase).checklist, self.results, evidence_sources(),
                                      self.ctx.dry_run),
            flow_run_id=self._run_id(),
            leftovers=self.leftovers, config_source=self.cfg.source,
        )
        self.retry_lock = self._lock_reintroduction(report)
        self._artifacts(report)
        add_tags(f"outcome:{report.outcome}")
        emit("rollback.finished", rollback_resource(self.phase, self.ctx.incident, self.target, self.ctx.dry_run,
                                                    report.outcome), {"summary": report.summary()})
        return outcome_state(report.outcome, report.summary(), report.model_dump(mode="json"))

    def _leftovers(self) -> list[str]:
        """What this run's work tree holds that the remote does not: kept for the rerun, and said."""
        if self.work is None:
            return []
        commits, dirty = unpublished(self.ctx, self.work)
        return [leftover_note(self.ctx, self.work, commits, dirty)] if commits or dirty else []

    def _lock_reintroduction(self, report: RollbackReport):
        """A.4: a phase rolled back is not reintroduced for a week; every trigger sees the lock."""
        from actor_rollback.flows.retry_lock import set_retry_lock
        from actor_rollback.tasks.git_repo import first_change_of_incident, open_workspace

        if report.dry_run or is_drill():  # a drill's sandbox is not the target: nothing to lock
            return None
        # Counted from the incident's first change of the target: done by this run (or by the receiver for it),
        # or by an earlier run of the same incident (its commits on the remote) — never by a run that found the
        # target rolled back by someone else, and a rerun never extends it.
        done = [s.finished_at for s in report.steps if changes_target(s.name) and s.status == "done" and s.finished_at]
        earlier = first_change_of_incident(open_workspace(self.ctx.repo), self.ctx) if any(
            changes_target(s.name) and s.status == "already-done" for s in report.steps) else None
        since = min([*done, *([earlier] if earlier else [])], default=None)
        if since is None:
            return None
        lock = set_retry_lock(self.ctx.repo, self.cfg, self.phase, self.ctx.incident, self._run_id(), now=since)
        self.logger.info("A.4 retry lock: %s", lock.describe())
        return lock

    def time_to_mitigation(self) -> list[dict]:
        """Each milestone with its time and the seconds since the incident began (or the run started)."""
        origin = self.milestones.get("incident started", self.milestones["run started"])
        return [{"milestone": name, "at": at.isoformat(), "seconds": round((at - origin).total_seconds(), 3)}
                for name, at in sorted(self.milestones.items(), key=lambda item: item[1])]

    def _artifacts(self, report: RollbackReport) -> None:
        key = artifact_key("rollback-phase", report.phase, report.incident)
        mitigation = None if report.dry_run else self.time_to_mitigation()
        if mitigation:
            create_table_artifact(table=mitigation, key=f"{key}-ttm",
                                  description=f"Time to mitigation of {report.incident}: incident start → flag off "
                                              "pushed → deploy done")
        after = [f"A.4 {self.retry_lock.describe()}"] if self.retry_lock is not None else None
        create_markdown_artifact(markdown=checklist_markdown(report, self.cfg, mitigation, after),
                                 key=f"{key}-checklist",
                                 description=f"Phase {report.phase} checklist for {report.incident}")
        create_table_artifact(table=steps_table(report), key=f"{key}-steps",
                              description=f"Phase {report.phase} steps for {report.incident}")
