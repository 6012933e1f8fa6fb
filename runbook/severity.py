"""The runbook's severity matrix (S.x) and decision flow (F.x): an Incident in, a Decision out.

Pure policy, no I/O. The boundaries, exactly as the runbook words them:
- a performance regression *above* `high_regression_pct` (10 %) is High; exactly 10 % is Medium;
- `medium_regression_pct` (5 %) up to 10 % is Medium; exactly 5 % is Medium (R1.1: "5 % or more");
- below 5 % is Low (fix in the next release);
- crashes at or above `frequent_crashes_per_hour` are frequent (High), fewer are sporadic (Medium);
  a crash report without a frequency counts as frequent — the safe side;
- a deploy failure (R1.5, the pipeline keeps failing) is High: the matrix has no row for it, and a
  pipeline that cannot ship blocks every fix, so it gets the 1-hour revert path.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from actor_rollback.runbook.config import SeverityConfig
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import INCIDENT_KINDS, Decision, Incident

# F.x: what each severity does
ACTIONS = {
    "critical": "flag-off",  # F.1 disable the feature flag immediately, notify on-call
    "high": "rollback",  # F.2 git revert within 1 hour, notify the tech lead
    "medium": "ask-owner",  # F.3 decide within 24 hours, consult the PM
    "low": "register-issue",  # F.4 fix in the next release
}
RULES = {"critical": "S.C/F.1", "high": "S.H/F.2", "medium": "S.M/F.3", "low": "S.L/F.4"}


def classify(incident: Incident, policy: SeverityConfig) -> tuple[str, str]:
    """(severity, why) for an incident, by the matrix's conditions."""
    kind = incident.kind
    if kind is None:
        raise BadInputError(f"incident {incident.id} has no kind; give one of {', '.join(INCIDENT_KINDS)}")
    if kind in ("service-down", "data-loss"):
        return "critical", f"{kind}: service down or data loss is Critical"
    if kind == "perf-regression":
        pct = incident.regression_pct
        if pct is None or not math.isfinite(pct):
            raise BadInputError(f"incident {incident.id}: a perf-regression needs its size; give --regression-pct N "
                                "(or the alert's regression_pct annotation)")
        if pct > policy.high_regression_pct:
            return "high", f"regression {pct:g} % > {policy.high_regression_pct:g} %"
        if pct >= policy.medium_regression_pct:
            return "medium", f"regression {pct:g} % within {policy.medium_regression_pct:g}–{policy.high_regression_pct:g} %"
        return "low", f"regression {pct:g} % below {policy.medium_regression_pct:g} %"
    if kind == "crash":
        rate = incident.crashes_per_hour
        if rate is None:
            return "high", "crashes of unknown frequency count as frequent"
        if rate >= policy.frequent_crashes_per_hour:
            return "high", f"frequent crashes: {rate:g}/h >= {policy.frequent_crashes_per_hour:g}/h"
        return "medium", f"sporadic faults: {rate:g}/h < {policy.frequent_crashes_per_hour:g}/h"
    if kind == "deploy-failure":
        return "high", "the pipeline keeps failing (R1.5): nothing, not even a fix, can ship"
    return "low", f"{kind}: minor incompatibility or documentation gap"


def decide(incident: Incident, policy: SeverityConfig, now: datetime | None = None) -> Decision:
    severity, why = classify(incident, policy)
    decided_at = now or datetime.now(timezone.utc)
    start = incident.started_at or decided_at
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return Decision(severity=severity, action=ACTIONS[severity], deadline=start + policy.deadline(severity),
                    owner=policy.owners[severity], notify=policy.roles_to_notify(severity), rule=RULES[severity],
                    reason=why, decided_at=decided_at)
