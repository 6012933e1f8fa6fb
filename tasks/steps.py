"""The runbook's steps as Prefect tasks: transient faults retried with backoff, fatal ones not.

Keyed by the step names of `runbook.phases` (see tasks/registry.py); a name missing there is not
automated yet and the flow reports it as needs-human with the exact commands to run by hand.

A task run's state is its step's status: a failed step is a Failed task run; the step's headline
(ID, name, status, first evidence) is the state's message.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from prefect import Task, task
from prefect.states import Completed, Failed, State

from actor_rollback.runbook.errors import StepError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.registry import STEP_FUNCTIONS


def retry_only_transient(task: Task, task_run, state) -> bool:
    """Retry network trouble and a moving remote; a conflict, an ambiguity or a step's own finding fails at once."""
    data = state.result(raise_on_failure=False)
    return isinstance(data, StepError) and data.retryable


def step_state(result: StepResult) -> State:
    """The task run's final state, from the step's status."""
    if result.status == "failed":
        return Failed(message=result.headline(), data=result)
    return Completed(message=result.headline(), data=result)  # a custom state name would hide it in the UI's lists


def step_result(data: Any) -> StepResult:
    """What a step's task run gave back (`state.result(raise_on_failure=False)`): its StepResult, or its error raised."""
    if isinstance(data, StepResult):
        return data
    if isinstance(data, BaseException):
        raise data
    raise TypeError(f"a step's task returned {type(data).__name__}, not a StepResult")


def rollback_task(fn: Callable[[StepContext], StepResult]) -> Task:
    @functools.wraps(fn)  # Prefect reads fn's signature through the wrapper
    def run_step(*args, **kwargs) -> State:
        return step_state(fn(*args, **kwargs))

    return task(
        run_step,
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


def run_step_task(name: str, ctx: StepContext) -> StepResult:
    """Run a step's task in this flow run and wait: its StepResult, whatever its task run's state."""
    return step_result(STEP_TASKS[name](ctx, return_state=True).result(raise_on_failure=False))


def step_call(name: str) -> Callable[[StepContext], StepResult] | None:
    """For `execute_step`: the named step as a task run, or None when it is not automated."""
    return functools.partial(run_step_task, name) if name in STEP_TASKS else None
