"""What every phase flow shares: run the runbook's steps in order, stop safely, leave the record.

A phase flow calls `run.step(name)` in the runbook's order. A failed step stops the rest
(they are reported as not run), a step not automated yet is handed to a person with its exact
commands, and the checklist is judged from the steps' own evidence.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from runbook.checklist import judge_checklist
from runbook.config import RollbackConfig, load_config, normalize_phase
from runbook.model import RollbackReport, StepResult
from runbook.phases import StepSpec, select_steps
from tasks.context import StepContext
from tasks.registry import execute_step
from tasks.steps import STEP_TASKS


def new_incident_id() -> str:
    return "inc-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def default_incident_id() -> str:
    """For a run started without an incident id (e.g. from the UI): named after the run itself."""
    run_id = flow_run.get_id()
    return f"run-{str(run_id)[:8]}" if run_id else new_incident_id()


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


class PhaseRun:
    def __init__(self, phase: str, repo: str, reason: str, incident_id: str = "", dry_run: bool = False,
                 only: list[str] | None = None, skip: list[str] | None = None, merge: str = "",
                 config: str = "") -> None:
        self.phase = normalize_phase(phase)
        self.cfg: RollbackConfig = load_config(config or None)
        self.selection = select_steps(self.phase, only, skip)
        self.ctx = StepContext(repo=Path(repo).resolve(), cfg=self.cfg, phase=self.phase,
                               incident=incident_id or default_incident_id(), reason=reason,
                               dry_run=dry_run, merge_override=merge)
        self.results: list[StepResult] = []
        self.stopped_by: StepResult | None = None
        self.logger = get_run_logger()
        self._queue = list(self.selection)

    def step(self, name: str) -> StepResult:
        spec, runs = self._next(name)
        if not runs:
            result = StepResult(id=spec.id, name=name, status="skipped", evidence=["skipped on request"])
        elif self.stopped_by is not None:
            result = StepResult(id=spec.id, name=name, status="skipped", evidence=[
                f"not run: {self.stopped_by.id} {self.stopped_by.name} {self.stopped_by.status}"])
        else:
            result = self._execute(spec)
        self.results.append(result)
        self.logger.info("%s %s: %s", result.id, result.name, result.status)
        if result.status in ("failed", "needs-human") and spec.automated and spec.pending_issue is None:
            self.stopped_by = result  # later steps build on this one: stop here, safely
        return result

    def _next(self, name: str) -> tuple[StepSpec, bool]:
        spec, runs = self._queue.pop(0)
        if spec.name != name:  # the flow and runbook/phases.py must tell the same story
            raise RuntimeError(f"phase {self.phase} flow runs '{name}' where the runbook has '{spec.name}'")
        return spec, runs

    def _execute(self, spec: StepSpec) -> StepResult:
        result = execute_step(spec, self.ctx.for_step(spec.id), STEP_TASKS.get(spec.name))
        self.ctx.facts.update(result.data)
        return result

    def finish(self) -> dict:
        if self._queue:
            raise RuntimeError(f"phase {self.phase} flow ended before steps {[s.name for s, _ in self._queue]}")
        report = RollbackReport(
            phase=self.phase, incident=self.ctx.incident, dry_run=self.ctx.dry_run, reason=self.ctx.reason,
            steps=self.results,
            checklist=judge_checklist(self.cfg.phase(self.phase).checklist, self.results, self.ctx.dry_run),
            flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None,
        )
        self._artifacts(report)
        return report.model_dump(mode="json")

    def _artifacts(self, report: RollbackReport) -> None:
        key = artifact_key("rollback-phase", report.phase, report.incident)
        lines = [f"# Phase {report.phase} rollback — {report.incident}", "",
                 f"Outcome: **{report.outcome}**{' (dry run)' if report.dry_run else ''}", "",
                 f"Reason: {report.reason}", "", "## Checklist", ""]
        for item in report.checklist:
            lines.append(f"- **{item.status.upper()}** {item.id} {item.item}")
            lines += [f"  - {e}" for e in item.evidence]
        lines += ["", "## Links", ""] + [f"- {k}: {v}" for k, v in self.cfg.dashboards.model_dump().items() if v]
        create_markdown_artifact(markdown="\n".join(lines), key=f"{key}-checklist",
                                 description=f"Phase {report.phase} checklist for {report.incident}")
        create_table_artifact(
            table=[{"id": s.id, "step": s.name, "status": s.status, "seconds": round(s.seconds, 2),
                    "evidence": " / ".join(s.evidence)[:2000]} for s in report.steps],
            key=f"{key}-steps", description=f"Phase {report.phase} steps for {report.incident}",
        )
