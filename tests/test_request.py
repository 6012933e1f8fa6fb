"""One check of a rollback request (runbook/request.py), the CLI's and the flow's: each bad part refused as bad input
naming its fix, before anything changes."""

from __future__ import annotations

import pytest

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.ids import IncidentIdError
from actor_rollback.runbook.phases import StepSelectionError
from actor_rollback.runbook.request import check_request

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote


def test_a_good_request_comes_back_normalised_with_its_selection():
    request = check_request("2a", None, "worker leak", "INC-9", skip=["ci"])
    assert request.phase == "2A" and request.incident == "INC-9" and request.reason == "worker leak"
    assert [spec.name for spec, runs in request.selection if not runs] == ["ci"]


@pytest.mark.parametrize("change,error,said", [
    ({"reason": "  "}, BadInputError, r"the reason is empty \(--reason, or the form's `reason`\)"),
    ({"incident": "INC 9/../x"}, IncidentIdError, "incident"),
    ({"only": ["flga"]}, StepSelectionError, "--only: unknown step flga for phase 1; choose from"),
    ({"phase": "7"}, BadInputError, "phase"),
])
def test_each_bad_part_of_a_request_is_refused_naming_it(change, error, said):
    asked = {"phase": "1", "repo": None, "reason": "p99 doubled", "incident": "", **change}
    with pytest.raises(error, match=said):
        check_request(**asked)
