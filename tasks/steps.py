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
from actor_rollback.tasks.commands import redact, secret_names
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.registry import step_function


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
    def run_step(ctx: StepContext, *args, **kwargs) -> State:  # as Prefect binds fn's own parameters
        result = fn(ctx, *args, **kwargs)  # its secrets out before its headline becomes the task run's state message
        result.evidence = redact(result.evidence, secret_names(ctx.cfg))
        return step_state(result)

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


_TASKS: dict[str, Task] = {}


def step_task(name: str) -> Task | None:
    """The named step's Prefect task (one per step, made when first asked for); None when it is not automated."""
    fn = step_function(name)
    if fn is None:
        return None
    if name not in _TASKS or _TASKS[name].fn.__wrapped__ is not fn:
        _TASKS[name] = rollback_task(fn)
    return _TASKS[name]


def run_step_task(name: str, ctx: StepContext) -> StepResult:
    """Run a step's task in this flow run and wait: its StepResult, whatever its task run's state."""
    return step_result(step_task(name)(ctx, return_state=True).result(raise_on_failure=False))


def step_call(name: str) -> Callable[[StepContext], StepResult] | None:
    """For `execute_step`: the named step as a task run, or None when it is not automated."""
    return functools.partial(run_step_task, name) if step_function(name) else None
