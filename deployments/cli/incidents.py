"""The incident commands: `triage` (the severity matrix and its action) and `approve` (a person's answer to a run
that waits: the last resort, or a Medium incident's owner decision)."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional
from uuid import UUID

import typer
from pydantic import ValidationError
from rich.markup import escape

from actor_rollback.deployments.cli.common import (ConfigOpt, JsonOpt, app, bad_input, brief, config_for, config_path, out,
                                    print_report, quiet_prefect, refusing_bad_input, split)
from actor_rollback.runbook.config import RollbackConfig, config_parameter, normalize_phase
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import INCIDENT_KINDS


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The paused flow run: its id or its name (rollback-phase-4-INC)")],
    approver: Annotated[str, typer.Option("--approver", help="Your name, recorded in the audit trail")],
    reject: Annotated[bool, typer.Option("--reject", help="Say no: nothing is force-pushed")] = False,
    branch: Annotated[str, typer.Option("--branch", help="The branch name typed back (asked when omitted)")] = "",
    comment: Annotated[str, typer.Option("--comment", help="Why")] = "",
) -> None:
    """Answer a run that waits for a person: the last resort (P4.3) or a Medium incident's owner decision (F.3)."""
    quiet_prefect(False)
    from prefect.flow_runs import resume_flow_run

    from actor_rollback.flows.outcome import NEEDS_HUMAN_KEY

    run = _waiting_run(run_id)
    if not (run.state and run.state.is_paused()):
        raise bad_input(f"{run.name} is {run.state.name if run.state else 'unknown'}, not waiting for an approval", False)
    if run.state.state_details.pause_key == NEEDS_HUMAN_KEY:
        raise bad_input(f"{run.name} is not waiting for an approval: it ended needing a person ({run.state.message}); "
                         f"do that, then close it: actor-rollback ack {run.name} --person NAME --did WHAT "
                         "--result resolved|failed (or its Resume form in the UI)", False)
    if run.name.startswith("triage-"):  # F.3: the owner's decision needs no branch typed back
        try:
            resume_flow_run(run.id, run_input={"approved": not reject, "approver": approver, "comment": comment})
        except Exception as exc:
            raise bad_input(f"the run did not accept the answer ({exc}); it is still waiting", False) from None
        out.print(f"{run.name}: {'next release (rejected)' if reject else 'roll back (approved)'} by {approver}")
        return
    if not reject and not branch:
        if not sys.stdin.isatty():
            raise bad_input("--branch is required: type the name of the branch that will be reset", False)
        branch = typer.prompt("Type the branch name to confirm")
    try:
        resume_flow_run(run.id, run_input={"approved": not reject, "approver": approver,
                                           "typed_branch": branch, "comment": comment})
    except Exception as exc:
        raise bad_input(f"the run did not accept the answer ({exc}); it is still waiting", False) from None
    out.print(f"{run.name}: {'rejected' if reject else 'approved'} by {approver}")


def _waiting_run(run_id: str):
    """The flow run by id or name, on PREFECT_API_URL or the embedded server; bad input when there is none."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(UUID(run_id))
        except (ValueError, ObjectNotFound):
            found = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_id])))
    if not found:
        where = os.environ.get("PREFECT_API_URL") or "the embedded server"
        raise bad_input(f"no flow run with id or name {run_id!r} on {where}", False)
    return found[0]


@app.command()
def ack(
    run_id: Annotated[str, typer.Argument(help="The run that ended needing a person: its id or its name")],
    person: Annotated[str, typer.Option("--person", help="Your name, recorded in the audit trail")],
    did: Annotated[str, typer.Option("--did", help="What you did about each item of the run's message")],
    result: Annotated[str, typer.Option("--result", help="resolved (the run ends Completed) or failed (Failed)")],
) -> None:
    """Close a run that ended needing a person (exit 3, Paused): what you did, and whether it is resolved."""
    quiet_prefect(False)
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    from actor_rollback.flows.outcome import NEEDS_HUMAN_KEY, Acknowledgement, close_acknowledged

    try:
        answer = Acknowledgement(person=person, did=did, result=result).model_dump(include={"person", "did", "result"})
    except ValidationError as exc:
        wrong = "; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise bad_input(f"{wrong} (--person NAME --did WHAT --result resolved|failed)", False) from None
    run = _waiting_run(run_id)
    if not (run.state and run.state.is_paused() and run.state.state_details.pause_key == NEEDS_HUMAN_KEY):
        raise bad_input(f"{run.name} is {run.state.name if run.state else 'unknown'}, not waiting for a person's "
                        "acknowledgement (only a run that ended needing a person is closed with ack)", False)
    try:
        resume_flow_run(run.id, run_input=answer)
    except Exception as exc:
        raise bad_input(f"the run did not accept the acknowledgement ({exc}); it is still waiting", False) from None
    with get_client(sync_client=True) as client:
        final = close_acknowledged(client, client.read_flow_run(run.id))
    out.print(f"{run.name}: {final.name if final else 'acknowledged'} — {person}: {did}")


def _incidents_from_file(path: Path, cfg: RollbackConfig) -> list:
    """An alert file: an Alertmanager or Grafana webhook body, or one JSON incident."""
    from actor_rollback.runbook.alerts import alerts_to_incidents, generic_incident

    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"--alert {path}: cannot read it as JSON ({exc})") from None
    if isinstance(payload, dict) and "alerts" in payload:
        source = "grafana" if "orgId" in payload else "alertmanager"
        received = [r for r in alerts_to_incidents(payload, source, cfg.receiver) if r.status == "firing"]
        if not received:
            raise BadInputError(f"--alert {path}: every alert in it is resolved; nothing to triage")
        return [r.incident for r in received]
    return [generic_incident(payload).incident]


@app.command()
@refusing_bad_input(ValidationError)  # the incident model refuses e.g. --incident ../x
def triage(
    repo: Annotated[Optional[Path], typer.Option("--repo", help="The workspace's git clone (not needed with --dry-run)")] = None,
    alert: Annotated[Optional[Path], typer.Option("--alert", help="An Alertmanager/Grafana webhook body or an incident, as JSON")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help=", ".join(INCIDENT_KINDS))] = None,
    regression_pct: Annotated[Optional[float], typer.Option("--regression-pct", help="Size of a perf regression, %")] = None,
    crashes_per_hour: Annotated[Optional[float], typer.Option("--crashes-per-hour", help="How often it crashes")] = None,
    phase: Annotated[str, typer.Option("--phase", help="0, 1, 2A, 2B, 3 or 4")] = "1",
    incident: Annotated[str, typer.Option("--incident", help="Incident id; reruns with the same id converge")] = "",
    summary: Annotated[str, typer.Option("--summary", help="What happened, in a line")] = "",
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Rollback steps to skip, e.g. benchmarks")] = None,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide and show the action; act on nothing")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Decide an incident's severity by the runbook's matrix (S.x) and act on it (F.1–F.4)."""
    from actor_rollback.runbook.ids import new_incident_id
    from actor_rollback.runbook.model import Incident, TriageReport
    from actor_rollback.runbook.severity import decide
    from actor_rollback.tasks.git_repo import open_workspace

    cfg = config_for(config, repo)
    if (alert is None) == (kind is None):
        raise BadInputError("give either --alert FILE or --kind KIND (with --regression-pct N for a perf-regression)")
    if kind is not None and kind not in INCIDENT_KINDS:
        raise BadInputError(f"--kind {kind!r}: expected one of {', '.join(INCIDENT_KINDS)}")
    incidents = _incidents_from_file(alert, cfg) if alert else [Incident(
        id=incident or new_incident_id(), source="cli", phase=normalize_phase(phase), kind=kind,
        regression_pct=regression_pct, crashes_per_hour=crashes_per_hour, summary=summary,
        started_at=datetime.now(timezone.utc))]
    decisions = [decide(i, cfg.severity) for i in incidents]  # refuse bad input before acting on any
    if not dry_run:
        if repo is None:
            raise BadInputError("--repo is needed to act (or add --dry-run to only decide)")
        open_workspace(repo)
    if dry_run:
        reports = [TriageReport(incident=i, decision=d, dry_run=True) for i, d in zip(incidents, decisions)]
    else:
        quiet_prefect(as_json)
        from actor_rollback.flows.outcome import run_flow
        from actor_rollback.flows.triage import triage as triage_flow

        cfg_file = config_path(config, repo)
        reports = [TriageReport.model_validate(run_flow(triage_flow, incident=i, repo=str(repo.resolve()),
                                                        skip=split(skip) or None,
                                                        config=config_parameter(cfg_file)))
                   for i in incidents]
    code = max(r.exit_code for r in reports)
    if as_json:
        print(json.dumps(reports[0].public() if len(reports) == 1 else {"incidents": [r.public() for r in reports],
                                                                        "exit_code": code}))
    else:
        for r in reports:
            d = r.decision
            out.print(f"[bold]{r.incident.id}[/bold]: [bold]{d.severity.upper()}[/bold] ({d.rule}: {escape(d.reason)}) → "
                      f"{d.action}; owner {d.owner}, by {d.deadline.isoformat()}; notify {', '.join(d.notify)}")
            for step in r.steps:
                out.print(f"  {step.id} {step.name}: {step.status} — {brief(step.evidence, 2)}")
            if r.rollback:
                print_report(r.rollback, f"Phase {r.rollback.phase} rollback {r.rollback.incident}")
            out.print(f"outcome: [bold]{r.outcome}[/bold]{' (dry run: nothing done)' if r.dry_run else ''}")
    raise typer.Exit(code)
