"""The runbook lives in the repository (docs/runbook/): every step the flows run cites an ID it defines, and
the fidelity table accounts for every one of its IDs."""

from __future__ import annotations

import pytest
import re
from pathlib import Path

from actor_rollback.runbook.phases import LAST_RESORT, PHASE_STEPS, PRECONDITIONS

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote

DOCS = Path(__file__).resolve().parents[1] / "docs"


def runbook_ids() -> set[str]:
    return set(re.findall(r"^\| ([A-Z][A-Za-z0-9]*\.[A-Za-z0-9.]+) \|", (DOCS / "runbook" / "STEPS.md").read_text(), re.M))


def test_every_step_of_every_phase_flow_cites_an_id_of_the_runbooks_step_table():
    ids = runbook_ids()
    assert len(ids) >= 60 and (DOCS / "runbook" / "RUNBOOK.ja.md").read_text().startswith("# ActorScheduler")
    used = {spec.id for steps in [*PHASE_STEPS.values(), *PRECONDITIONS.values(), [LAST_RESORT]] for spec in steps}
    assert used - ids == set(), f"steps citing IDs docs/runbook/STEPS.md does not define: {sorted(used - ids)}"


def test_the_fidelity_table_accounts_for_every_runbook_step():
    fidelity = (DOCS / "FIDELITY.md").read_text()
    missing = sorted(id for id in runbook_ids() if not re.search(rf"(?<![\w.]){re.escape(id)}(?![\w])", fidelity))
    assert missing == [], f"docs/FIDELITY.md says nothing of {missing}"


def flow_step_calls() -> dict[str, list[str]]:
    """Each phase flow's `run.step(…)` / `run.parallel(…)` / `run.ci_then_deploy(…)` names, in order, read from flows/phases.py's source."""
    import ast

    source = ast.parse((Path(__file__).resolve().parents[1] / "flows" / "phases.py").read_text())
    calls: dict[str, list[str]] = {}
    for fn in source.body:
        if isinstance(fn, ast.FunctionDef) and fn.name.startswith("rollback_phase_"):
            phase = fn.name.removeprefix("rollback_phase_").upper()
            calls[phase] = [arg.value for node in ast.walk(fn) if isinstance(node, ast.Call)
                            and isinstance(node.func, ast.Attribute) and node.func.attr in ("step", "parallel", "ci_then_deploy")
                            for arg in node.args if isinstance(arg, ast.Constant)]
    return calls


def test_every_phase_flow_runs_its_runbook_steps_in_the_runbooks_order():
    from actor_rollback.runbook.config import load_config
    from actor_rollback.runbook.phases import describe
    from actor_rollback.tasks.registry import STEP_FUNCTIONS

    calls = flow_step_calls()
    assert set(calls) == set(PHASE_STEPS)
    for phase, steps in PHASE_STEPS.items():
        expected = [spec.name for spec in steps] + (["reset"] if phase == "4" else [])
        assert calls[phase] == expected, f"phase {phase}: the flow calls {calls[phase]}, the runbook has {expected}"
    specs = [spec for steps in PHASE_STEPS.values() for spec in steps] + [LAST_RESORT]
    automated = {spec.name for spec in specs if spec.automated and spec.pending_issue is None}
    assert automated == set(STEP_FUNCTIONS), "a step the runbook automates has no function, or a function no step"
    cfg = load_config()
    for phase, steps in PHASE_STEPS.items():  # `plan` can say what each step will do
        for spec in steps:
            assert describe(spec, cfg, phase), f"describe() says nothing of {phase} {spec.name}"
