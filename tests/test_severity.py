"""S.x / F.x: every row of the runbook's severity matrix and every boundary, against the shipped config."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from helpers import config
from pydantic import ValidationError

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import Incident
from actor_rollback.runbook.severity import decide

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
POLICY = config().severity


def incident(kind: str, **kw) -> Incident:
    return Incident(id="inc-1", phase="1", kind=kind, **kw)


@pytest.mark.parametrize("kind,extra,severity,action,owner,rule", [
    ("service-down", {}, "critical", "flag-off", "sre-oncall", "S.C/F.1"),
    ("data-loss", {}, "critical", "flag-off", "sre-oncall", "S.C/F.1"),
    ("perf-regression", {"regression_pct": 35.0}, "high", "rollback", "tech-lead", "S.H/F.2"),
    ("perf-regression", {"regression_pct": 10.01}, "high", "rollback", "tech-lead", "S.H/F.2"),
    ("perf-regression", {"regression_pct": 10.0}, "medium", "ask-owner", "project-manager", "S.M/F.3"),  # "> 10 %"
    ("perf-regression", {"regression_pct": 7.5}, "medium", "ask-owner", "project-manager", "S.M/F.3"),
    ("perf-regression", {"regression_pct": 5.0}, "medium", "ask-owner", "project-manager", "S.M/F.3"),  # R1.1 "5 % or more"
    ("perf-regression", {"regression_pct": 4.99}, "low", "register-issue", "development-team", "S.L/F.4"),
    ("perf-regression", {"regression_pct": -3.0}, "low", "register-issue", "development-team", "S.L/F.4"),
    ("crash", {"crashes_per_hour": 12.0}, "high", "rollback", "tech-lead", "S.H/F.2"),
    ("crash", {"crashes_per_hour": 3.0}, "high", "rollback", "tech-lead", "S.H/F.2"),  # at the threshold: frequent
    ("crash", {"crashes_per_hour": 2.9}, "medium", "ask-owner", "project-manager", "S.M/F.3"),  # sporadic
    ("crash", {}, "high", "rollback", "tech-lead", "S.H/F.2"),  # unknown frequency: the safe side
    ("deploy-failure", {}, "high", "rollback", "tech-lead", "S.H/F.2"),
    ("incompatibility", {}, "low", "register-issue", "development-team", "S.L/F.4"),
    ("docs", {}, "low", "register-issue", "development-team", "S.L/F.4"),
])
def test_every_row_and_boundary_of_the_severity_matrix(kind, extra, severity, action, owner, rule):
    decision = decide(incident(kind, **extra), POLICY, now=NOW)
    assert (decision.severity, decision.action, decision.owner, decision.rule) == (severity, action, owner, rule)
    assert decision.notify == [owner]  # by default the owner is told
    assert decision.reason and decision.decided_by == "policy" and decision.decided_at == NOW


@pytest.mark.parametrize("severity,kind,extra,within", [
    ("critical", "service-down", {}, timedelta(0)),
    ("high", "perf-regression", {"regression_pct": 20.0}, timedelta(hours=1)),
    ("medium", "perf-regression", {"regression_pct": 6.0}, timedelta(hours=24)),
    ("low", "docs", {}, timedelta(days=7)),
])
def test_the_deadline_runs_from_the_incident_start(severity, kind, extra, within):
    started = NOW - timedelta(minutes=10)
    decision = decide(incident(kind, started_at=started, **extra), POLICY, now=NOW)
    assert decision.severity == severity and decision.deadline == started + within


def test_the_thresholds_and_notified_roles_come_from_the_config():
    policy = config(**{"severity.high_regression_pct": 20.0, "severity.notify": {"high": ["tech-lead", "sre-oncall"]}}).severity
    decision = decide(incident("perf-regression", regression_pct=15.0), policy, now=NOW)
    assert decision.severity == "medium"
    decision = decide(incident("perf-regression", regression_pct=25.0), policy, now=NOW)
    assert decision.severity == "high" and decision.notify == ["tech-lead", "sre-oncall"]


@pytest.mark.parametrize("kw,message", [
    ({"kind": "perf-regression"}, "needs its size; give --regression-pct N"),
    ({}, "has no kind; give one of service-down"),
])
def test_an_incident_the_matrix_cannot_place_is_bad_input(kw, message):
    with pytest.raises(BadInputError, match=message):
        decide(Incident(id="inc-1", phase="1", **kw), POLICY, now=NOW)


@pytest.mark.parametrize("field,value", [("regression_pct", float("nan")), ("regression_pct", float("inf")),
                                         ("crashes_per_hour", float("nan")), ("crashes_per_hour", -5.0),
                                         ("crashes_per_hour", float("inf"))])
def test_an_unknown_or_impossible_number_is_refused_by_the_incident_itself_naming_the_field(field, value):
    """#25.3: a NaN rate read as sporadic made a crash Medium — less severe than a known high rate."""
    with pytest.raises(ValidationError, match=rf"{field}\n.*must be a finite number"):
        Incident(id="inc-1", phase="1", kind="crash", **{field: value})


def test_an_unknown_role_in_the_severity_table_is_a_config_error():
    with pytest.raises(Exception, match="severity or runner.outcome_notify names unknown role on-call"):
        config(**{"severity.notify": {"critical": ["on-call"]}})
