"""The runbook's verification checklists, judged from the steps' own results.

An item passes only on evidence from a step that ran; a step that did not run, or that is not
automated yet, leaves it `unverified` with the reason — never `pass`.
"""

from __future__ import annotations

from actor_rollback.runbook.config import ChecklistSpec
from actor_rollback.runbook.model import ChecklistItem, StepResult

# Checklist ID → (the step whose result proves it, the fact in that step's data, if one is needed): each step
# declares the items it proves (tasks/declare.py), and tasks/registry.py::evidence_sources collects them.
EvidenceSources = dict[str, tuple[str, "str | None"]]


def judge_item(spec: ChecklistSpec, steps: list[StepResult], sources: EvidenceSources,
               dry_run: bool = False) -> ChecklistItem:
    def item(status: str, *evidence: str) -> ChecklistItem:
        return ChecklistItem(id=spec.id, item=spec.item, status=status, evidence=list(evidence))

    if dry_run:
        return item("unverified", "dry run: nothing was changed, so nothing is verified")
    source = sources.get(spec.id)
    if source is None:
        return item("unverified", "no automated check for this item: verify it by hand and record it")
    name, fact = source
    step = next((s for s in reversed(steps) if s.name == name), None)
    if step is None:
        return item("unverified", f"the '{name}' step is not part of this run")
    evidence = [f"{step.id} {step.name}: {step.status}", *step.evidence]
    if step.status == "failed":
        return item("fail", *evidence)
    if step.status not in ("done", "already-done"):
        return item("unverified", *evidence)
    if fact is not None:
        verdict = step.data.get(fact)
        if verdict == "fail":
            return item("fail", *evidence)
        if verdict != "pass":
            return item("unverified", f"{step.id} {step.name} did not establish '{fact}'", *evidence)
    return item("pass", *evidence)


def judge_checklist(specs: list[ChecklistSpec], steps: list[StepResult], sources: EvidenceSources,
                    dry_run: bool = False) -> list[ChecklistItem]:
    return [judge_item(spec, steps, sources, dry_run) for spec in specs]
