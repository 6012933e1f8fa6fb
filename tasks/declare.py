"""A runbook step declared once, beside its function.

    @declare_step("flag", describe=_describe, evidence={"P1.C1": None}, milestone="flag off committed",
                  changes_target=True)
    def disable_feature_flag(ctx: StepContext) -> StepResult: ...

The declaration says what the rest of the tool needs of a step: what a plan shows it will do (`describe`, from
the configuration alone), which configured environment variables hold its secrets (kept out of every command's
environment, redacted from every output), which checklist items its result proves (checklist ID → the fact in
its data, or None when its success is the proof), the time-to-mitigation milestone it marks, and whether it
changes the target (which locks the phase's reintroduction, A.4). tasks/registry.py collects them; where a step
runs in a phase is runbook/phases.py's (the flows follow it). Nothing here imports a step's module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, get_args

from actor_rollback.runbook.phases import StepName

if TYPE_CHECKING:
    from actor_rollback.runbook.config import RollbackConfig
    from actor_rollback.runbook.model import StepResult
    from actor_rollback.runbook.phases import StepSpec
    from actor_rollback.tasks.context import StepContext

Describe = Callable[["StepSpec", "RollbackConfig", str], list[str]]


@dataclass(frozen=True)
class Declared:
    name: StepName
    function: Callable[[StepContext], StepResult] | None
    describe: Describe | None = None
    secrets: Callable[[RollbackConfig], list[str]] | None = None
    evidence: dict[str, str | None] = field(default_factory=dict)
    milestone: str | None = None
    changes_target: bool = False


DECLARED: dict[str, Declared] = {}


def _declare(entry: Declared) -> None:
    if entry.name not in get_args(StepName):
        raise ValueError(f"step {entry.name!r} is not one of runbook/phases.py's StepName; add it there")
    earlier = DECLARED.get(entry.name)
    if earlier is not None and (entry.function is None or earlier.function is not entry.function):
        raise ValueError(f"step {entry.name!r} is declared twice")
    claimed = {item: d.name for d in DECLARED.values() if d.name != entry.name for item in d.evidence}
    for item in entry.evidence:
        if item in claimed:  # one step's result proves an item: two would make its verdict the later import's
            raise ValueError(f"checklist item {item} is proved by the step {claimed[item]!r} already, not by "
                             f"{entry.name!r} too")
    DECLARED[entry.name] = entry


def declare_step(name: StepName, *, describe: Describe | None = None, secrets=None, evidence: dict | None = None,
                 milestone: str | None = None, changes_target: bool = False):
    """Declare the decorated function as the runbook step `name` (see the module's docstring)."""

    def register(function):
        _declare(Declared(name, function, describe, secrets, evidence or {}, milestone, changes_target))
        return function

    return register


def described(name: StepName):
    """What a step with no function of its own here will do (a precondition a plan checks): its `describe`."""

    def register(describe: Describe) -> Describe:
        _declare(Declared(name, None, describe))
        return describe

    return register
