"""Triage (runbook 1.2 and 5, S.x / F.x): decide how severe an incident is, then act on it.

    Critical → the phase's flag-off path now (flag off, push, deploy; no waiting on benchmarks),
               the on-call paged at the same time                                          F.1
    High     → the full phase rollback, the tech lead notified                             F.2
    Medium   → the owner (PM) asked; the run waits for their answer until the deadline,
               with a reminder before it and an escalation when it passes                  F.3
    Low      → an issue registered for the next release                                    F.4

The run (`triage-<incident>`) records the incident, its evidence, the decision, its deadline and
who decided; the rollback it starts is a subflow run, so the audit trail is one tree.
"""

from __future__ import annotations

import contextvars
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput, create_flow_run_input, read_flow_run_input
from prefect.runtime import deployment, flow_run
from pydantic import Field

from actor_rollback.flows.approval import running_again, server_reachable_by_others
from actor_rollback.flows.outcome import add_tags, outcome_state, pause_for_a_person, pause_key, run_flow
from actor_rollback.flows.phases import PHASE_FLOWS
from actor_rollback.flows.target_lock import holding_target
from actor_rollback.runbook.config import RollbackConfig, effective_config, normalize_phase, parse_duration
from actor_rollback.runbook.errors import StepError
from actor_rollback.runbook.model import Decision, Incident, RollbackReport, StepResult, TriageReport
from actor_rollback.runbook.phases import PHASE_STEPS
from actor_rollback.runbook.severity import decide
from actor_rollback.tasks.commands import redact, secret_names
from actor_rollback.tasks.context import StepContext, artifact_key
from actor_rollback.tasks.flag_off_first import recorded_first, rollback_reason
from actor_rollback.tasks.host_lock import TargetBusy, target_name
from actor_rollback.tasks.issues import register_issue
from actor_rollback.tasks.notify import notify_roles
from actor_rollback.tasks.steps import retry_only_transient


class OwnerDecision(RunInput):
    """F.3: the owner's answer to a Medium incident."""

    approved: bool = Field(description="Roll the phase back now (yes), or register an issue for the next release (no)")
    approver: str = Field(description="Your name: recorded in the audit trail")
    comment: str = Field(default="", description="Why")
    expired: bool = Field(default=False, description="Set by actor-rollback when the deadline passed unanswered; "
                                                     "leave it unticked")


AWAITING_OWNER = "awaiting:owner-decision"  # the tag of a triage run suspended for its owner (the watch's filter)


@task(name="notify", persist_result=False)
def notify(cfg: RollbackConfig, roles: list[str], subject: str, body: str, url: str | None) -> StepResult:
    evidence = notify_roles(cfg, roles, subject, body, url)
    failed = [e for e in evidence if "FAILED" in e]
    return StepResult(id="X.1", name="notify", status="needs-human" if failed or not evidence else "done",
                      evidence=evidence)


@task(name="register-issue", retries=3, retry_delay_seconds=[1, 2, 4], retry_condition_fn=retry_only_transient,
      persist_result=False)
def register(ctx: StepContext, incident: Incident, decision: Decision, url: str | None) -> StepResult:
    if ctx.dry_run or ctx.cfg.triage.issue_sink == "http":  # nothing written to the target
        return register_issue(ctx, incident, decision, url)
    try:
        with holding_target(ctx, log=get_run_logger().warning):
            return register_issue(ctx, incident, decision, url)
    except TargetBusy as exc:  # busy, not broken: the incident's rerun files it once the rollback has ended
        return StepResult(id="F.4", name="register-issue", status="failed", failure=exc.failure, evidence=[str(exc)])


def _register(ctx: StepContext, incident: Incident, decision: Decision) -> StepResult:
    """F.4 as a step of the report, whatever happens: a refused commit or push is the step's failure (its evidence
    in the JSON, the notification and the run's state), never an exception that ends the flow without them."""
    data = register(ctx, incident, decision, _url(), return_state=True).result(raise_on_failure=False)
    if isinstance(data, StepResult):
        return data
    failure = data.failure if isinstance(data, StepError) else "fault"
    text = str(data) if isinstance(data, StepError) else f"{type(data).__name__}: {data}"
    return StepResult(id="F.4", name="register-issue", status="failed", failure=failure,
                      evidence=redact([text], secret_names(ctx.cfg)))


def _run_name() -> str:
    incident = flow_run.parameters.get("incident") or {}
    ident = incident.get("id") if isinstance(incident, dict) else getattr(incident, "id", "")
    return f"triage-{ident or 'incident'}"


@flow(name="triage", flow_run_name=_run_name, log_prints=True, validate_parameters=True, persist_result=False,
      on_completion=[pause_for_a_person])
def triage(incident: Incident, repo: str, config: str = "", dry_run: bool = False,
           skip: Optional[list[str]] = None, owner_decision: Optional[dict] = None,
           done_first: Optional[list[StepResult]] = None) -> dict:
    """Decide the incident's severity by the runbook's matrix and act on it (F.1–F.4).

    Args:
        incident: What happened: id, phase, kind, regression_pct or crashes_per_hour, summary, evidence.
        repo: Path of the target workspace's git clone.
        config: Path of a rollback.toml; when empty, the repository's own rollback.toml, else the shipped one.
        dry_run: Decide and show what would be done; change and notify nothing.
        skip: Rollback steps to skip (e.g. benchmarks, when the High path must not wait for them).
        owner_decision: For a Medium incident on the embedded server: the owner's answer given up front.
        done_first: Set by the receiver: what it did for a Critical incident before this run existed (F.1's
            flag off and push); the rollback records them. Leave it empty.
    """
    cfg = effective_config(config, repo)
    incident = incident.model_copy(update={"phase": normalize_phase(incident.phase)})
    decision = decide(incident, cfg.severity)
    logger = get_run_logger()
    logger.info("%s: %s (%s) → %s, owner %s, by %s", incident.id, decision.severity, decision.rule,
                decision.action, decision.owner, decision.deadline.isoformat())
    _tag(incident, decision, repo, cfg)
    report = TriageReport(incident=incident, decision=decision, dry_run=dry_run,
                          flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None)
    if not dry_run:
        act = {"critical": _critical, "high": _high, "medium": _medium, "low": _low}[decision.severity]
        first = done_first or recorded_first(repo, incident.id)  # the receiver's, or the last serve's receiver's
        act(report, cfg, _Target(repo, config, skip or None, first), owner_decision)
    _record(report, cfg)
    add_tags(f"outcome:{report.outcome}")
    return outcome_state(report.outcome, report.summary(), report.model_dump(mode="json"))


# ---------------------------------------------------------------- F.1 – F.4


class _Target(NamedTuple):
    repo: str
    config: str
    skip: list[str] | None
    done_first: list[StepResult] = []


def _critical(report: TriageReport, cfg: RollbackConfig, target: _Target, _answer) -> None:
    """F.1: the flag off now; the page goes out at the same time, not after."""
    page = notify.submit(cfg, report.decision.notify, *_message(report, "flag-off started"), _url())
    names = [s.name for s in PHASE_STEPS[report.incident.phase]]
    only = [s for s in cfg.triage.critical_steps if s in names] if "flag" in names else None
    for first in target.done_first:
        get_run_logger().info("before this run, the receiver: %s", first.headline())
    report.rollback = _rollback(report, target, only)
    report.steps.append(page.result())
    if report.rollback.outcome == "busy":  # the on-call must know at once that nothing was turned off, and why
        holder = next((s.evidence[0] for s in report.rollback.steps if s.name == "target-lock" and s.evidence), "")
        report.steps.append(notify(cfg, report.decision.notify, *_message(
            report, "MITIGATION BLOCKED: the target is busy", f"{holder}. The flag is NOT off yet: wait for that run, "
            f"or rerun this incident when it ends (`actor-rollback run {report.incident.phase} --incident "
            f"{report.incident.id} …`)."), _url()))
        return
    report.steps.append(notify(cfg, report.decision.notify, *_message(report, f"flag-off {report.rollback.outcome}"),
                               _url()))


def _high(report: TriageReport, cfg: RollbackConfig, target: _Target, _answer) -> None:
    """F.2: the full phase rollback (revert within the hour); the tech lead is told before and after."""
    report.steps.append(notify(cfg, report.decision.notify, *_message(report, "rollback started"), _url()))
    skip = target.skip or cfg.triage.high_skip or None  # the run's own skip first, then the config's
    report.rollback = _rollback(report, target._replace(skip=skip), None)
    report.steps.append(notify(cfg, report.decision.notify, *_message(report, f"rollback {report.rollback.outcome}"),
                               _url()))


def _medium(report: TriageReport, cfg: RollbackConfig, target: _Target, answer: dict | None) -> None:
    """F.3: the owner decides by the deadline: approve → the rollback; reject → an issue."""
    decision = report.decision
    if answer is None and server_reachable_by_others() and deployment.get_id() is not None:
        got = _suspend_for_owner(report, cfg)  # no process, no runner slot while the owner decides
    else:
        report.steps.append(notify(cfg, decision.notify, *_message(report, "your decision is needed", _how(report)),
                                   _url()))
        got = _ask_owner(report, cfg, answer)
    if got is None:
        return
    decision.decided_by = got.approver
    if got.approved:
        report.rollback = _rollback(report, target, None)
    else:
        report.steps.append(_register(_ctx(report, cfg, target.repo), report.incident, decision))


def _low(report: TriageReport, cfg: RollbackConfig, target: _Target, _answer) -> None:
    """F.4: fix in the next release."""
    filed = _register(_ctx(report, cfg, target.repo), report.incident, report.decision)
    report.steps.append(filed)
    said = ("issue registered", "") if filed.ok else (f"issue NOT registered ({filed.outcome})", filed.headline())
    report.steps.append(notify(cfg, report.decision.notify, *_message(report, *said), _url()))


# ---------------------------------------------------------------- helpers


def _how(report: TriageReport) -> str:
    return (f"Decide by {report.decision.deadline.isoformat()}: `actor-rollback approve {flow_run.get_id()} "
            "--approver NAME` rolls the phase back; add `--reject` to register an issue for the next release instead "
            "(or answer the form of the run in the Prefect UI).")


def _suspend_for_owner(report: TriageReport, cfg: RollbackConfig) -> OwnerDecision | None:
    """F.3 in a deployment run: ask once, then suspend — the process exits and frees its runner slot; the answer
    (`approve`, the UI's form, or the watch's `expired` at the deadline) schedules the run again, which comes back
    here from the top and gets the answer from `suspend_flow_run`. The deadline is the first run's, kept as an input."""
    key = pause_key("owner-decision", report.incident.id)
    deadline_key = f"{key}-deadline"
    first_deadline = read_flow_run_input(deadline_key)
    if first_deadline is None:  # the first time: record the deadline, ask, mark the run for the watch
        create_flow_run_input(deadline_key, report.decision.deadline.isoformat())
        report.steps.append(notify(cfg, report.decision.notify, *_message(report, "your decision is needed",
                                                                          _how(report)), _url()))
        add_tags(AWAITING_OWNER)
    else:
        report.decision.deadline = datetime.fromisoformat(first_deadline)
        report.steps.append(StepResult(id="X.1", name="notify", status="done", evidence=[
            f"{', '.join(report.decision.notify)} asked before the run was suspended (its earlier log)"]))
    # the first time the process ends here; after the answer, the same key gives it back
    got = suspend_flow_run(wait_for_input=OwnerDecision, key=_unused_pause_key(key))
    if got.expired:
        return _escalate(report, cfg)
    return _answered(report, got)


def remind_owner(cfg: RollbackConfig, incident: dict, deadline: datetime, run_id) -> list[str]:
    """F.3's reminder for a suspended run (sent by serve's watch: the run has no process)."""
    from prefect.settings import PREFECT_UI_URL

    found = Incident.model_validate(incident)
    report = TriageReport(incident=found, decision=decide(found, cfg.severity))
    report.decision.deadline = deadline
    return notify_roles(cfg, report.decision.notify, *_message(report, f"REMINDER: decision due {deadline.isoformat()}"),
                        f"{PREFECT_UI_URL.value()}/flow-runs/flow-run/{run_id}")


def _answered(report: TriageReport, got: OwnerDecision) -> OwnerDecision:
    report.steps.append(StepResult(id="F.3", name="ask-owner", status="done", evidence=[
        f"{got.approver}: {'roll back' if got.approved else 'next release'}" + (f" — {got.comment}" if got.comment else "")]))
    return got


def _escalate(report: TriageReport, cfg: RollbackConfig) -> None:
    """F.3's deadline passed unanswered: the owner and the tech lead are told; the triage fails with it."""
    escalate = sorted({*report.decision.notify, "tech-lead"})
    sent = notify_roles(cfg, escalate, *_message(report, "ESCALATION: no decision by the deadline"), _url())
    report.steps.append(StepResult(id="F.3", name="ask-owner", status="failed", failure="fault", evidence=[
        f"no decision by {report.decision.deadline.isoformat()}; escalated to {', '.join(escalate)}", *sent]))
    return None


def _pause_keys(key: str):
    """The keys this run may have suspended with: `key`, then `key-1`, `key-2`, … (a run put back after its runner
    stopped — serve's SIGTERM — asks again under a fresh key: Prefect never suspends twice with one key)."""
    n = 0
    while True:
        yield key if n == 0 else f"{key}-{n}"
        n += 1


def _answer_under(key: str) -> dict | None:
    from prefect.input.run_input import keyset_from_base_key

    return read_flow_run_input(keyset_from_base_key(f"suspended-{key}")["response"])


def _unused_pause_key(key: str) -> str:
    """The first key this run has not suspended with, or an answered one (then suspend_flow_run returns its answer)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        used = set(client.read_flow_run(flow_run.get_id()).empirical_policy.pause_keys or ())
    return next(k for k in _pause_keys(key) if k not in used or _answer_under(k) is not None)


def _ask_owner(report: TriageReport, cfg: RollbackConfig, given: dict | None) -> OwnerDecision | None:
    decision = report.decision
    if given:
        got = OwnerDecision(**given)
        report.steps.append(StepResult(id="F.3", name="ask-owner", status="done",
                                       evidence=[f"answered up front by {got.approver}: "
                                                 f"{'roll back' if got.approved else 'next release'}"]))
        return got
    if not server_reachable_by_others():
        report.steps.append(StepResult(id="F.3", name="ask-owner", status="needs-human", evidence=[
            f"on the embedded server nobody can answer this run; {decision.owner} decides by "
            f"{decision.deadline.isoformat()} and starts the rollback or files the issue"]))
        return None
    seconds = max(1.0, (decision.deadline - datetime.now(timezone.utc)).total_seconds())
    remind_in = seconds - parse_duration(cfg.triage.reminder_before).total_seconds()
    reminder = None
    if remind_in > 0:
        run_context = contextvars.copy_context()
        reminder = threading.Timer(remind_in, run_context.run, args=(notify_roles, cfg, decision.notify,
                                   *_message(report, f"REMINDER: decision due {decision.deadline.isoformat()}"), _url()))
        reminder.daemon = True
        reminder.start()
    try:
        got = pause_flow_run(wait_for_input=OwnerDecision, timeout=int(seconds), poll_interval=1,
                             key=pause_key("owner-decision", report.incident.id))
    except FlowPauseTimeout:
        running_again("no owner decision by the deadline")
        return _escalate(report, cfg)
    finally:
        if reminder is not None:
            reminder.cancel()
    return _answered(report, got)


def _rollback(report: TriageReport, target: _Target, only: list[str] | None) -> RollbackReport:
    incident = report.incident
    result = run_flow(
        PHASE_FLOWS[incident.phase],
        reason=rollback_reason(incident, report.decision),
        repo=target.repo, incident_id=incident.id, only=only or [], skip=[] if only else target.skip or [],
        config=target.config, severity=report.decision.severity,
        incident_started_at=incident.started_at.isoformat() if incident.started_at else "",
        triggered_by=f"triage ({incident.source})",
        done_before=[step.model_dump(mode="json") for step in target.done_first])
    return RollbackReport.model_validate(result)


def _ctx(report: TriageReport, cfg: RollbackConfig, repo: str) -> StepContext:
    return StepContext(repo=Path(repo).resolve(), cfg=cfg, phase=report.incident.phase, incident=report.incident.id,
                       reason=f"{report.decision.rule}: {report.incident.summary or report.incident.kind}",
                       step_id="F.4")


def _url() -> str | None:
    return flow_run.get_flow_run_ui_url()


def _message(report: TriageReport, what: str, extra: str = "") -> tuple[str, str]:
    i, d = report.incident, report.decision
    subject = f"[actor-rollback] {d.severity.upper()} phase {i.phase} {i.id}: {what}"
    lines = [f"{i.kind}: {i.summary}" if i.summary else str(i.kind), f"Decision: {d.rule} {d.reason} → {d.action}",
             f"Owner: {d.owner}, by {d.deadline.isoformat()}"]
    if report.rollback is not None:
        lines.append(f"Rollback: {report.rollback.outcome} (" + ", ".join(
            f"{s.name} {s.status}" for s in report.rollback.steps if s.status != "skipped") + ")")
    if extra:
        lines.append(extra)
    return subject, "\n".join(lines)


def _tag(incident: Incident, decision: Decision, repo: str, cfg: RollbackConfig) -> None:
    add_tags("actor-rollback", "triage", f"phase:{incident.phase}", f"incident:{incident.id}",
             f"severity:{decision.severity}", f"source:{incident.source}",
             *([f"target:{target_name(Path(repo), cfg)}"] if repo else []))


def _record(report: TriageReport, cfg: RollbackConfig) -> None:
    i, d = report.incident, report.decision
    lines = [f"# Triage {i.id} — {d.severity.upper()}", "",
             f"- phase {i.phase}, kind {i.kind}, source {i.source}" + (f", started {i.started_at.isoformat()}" if i.started_at else ""),
             f"- decision: **{d.severity}** by {d.rule} ({d.reason}) → {d.action}",
             f"- owner: {d.owner}; deadline {d.deadline.isoformat()}; decided by {d.decided_by}",
             f"- notified: {', '.join(d.notify)}", f"- outcome: **{report.outcome}**{' (dry run)' if report.dry_run else ''}"]
    if i.summary:
        lines.insert(2, f"{i.summary}\n")
    lines += ["", "## Evidence", "", *(f"- {e}" for e in i.evidence or ["(none given)"]), "", "## Actions", ""]
    for s in report.steps:
        lines.append(f"- {s.id} {s.name}: {s.status}")
        lines += [f"  - {e}" for e in s.evidence]
    if report.rollback is not None:
        lines.append(f"- phase {report.rollback.phase} rollback: {report.rollback.outcome} "
                     f"(run {report.rollback.flow_run_id})")
    lines += ["", "## Links", "", *(f"- {k}: {v}" for k, v in cfg.dashboards.model_dump().items() if v)]
    create_markdown_artifact(markdown="\n".join(lines), key=artifact_key("triage", i.id),
                             description=f"Triage of {i.id}: {d.severity}, {d.action}")
    create_table_artifact(table=[{  # machine-readable, for the postmortem and the audit
        "incident": i.id, "phase": i.phase, "kind": i.kind, "source": i.source,
        "started_at": i.started_at.isoformat() if i.started_at else "", "severity": d.severity, "rule": d.rule,
        "reason": d.reason, "action": d.action, "owner": d.owner, "deadline": d.deadline.isoformat(),
        "decided_by": d.decided_by, "decided_at": d.decided_at.isoformat() if d.decided_at else "",
        "outcome": report.outcome}], key=artifact_key("triage", i.id, "decision"),
        description=f"Triage decision for {i.id}")
