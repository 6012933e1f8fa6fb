"""Each phase's rollback as an ordered list of runbook steps: the runbook's page, which the phase's flow follows.

Step names are one typed set (`StepName`); what a step does and what a plan says of it is declared beside its
function (tasks/declare.py). IDs come from docs/runbook/STEPS.md; a step ID may cover two named steps (P1.2b is
the revert and its push).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from actor_rollback.runbook.config import RollbackConfig, normalize_phase
from actor_rollback.runbook.errors import BadInputError


StepName = Literal[
    "archive", "review", "adr", "redesign",  # Phase 0
    "flag", "gating", "find-merge", "revert", "push", "ci", "deploy", "monitor", "logs", "benchmarks",
    "config", "code-checks", "ci-file", "build", "embedded", "reset",
    "pre-flag-off", "pre-old-path", "pre-baseline",  # Phase 1's preconditions, which a plan checks
]


@dataclass(frozen=True)
class StepSpec:
    id: str
    name: StepName  # what --only / --skip accept, besides the ID
    title: str
    automated: bool = True  # False: a human does it; the run reports needs-human with the commands
    pending_issue: int | None = None  # automated by a later issue; until then the run says so
    check: bool = False  # only looks; an unresolved check does not stop the steps after it
    # runs at the same time as the next step: always (monitor ∥ logs), or unless `ci.gate_deploy` puts the
    # deploy after a green CI (the runbook's order: CI, then deploy)
    alongside_next: Literal["", "always", "unless-ci-gates"] = ""
    approval: bool = False  # a person approves it first (P4.3), whatever else was selected


def _flag_step(step_id: str) -> StepSpec:
    return StepSpec(step_id, "flag", "Disable the feature flag in every Cargo.toml's default features")


def _revert_steps(find_id: str, revert_id: str | None = None) -> list[StepSpec]:
    return [
        StepSpec(find_id, "find-merge", "Find the phase's merge commit on the main branch"),
        StepSpec(revert_id or find_id, "revert", "Revert the merge with git revert -m 1"),
    ]


def _push_step(step_id: str) -> StepSpec:
    return StepSpec(step_id, "push", "Push the rollback commits to the remote (never forced)")


def _deliver_steps(monitor_id: str = "P1.3b") -> list[StepSpec]:
    # The runbook spells CI, deploy and logs out once, in Phase 1, and says "as in Phase 1" after.
    return [
        StepSpec("P1.2c", "ci", "Confirm CI is green", alongside_next="unless-ci-gates"),
        StepSpec("P1.3a", "deploy", "Deploy the rollback version"),
        StepSpec(monitor_id, "monitor", "Watch throughput, latency, CPU/memory and error rate", check=True,
                 alongside_next="always"),
        StepSpec("P1.3c", "logs", "Count error lines in a bounded window of the service's logs", check=True),
    ]


PHASE_STEPS: dict[str, list[StepSpec]] = {
    "0": [
        StepSpec("P0.1", "archive", "Archive the unmerged branch: tag archive/<branch>, delete it"),
        StepSpec("P0.2", "review", "Review the design documents and analyse the problem", automated=False),
        StepSpec("P0.3", "adr", "Record the design change in an ADR (a stub, numbered after the target's ADRs)"),
        StepSpec("P0.4", "redesign", "Redesign with a new approach", automated=False),
    ],
    "1": [
        _flag_step("P1.1"),
        StepSpec("P1.1b", "gating", "Check that the flag gates the new path and keeps the old one", check=True),
        *_revert_steps("P1.2a", "P1.2b"),
        _push_step("P1.2b"),
        *_deliver_steps(),
        StepSpec("P1.C3", "benchmarks", "Run the benchmarks and compare with the baseline (±2 %)", check=True),
    ],
    "2A": [
        _flag_step("P2A.1"),
        *_revert_steps("P2A.2"),
        StepSpec("P2A.3", "config", "Restore the [scheduler] settings of config/actor_system.toml"),
        _push_step("P2A.2"),
        *_deliver_steps("P2A.4"),
        StepSpec("A.3", "benchmarks", "Run the benchmarks and compare with the baseline (±2 %)", check=True),
    ],
    "2B": [
        _flag_step("P2B.1"),
        *_revert_steps("P2B.2"),
        StepSpec("P2B.3", "code-checks", "Check invoke_message is back and the middleware chain is gone"),
        _push_step("P2B.2"),
        *_deliver_steps(),
        StepSpec("A.3", "benchmarks", "Run the benchmarks and compare with the baseline (±2 %)", check=True),
    ],
    "3": [
        StepSpec("P3.2", "flag", "Disable the feature flag so the cfg(not) Tokio path is built"),
        StepSpec("P3.2", "gating", "Check that the flag gates the runtime abstraction and keeps the Tokio path",
                 check=True),
        StepSpec("P3.3", "ci-file", "Disable the no_std build in the CI workflow (YAML-aware)"),
        _push_step("P3.3"),
        StepSpec("P3.1", "build", "Build pinned to Tokio"),
        *_deliver_steps(),
        StepSpec("P3.4", "embedded", "Move Embassy deployments to Tokio; bare metal to the pre-Phase-2 code",
                 automated=False),
    ],
    "4": [
        *_revert_steps("P4.1"),
        _flag_step("P4.2"),
        _push_step("P4.1"),
        *_deliver_steps(),
        StepSpec("A.3", "benchmarks", "Run the benchmarks and compare with the baseline (±2 %)", check=True),
    ],
}

# Phase 4's last resort runs only when asked for by name and approved by a person.
LAST_RESORT = StepSpec("P4.3", "reset", "Last resort: reset main to the Phase 0 baseline with --force-with-lease",
                       approval=True)

# The phase's preconditions (the runbook's P1.pre*): a plan shows their verdict on the workspace.
PRECONDITIONS: dict[str, list[StepSpec]] = {
    "1": [
        StepSpec("P1.pre1", "pre-flag-off", "Precondition: the flag is not in any default feature set", check=True),
        StepSpec("P1.pre2", "pre-old-path", "Precondition: the old path can still run side by side", check=True),
        StepSpec("P1.pre3", "pre-baseline", "Precondition: a benchmark baseline is saved", check=True),
    ],
}

# A step that needs what an earlier one establishes: when that one would fail, a plan marks it blocked.
# Blocked spreads: a push whose revert is blocked is blocked too.
NEEDS: dict[str, str] = {"revert": "find-merge", "push": "revert"}


def phase_steps(phase: str) -> list[StepSpec]:
    return PHASE_STEPS[normalize_phase(phase)]


class StepSelectionError(BadInputError, ValueError):
    pass


def step_choices(phase: str) -> list[str]:
    """What `only` and `skip` accept for a phase — each step's name and its ID — in the runbook's order."""
    steps = [*phase_steps(phase), *([LAST_RESORT] if normalize_phase(phase) == "4" else [])]
    return list(dict.fromkeys(label for spec in steps for label in (spec.name, spec.id)))


def select_steps(phase: str, only: list[str] | None = None, skip: list[str] | None = None) -> list[tuple[StepSpec, bool]]:
    """Every step of the phase with whether it runs; unknown names are an error naming the valid ones."""
    steps = phase_steps(phase)
    if phase == "4" and only and any(x in ("reset", "P4.3") for x in only):
        steps = [*steps, LAST_RESORT]
    known = {s.name for s in steps} | {s.id for s in steps}
    for label, names in (("--only", only or []), ("--skip", skip or [])):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise StepSelectionError(
                f"{label}: unknown step {', '.join(unknown)} for phase {phase}; "
                f"choose from {', '.join(sorted(known))}"
            )
    chosen = []
    for spec in steps:
        runs = (not only or spec.id in only or spec.name in only) and not (
            skip and (spec.id in skip or spec.name in skip)
        )
        chosen.append((spec, runs))
    return chosen


def deploy_version(cfg: RollbackConfig, phase: str) -> str:
    return cfg.phase(phase).deploy_version or f"rollback-phase{normalize_phase(phase).lower()}"
