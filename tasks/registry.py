"""The automated runbook steps by name, as plain functions of a StepContext, and how one step is
run so that it always ends in a StepResult (no Prefect here: `plan` uses it too)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from actor_rollback.runbook.errors import StepError
from actor_rollback.runbook.model import StepResult
from actor_rollback.runbook.phases import StepSpec, describe
from actor_rollback.tasks.adr import record_design_change
from actor_rollback.tasks.benchmarks import verify_benchmarks
from actor_rollback.tasks.cargo_manifest import check_flag_gating, disable_feature_flag
from actor_rollback.tasks.ci_workflow import disable_no_std_ci
from actor_rollback.tasks.commands import build_pinned_to_tokio, check_ci, deploy_with_command, redact, secret_names
from actor_rollback.tasks.config_files import check_phase_code, restore_scheduler_config
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.git_refs import archive_branch, reset_to_phase_0_baseline
from actor_rollback.tasks.git_repo import find_phase_merge, push_rollback, revert_merge
from actor_rollback.tasks.logs import check_logs
from actor_rollback.tasks.metrics import watch_metrics

StepFunction = Callable[[StepContext], StepResult]

STEP_FUNCTIONS: dict[str, StepFunction] = {
    "flag": disable_feature_flag,  # P1.1 P2A.1 P2B.1 P3.2 P4.2
    "gating": check_flag_gating,  # P1.1b P3.2
    "find-merge": find_phase_merge,  # P1.2a P2A.2 P2B.2 P4.1
    "revert": revert_merge,  # P1.2b P2A.2 P2B.2 P4.1
    "push": push_rollback,  # P1.2b
    "ci": check_ci,  # P1.2c
    "deploy": deploy_with_command,  # P1.3a (command or Kubernetes backend)
    "monitor": watch_metrics,  # P1.3b P1.C4 P2A.4 P2A.5 X.3
    "logs": check_logs,  # P1.3c
    "benchmarks": verify_benchmarks,  # P1.C3 A.3
    "config": restore_scheduler_config,  # P2A.3
    "code-checks": check_phase_code,  # P2B.2 P2B.3
    "ci-file": disable_no_std_ci,  # P3.3
    "build": build_pinned_to_tokio,  # P3.1
    "archive": archive_branch,  # P0.1
    "adr": record_design_change,  # P0.3
    "reset": reset_to_phase_0_baseline,  # P4.3: without an approval it only reports needs-human
}


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
