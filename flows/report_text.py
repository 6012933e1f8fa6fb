"""A rollback's record as people read it — the checklist page and the steps table — built once, for the
artifacts of a flow run (flows/runner.py) and of a recorded dry run (flows/dry_record.py). No Prefect here."""

from __future__ import annotations

import json

from actor_rollback.runbook.config import RollbackConfig
from actor_rollback.runbook.model import RollbackReport


MESSAGE_LIMIT = 2000  # a state message is for people scanning a list; the artifacts hold the rest


def state_message(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 1] + "…"


def run_tags(phase: str, incident: str, severity: str, target: str, dry_run: bool) -> list[str]:
    """Phase, incident, severity and target as tags, however the run was started (CLI, UI, alert, a dry run)."""
    return [f"phase:{phase}", f"incident:{incident}", "actor-rollback", f"severity:{severity or 'untriaged'}",
            f"target:{target}", *(["dry-run"] if dry_run else [])]


def checklist_markdown(report: RollbackReport, cfg: RollbackConfig, mitigation: list[dict] | None = None,
                       after: list[str] | None = None) -> str:
    lines = [f"# Phase {report.phase} rollback — {report.incident}", "",
             f"Outcome: **{report.outcome}**{' (dry run)' if report.dry_run else ''}", "",
             f"Reason: {report.reason}", "", f"Config: {report.config_source}", "", "## Checklist", ""]
    for item in report.checklist:
        lines.append(f"- **{item.status.upper()}** {item.id} {item.item}")
        lines += [f"  - {e}" for e in item.evidence]
    if mitigation:
        lines += ["", "## Time to mitigation", ""] + [f"- {m['milestone']}: {m['at']} (+{m['seconds']:.2f} s)"
                                                     for m in mitigation]
    if after:
        lines += ["", "## After the rollback", "", *[f"- {line}" for line in after]]
    lines += ["", "## Links", ""] + [f"- {k}: {v}" for k, v in cfg.dashboards.model_dump().items() if v]
    return "\n".join(lines)


def steps_table(report: RollbackReport) -> list[dict]:
    return [{"id": s.id, "step": s.name, "status": s.status, "seconds": round(s.seconds, 2),
             "evidence": " / ".join(s.evidence)[:2000], "data": json.dumps(s.data)} for s in report.steps]
