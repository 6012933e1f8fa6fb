"""After a rollback (section 3 of the runbook): `postmortem` (A.1/A.2), `reintroduce` (A.6), `audit`, and the
one-week retry lock (`lock status|check|lift`, A.4)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from actor_rollback.deployments.cli.common import (ConfigOpt, JsonOpt, NowOpt, PhasesOpt, RepoOpt, app, config_for, config_path, err,
                                    out, print_report, quiet_prefect, refusing_bad_input, show, split, table_for)
from actor_rollback.runbook.config import config_parameter, normalize_phase
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.ids import check_incident_id
from actor_rollback.runbook.model import EXIT_CODES, RollbackReport


@app.command("postmortem")
@refusing_bad_input()
def postmortem_cmd(
    ref: Annotated[str, typer.Argument(help="The rollback's flow run id or name, or the incident id")],
    repo: RepoOpt,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A.1/A.2: draft docs/postmortem/YYYY-MM-DD-phase-X-rollback.md and the ADR stub from Prefect's record."""
    from actor_rollback.flows.outcome import run_flow
    from actor_rollback.flows.postmortem import postmortem
    from actor_rollback.tasks.git_repo import open_workspace

    quiet_prefect(as_json)
    cfg_path = config_path(config, repo)
    config_for(cfg_path, repo)
    open_workspace(repo)
    result = run_flow(postmortem, ref=ref, repo=str(repo), config=config_parameter(cfg_path))
    if as_json:
        print(json.dumps(result))
    else:
        out.print(f"postmortem draft: {result['postmortem']}\nADR stub: {result['adr']}\n"
                  + escape("\n".join(result["evidence"])))
    raise typer.Exit(EXIT_CODES[result["outcome"]])


@app.command()
@refusing_bad_input()
def reintroduce(
    phase: Annotated[str, typer.Argument(help="0, 1, 2A, 2B, 3 or 4")],
    repo: RepoOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why now: the ADR's plan (recorded in every commit)")],
    incident: Annotated[str, typer.Option("--incident", help="An id for this reintroduction")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A.6: after the retry lock and with the ADR written, re-apply the phase behind its flag via a canary."""
    from actor_rollback.flows.outcome import run_flow
    from actor_rollback.flows.reintroduce import reintroduce as reintroduce_flow
    from actor_rollback.tasks.git_repo import open_workspace

    key = normalize_phase(phase)
    cfg_path = config_path(config, repo)
    config_for(cfg_path, repo)
    open_workspace(repo)
    check_incident_id(incident)
    if not reason.strip():
        raise BadInputError("--reason is empty; say why the phase comes back (it goes into every commit)")
    quiet_prefect(as_json)
    result = run_flow(reintroduce_flow, phase=key, repo=str(repo.resolve()), reason=reason, incident_id=incident,
                      config=config_parameter(cfg_path))
    if as_json:
        print(json.dumps(result))
    else:
        print_report(RollbackReport.model_validate({k: v for k, v in result.items()
                                                     if k in ("phase", "incident", "dry_run", "steps")}),
                      f"Reintroduction of phase {key} ({incident})")
    raise typer.Exit(result["exit_code"])


@app.command()
@refusing_bad_input()
def audit(
    since: Annotated[Optional[datetime], typer.Option("--since", help="Only runs started after this date")] = None,
    phase: Annotated[Optional[str], typer.Option("--phase", help="Only this phase")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every triage and rollback on the Prefect server: trigger, decision, approvals, outcome, duration."""
    from actor_rollback.flows.history import list_runs, triage_decisions

    quiet_prefect(as_json)
    key = normalize_phase(phase) if phase else None

    rows = []
    runs = list_runs(since, key)
    decisions = triage_decisions(runs)
    for run in runs:
        tags = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in run.tags if ":" in t}
        triage_run = run.name.startswith("triage-")
        decision = decisions.get(str(run.id), {})
        rows.append({"run": run.name, "id": str(run.id), "kind": "triage" if triage_run else "rollback",
                     "incident": tags.get("incident", ""), "phase": tags.get("phase", ""),
                     "severity": tags.get("severity", ""), "rule": decision.get("rule", ""),
                     "decided_by": decision.get("decided_by", ""),
                     "trigger": str(run.parameters.get("triggered_by") or tags.get("source") or "manual"),
                     "started": run.start_time.isoformat() if run.start_time else "",
                     "seconds": round(run.total_run_time.total_seconds(), 2),
                     "outcome": tags.get("outcome") or run.state_name or "", "state": run.state_name or ""})
    if as_json:
        print(json.dumps({"runs": rows}))
        return
    table = table_for("actor-rollback audit")
    for column in ("started", "run", "incident", "phase", "severity", "decided by", "trigger", "seconds", "outcome"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["started"][:19], r["run"], r["incident"], r["phase"], r["severity"], r["decided_by"],
                      r["trigger"], f"{r['seconds']:.1f}", r["outcome"])
    show(table)


lock_app = typer.Typer(no_args_is_help=True, help="A.4: the one-week lock on reintroducing a rolled-back phase.")
app.add_typer(lock_app, name="lock")


def _locks(repo: Path, config: Path | None, phases: list[str] | None, as_json: bool):
    from actor_rollback.flows.retry_lock import read_retry_lock
    from actor_rollback.runbook.config import PHASES

    quiet_prefect(as_json)
    cfg = config_for(config, repo)
    keys = [normalize_phase(p) for p in split(phases)] or list(PHASES)
    return cfg, [(key, read_retry_lock(repo, cfg, key)) for key in keys]


def _when(now: datetime | None) -> datetime:
    from datetime import timezone

    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


@lock_app.command("status")
@refusing_bad_input()
def lock_status(repo: RepoOpt, phase: PhasesOpt = None, config: ConfigOpt = None, now: NowOpt = None,
                as_json: JsonOpt = False) -> None:
    """Show each phase's retry lock."""
    _, locks = _locks(repo, config, phase, as_json)
    at = _when(now)
    if as_json:
        print(json.dumps({"locks": [{"phase": key, "holds": bool(lock and lock.holds(at)),
                                     **(lock.model_dump(mode="json") if lock else {})} for key, lock in locks]}))
        return
    for key, lock in locks:
        out.print(lock.describe(at) if lock else f"phase {key}: never rolled back, no lock")


@lock_app.command("check")
@refusing_bad_input()
def lock_check(repo: RepoOpt, phase: PhasesOpt = None, config: ConfigOpt = None, now: NowOpt = None,
               as_json: JsonOpt = False) -> None:
    """Exit 1 while a phase's reintroduction is locked (a CI gate against re-enabling the flag), else 0."""
    _, locks = _locks(repo, config, phase, as_json)
    at = _when(now)
    held = [(key, lock) for key, lock in locks if lock and lock.holds(at)]
    if as_json:
        print(json.dumps({"locked": [key for key, _ in held], "exit_code": 1 if held else 0}))
    else:
        for _, lock in held:
            err.print(f"[red]{escape(lock.describe(at))}[/red]")
        if not held:
            out.print("no retry lock holds: the phases may be reintroduced (A.6: behind the flag, with a canary)")
    raise typer.Exit(1 if held else 0)


@lock_app.command("lift")
@refusing_bad_input(LookupError, ValueError)
def lock_lift(repo: RepoOpt, phase: Annotated[str, typer.Option("--phase", help="The phase to unlock")],
              approver: Annotated[str, typer.Option("--approver", help="Who decides (recorded)")],
              reason: Annotated[str, typer.Option("--reason", help="Why the week of analysis is cut short (recorded)")],
              config: ConfigOpt = None) -> None:
    """Lift a retry lock early: a named person's decision, with the reason, kept in the record."""
    from actor_rollback.flows.retry_lock import lift_retry_lock

    quiet_prefect(False)
    lifted = lift_retry_lock(repo, config_for(config, repo), phase, approver, reason)
    out.print(escape(lifted.describe()))
