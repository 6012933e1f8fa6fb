"""The runbook's preconditions of a phase (P1.pre1–P1.pre3), read from the workspace: only looks.

A plan shows each with its verdict: `done` when it holds, `needs-human` (with what was found)
when it does not — a precondition that fails is a finding for a person, not a reason to stop.
"""

from __future__ import annotations

from actor_rollback.runbook.model import StepResult
from actor_rollback.runbook.phases import StepSpec
from actor_rollback.tasks.cargo_manifest import old_path_active, find_gates, inspect_manifests
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import described


# what a plan without a workspace says each precondition will check
described("pre-flag-off")(lambda spec, cfg, phase: [
    f'"{cfg.flag}" must be in no [features] default of the workspace (P1.1 makes it so)'])
described("pre-old-path")(lambda spec, cfg, phase: [f"{cfg.phase(phase).old_path} must still be selected somewhere "
                                                    "with the flag off"])
described("pre-baseline")(lambda spec, cfg, phase: [
    f"{cfg.benchmarks.baseline} must exist" + (f" (or benchmarks.baseline_ref = {cfg.benchmarks.baseline_ref!r})"
                                               if cfg.benchmarks.baseline_ref else "")])


def _verdict(spec: StepSpec, holds: bool, evidence: list[str]) -> StepResult:
    return StepResult(id=spec.id, name=spec.name, status="done" if holds else "needs-human",
                      evidence=[f"{'PASS' if holds else 'FAIL'}: {spec.title}", *evidence],
                      data={"precondition": "pass" if holds else "fail"})


def check_precondition(spec: StepSpec, ctx: StepContext) -> StepResult:
    flag, root = ctx.cfg.flag, ctx.repo
    match spec.name:
        case "pre-flag-off":
            findings = inspect_manifests(root, flag)
            on = [f"{f.path}: default enables {flag} ({', '.join(f.direct) or ' → '.join(f.chain)})"
                  for f in findings if f.direct or f.chain]
            declared = [str(f.path) for f in findings if f.declares_flag]
            return _verdict(spec, not on, on + [f"{flag} declared in {', '.join(declared) or 'no Cargo.toml'}"]
                            + (["P1.1 takes it out of default"] if on else []))
        case "pre-old-path":
            old = ctx.phase_cfg.old_path
            if not old:
                return _verdict(spec, False, [f"phases.{ctx.phase}.old_path is not set: set it to the old "
                                              "implementation's name"])
            active = old_path_active(root, old, find_gates(root, flag))
            return _verdict(spec, bool(active), active or [f"{old} is selected nowhere with {flag} off"])
        case "pre-baseline":
            b = ctx.cfg.benchmarks
            if b.baseline_ref:
                return _verdict(spec, True, [f"benchmarks.baseline_ref = {b.baseline_ref!r}: benched in the same run"])
            there = (root / b.baseline).exists()
            return _verdict(spec, there, [f"{b.baseline} {'exists' if there else 'does not exist'} in {root}"])
    raise ValueError(f"unknown precondition {spec.name}")
