"""The runbook's steps as Prefect tasks: transient faults retried with backoff, fatal ones not.

Keyed by the step names of `runbook.phases` (see tasks/registry.py); a name missing there is not
automated yet and the flow reports it as needs-human with the exact commands to run by hand.
"""

from __future__ import annotations

from typing import Callable

from prefect import Task, task

from runbook.errors import StepError
from runbook.model import StepResult
from tasks.context import StepContext
from tasks.registry import STEP_FUNCTIONS


def retry_only_transient(task: Task, task_run, state) -> bool:
    """Retry network trouble and a moving remote; a conflict or an ambiguity fails at once."""
    try:
        state.result()
    except StepError as exc:
        return exc.retryable
    except Exception:
        return False
    return False


def rollback_task(fn: Callable[[StepContext], StepResult]) -> Task:
    return task(
        fn,
        name=fn.__name__,
        task_run_name="{ctx.step_id} " + fn.__name__,
        retries=3,
        retry_delay_seconds=[1, 2, 4],
        retry_jitter_factor=0.2,
        retry_condition_fn=retry_only_transient,
        persist_result=False,
        log_prints=True,
    )


STEP_TASKS: dict[str, Task] = {name: rollback_task(fn) for name, fn in STEP_FUNCTIONS.items()}
