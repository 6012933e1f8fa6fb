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


def test_step_names_are_one_typed_set_and_every_automated_step_is_declared_beside_its_function_in_tasks():
    from typing import get_args

    from actor_rollback.runbook.phases import StepName
    from actor_rollback.tasks.declare import DECLARED
    from actor_rollback.tasks.registry import automated_steps

    specs = [spec for steps in [*PHASE_STEPS.values(), *PRECONDITIONS.values(), [LAST_RESORT]] for spec in steps]
    assert {spec.name for spec in specs} == set(get_args(StepName)), "StepName is the names the phases use"
    automated = {spec.name for spec in specs if spec.automated and spec.pending_issue is None} - {
        spec.name for steps in PRECONDITIONS.values() for spec in steps}
    assert automated == automated_steps(), "a step the runbook automates has no function, or a function no step"
    assert all(d.function.__module__.startswith("actor_rollback.tasks.") for d in DECLARED.values() if d.function)


def test_a_plan_says_what_every_declared_step_will_do_not_only_its_title():
    from actor_rollback.runbook.config import load_config
    from actor_rollback.tasks.declare import DECLARED
    from actor_rollback.tasks.registry import describe

    cfg = load_config()
    for phase, steps in [*PHASE_STEPS.items(), *PRECONDITIONS.items(), ("4", [LAST_RESORT])]:
        for spec in steps:
            said = describe(spec, cfg, phase)
            assert said, f"describe() says nothing of {phase} {spec.name}"
            if spec.name in DECLARED:
                assert said != [spec.title], f"{phase} {spec.name}: its declaration's describe says only the title"


def test_each_checklist_item_a_step_declares_it_proves_is_in_the_shipped_checklist_and_its_fact_is_set_by_it():
    import inspect
    import sys

    from actor_rollback.runbook.config import load_config
    from actor_rollback.tasks.registry import evidence_sources, step_function

    cfg = load_config()
    items = {item.id for phase in PHASE_STEPS for item in cfg.phase(phase).checklist}
    sources = evidence_sources()
    assert set(sources) <= items, f"declared evidence for items no phase lists: {sorted(set(sources) - items)}"
    for item, (name, fact) in sources.items():
        module = sys.modules[step_function(name).__module__]
        assert fact is None or f'"{fact}"' in inspect.getsource(module), (
            f"{item}: the {name} step's module never sets the fact {fact!r} it is said to prove")
