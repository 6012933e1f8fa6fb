"""The runbook lives in the repository (docs/runbook/): every step the flows run cites an ID it defines, and
the fidelity table accounts for every one of its IDs."""

from __future__ import annotations

import re
from pathlib import Path

from runbook.phases import LAST_RESORT, PHASE_STEPS, PRECONDITIONS

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
