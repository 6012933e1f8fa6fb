"""The objects that travel from trigger to postmortem: one object per idea."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict

from actor_rollback.runbook.ids import check_incident_id

# A plan (or --dry-run) says "would-fail" for a step whose read-only preconditions fail, and "blocked" for a
# later step that needs what that one would have established.
StepStatus = Literal["done", "already-done", "skipped", "planned", "failed", "needs-human", "would-fail", "blocked"]
CheckStatus = Literal["pass", "fail", "unverified"]
Severity = Literal["critical", "high", "medium", "low"]
IncidentKind = Literal[
    "service-down", "data-loss", "perf-regression", "crash", "incompatibility", "docs", "deploy-failure",
]
INCIDENT_KINDS: tuple[str, ...] = get_args(IncidentKind)  # for choices and messages: the one list of kinds

# "busy": another rollback of the same target holds it — nothing was wrong with the input, nothing failed;
# the run could not act yet (a rerun, or the holder, finishes the work).
Outcome = Literal["done", "failed", "bad-input", "needs-human", "busy"]
EXIT_CODES = {"done": 0, "failed": 1, "bad-input": 2, "needs-human": 3, "busy": 4}  # the CLI's exit codes
WORSE = ("done", "needs-human", "busy", "failed", "bad-input")  # bad input is the operator's to fix first


def worst(outcomes) -> Outcome:
    return max(outcomes, key=WORSE.index, default="done")

# How a failed step failed: bad input (exit 2) is the operator's to fix; a fault (exit 1) is the system's.
FailureKind = Literal["bad-input", "fault", "busy"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_rate(value: float | None) -> float | None:
    """A crash rate is a finite count per hour, never negative: NaN must not read as less severe than a known
    high rate, nor Infinity as a number."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be a finite number of crashes per hour, 0 or more (got {value!r})")
    return value


def check_finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"must be a finite number (got {value!r})")
    return value


EARLIEST_INCIDENT = datetime(2000, 1, 1, tzinfo=timezone.utc)
CLOCK_SKEW = timedelta(days=1)


def check_started_at(value: datetime | None) -> datetime | None:
    """When an incident began: a time with its offset, after 2000 and no later than a day from now (a clock a
    little off is tolerated; year 9999 would overflow every deadline computed from it)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no UTC offset; write it as RFC 3339 (e.g. 2026-12-05T03:00:00Z)")
    latest = datetime.now(timezone.utc) + CLOCK_SKEW
    if not EARLIEST_INCIDENT <= value <= latest:
        raise ValueError(f"{value.isoformat()} is not a time an incident began (between "
                         f"{EARLIEST_INCIDENT:%Y-%m-%d} and {latest:%Y-%m-%d %H:%M} UTC)")
    return value


class Incident(_Model):
    """What happened: where it came from, which phase, what kind, with its evidence."""

    id: Annotated[str, AfterValidator(check_incident_id)]
    source: str = "manual"  # manual | alertmanager | grafana | schedule | cli
    phase: str
    kind: IncidentKind | None = None
    regression_pct: Annotated[float | None, AfterValidator(check_finite)] = None
    crashes_per_hour: Annotated[float | None, AfterValidator(check_rate)] = None  # kind "crash": High or Medium
    summary: str = ""
    labels: dict[str, str] = {}
    evidence: list[str] = []
    started_at: Annotated[datetime | None, AfterValidator(check_started_at)] = None


class Decision(_Model):
    """The severity policy's answer for an incident."""

    severity: Severity
    action: str
    deadline: datetime
    owner: str  # the runbook role that decides
    notify: list[str] = []  # roles
    rule: str = ""  # the matrix row (S.x / F.x) that decided it
    reason: str = ""  # why this row, in words
    decided_by: str = "policy"
    decided_at: datetime | None = None


class StepResult(_Model):
    """One runbook step as it ran: its ID from docs/runbook/STEPS.md, what happened, and the proof."""

    id: str
    name: str
    status: StepStatus
    evidence: list[str] = []
    seconds: float = 0.0
    failure: FailureKind | None = None
    data: dict[str, str] = {}  # machine-readable facts later steps use (e.g. the revert SHA)
    finished_at: datetime | None = None  # when the step's work ended (time to mitigation)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "already-done", "skipped", "planned")

    @property
    def counts(self) -> bool:
        """Whether the step's outcome is the run's: a plan's preconditions (which the run does not check) and
        Phase 4's last resort when not asked for are shown with their verdict but do not decide the exit."""
        return "precondition" not in self.data and self.data.get("last_resort") != "not-selected"

    @property
    def outcome(self) -> Outcome:
        if self.status == "failed":
            return {"bad-input": "bad-input", "busy": "busy"}.get(self.failure or "", "failed")
        if self.status == "would-fail":  # the plan found what must be fixed first: the operator's to fix
            return "bad-input"
        return "needs-human" if self.status == "needs-human" else "done"

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "status": self.status,
                "evidence": self.evidence, "seconds": round(self.seconds, 3)}

    def headline(self) -> str:
        """`P1.1 flag failed: <its first evidence>` — what a run's state message says of this step."""
        return f"{self.id} {self.name} {self.status}" + (f": {_first(self.evidence)}" if self.evidence else "")


def _first(evidence: list[str], limit: int = 240) -> str:
    """The first line of evidence; one that only introduces ("by hand:") with the line it introduces."""
    lines = [e.strip() for e in evidence if e.strip()]
    line = " ".join(lines[:2]) if len(lines) > 1 and lines[0].endswith(":") else (lines[0] if lines else "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


# What the state message says before the causes, by outcome (flows/outcome.py turns it into the run's state).
LEADS: dict[str, str] = {"failed": "FAILED", "bad-input": "BAD INPUT (fix and rerun)",
                         "needs-human": "A PERSON MUST", "busy": "BUSY (nothing changed; rerun when it ends)"}


CHECK_OUTCOME: dict[str, Outcome] = {"pass": "done", "fail": "failed", "unverified": "needs-human"}


class ChecklistItem(_Model):
    id: str
    item: str
    status: CheckStatus
    evidence: list[str] = []

    def public(self) -> dict:
        return {"id": self.id, "item": self.item, "status": self.status, "evidence": self.evidence}


class RollbackReport(_Model):
    """What a phase flow returns; the CLI prints it and the artifacts are made from it."""

    phase: str
    incident: str
    dry_run: bool
    reason: str = ""
    steps: list[StepResult] = []
    checklist: list[ChecklistItem] = []
    flow_run_id: str | None = None
    leftovers: list[str] = []  # what the run's own work tree keeps for a rerun (unpushed commits, changed files)
    config_source: str = ""  # the rollback.toml the run read (runbook.config.config_file's rule), or the shipped one

    @property
    def outcome(self) -> Outcome:
        # One rule for `plan`, `run --dry-run` and `run`: the outcome is what the run would end with. A plan's
        # needs-human step is one the run would stop at for a person; its checklist, verified by nothing yet, is not.
        steps = [s.outcome for s in self.steps if s.counts]
        if self.dry_run:
            return worst(steps)
        return worst([*steps, *(CHECK_OUTCOME[c.status] for c in self.checklist)])

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def causes(self) -> list[str]:
        """The steps and checklist items that made the outcome what it is (none when it is done)."""
        outcome = self.outcome
        if outcome == "done":
            return []
        found = [s.headline() for s in self.steps if s.counts and s.outcome == outcome]
        if not self.dry_run:
            found += [f"{c.id} {c.status}: {_first(c.evidence) or c.item}" for c in self.checklist
                      if CHECK_OUTCOME[c.status] == outcome]
        return found

    def summary(self) -> str:
        """One line for the run's state: done with what it did, or what failed / what a person must do."""
        what = f"phase {self.phase} {'plan' if self.dry_run else 'rollback'} {self.incident}"
        if self.outcome == "done":
            acted = sum(s.status in ("done", "already-done") for s in self.steps)
            passed = sum(c.status == "pass" for c in self.checklist)
            checks = f", checklist {passed}/{len(self.checklist)} pass" if self.checklist and not self.dry_run else ""
            return f"{what}: done — {acted} step(s) done{checks}"
        return f"{what}: {LEADS[self.outcome]} — " + "; ".join([*self.causes(), *self.leftovers])

    def public(self) -> dict:
        return {
            "phase": self.phase, "incident": self.incident, "dry_run": self.dry_run,
            "outcome": self.outcome, "flow_run_id": self.flow_run_id,
            "steps": [s.public() for s in self.steps],
            "checklist": [c.public() for c in self.checklist],
            "leftovers": self.leftovers, "config_source": self.config_source,
        }


class TriageReport(_Model):
    """What the triage flow returns: the incident, the decision, what was done, and the rollback's report."""

    incident: Incident
    decision: Decision
    dry_run: bool = False
    steps: list[StepResult] = []  # notify, ask-owner, register-issue, escalate
    rollback: RollbackReport | None = None
    flow_run_id: str | None = None

    @property
    def outcome(self) -> Outcome:
        return worst([*(s.outcome for s in self.steps), *([self.rollback.outcome] if self.rollback else [])])

    def summary(self) -> str:
        d, outcome = self.decision, self.outcome
        head = f"triage {self.incident.id}: {d.severity.upper()} ({d.rule}) → {d.action}"
        if outcome == "done":
            return head + (f"; {self.rollback.summary()}" if self.rollback else "; done")
        causes = [s.headline() for s in self.steps if s.outcome == outcome]
        if self.rollback is not None and self.rollback.outcome == outcome:
            causes.append(self.rollback.summary())
        return f"{head}; {LEADS[outcome]} — " + "; ".join(causes)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def public(self) -> dict:
        d = self.decision
        return {"incident": self.incident.id, "phase": self.incident.phase, "kind": self.incident.kind,
                "severity": d.severity, "action": d.action, "deadline": d.deadline.isoformat(), "owner": d.owner,
                "notify": d.notify, "rule": d.rule, "reason": d.reason, "decided_by": d.decided_by,
                "dry_run": self.dry_run, "outcome": self.outcome, "flow_run_id": self.flow_run_id,
                "steps": [s.public() for s in self.steps],
                "rollback": self.rollback.public() if self.rollback else None}
