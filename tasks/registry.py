"""The runbook's steps as their declarations say (tasks/declare.py): the function, what a plan says, the checklist
items proved, the milestones, by step name; and how one step is run so that it always ends in a StepResult (no
Prefect here: `plan` uses it too)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from actor_rollback.runbook.checklist import EvidenceSources
from actor_rollback.runbook.errors import StepError
from actor_rollback.runbook.model import StepResult
from actor_rollback.runbook.phases import StepSpec
# the modules that declare steps (tasks/declare.py): imported, their declarations are made; a new one goes here
from actor_rollback.tasks import (adr, benchmarks, cargo_manifest, ci_workflow, commands,  # noqa: F401
                                  config_files, git_refs, git_repo, logs, metrics, preconditions)
from actor_rollback.tasks.commands import redact, secret_names
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import DECLARED

StepFunction = Callable[[StepContext], StepResult]


def step_function(name: str) -> StepFunction | None:
    """The function declared for the step `name`; None for a person's step."""
    declared = DECLARED.get(name)
    return declared.function if declared else None


def automated_steps() -> set[str]:
    return {name for name, d in DECLARED.items() if d.function}


def evidence_sources() -> EvidenceSources:
    """Checklist ID → (the step whose result proves it, the fact in that step's data, if one is needed)."""
    return {item: (name, fact) for name, d in DECLARED.items() for item, fact in d.evidence.items()}


def milestone(name: str) -> str | None:
    """The time-to-mitigation mark the step `name` sets when it is done ("pushed"), if any."""
    declared = DECLARED.get(name)
    return declared.milestone if declared else None


def changes_target(name: str) -> bool:
    """Whether the step `name` changes the target (once it has, the phase's reintroduction is locked, A.4)."""
    declared = DECLARED.get(name)
    return bool(declared and declared.changes_target)


def describe(spec: StepSpec, cfg, phase: str) -> list[str]:
    """The exact commands / edits / queries of one step under this configuration (its declaration's `describe`),
    so that a plan and a dry run show the truth without touching anything; else the step's title."""
    declared = DECLARED.get(spec.name)
    said = declared.describe(spec, cfg, phase) if declared and declared.describe else []
    return said or [spec.title]


def execute_step(spec: StepSpec, ctx: StepContext, call: StepFunction | None) -> StepResult:
    """One step, whatever happens: a StepResult with its evidence and time, never an exception."""
    started = time.monotonic()
    if not spec.automated:
        result = StepResult(id=spec.id, name=spec.name, status="needs-human",  # in a plan too: the run stops here
                            evidence=["a person does this step:", *describe(spec, ctx.cfg, ctx.phase)])
    elif call is None:
        result = StepResult(id=spec.id, name=spec.name, status="needs-human",
                            evidence=[f"not automated yet (issue #{spec.pending_issue}); by hand:",
                                      *describe(spec, ctx.cfg, ctx.phase)])
    else:
        try:
            result = call(ctx)
        except StepError as exc:
            result = StepResult(id=spec.id, name=spec.name, status="failed", evidence=[str(exc)],
                                failure=exc.failure)
        except Exception as exc:  # a bug or an unexpected fault: report it, never hide it
            result = StepResult(id=spec.id, name=spec.name, status="failed", failure="fault",
                                evidence=[f"{type(exc).__name__}: {exc}"])
    result.evidence = redact(result.evidence, secret_names(ctx.cfg))  # a secret in an error message stays out
    if ctx.dry_run and result.status == "failed":  # a plan changes nothing: it says what would fail, and why
        result.status = "would-fail"
    result.seconds = time.monotonic() - started
    result.finished_at = datetime.now(timezone.utc)
    return result
