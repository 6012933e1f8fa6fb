"""The rollback commands: `init` (a starter config), `plan` (read-only) and `run` (a phase's flow, here)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from actor_rollback.deployments.cli.common import (ConfigOpt, JsonOpt, app, config_for, config_path, err, out, print_report,
                                    progress_shown, quiet_prefect, refusing_bad_input, split)
from actor_rollback.runbook.config import RollbackConfig, config_parameter, load_config
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import RollbackReport
from actor_rollback.runbook.request import check_request


@app.command()
@refusing_bad_input()
def plan(
    phase: Annotated[str, typer.Argument(help="0, 1, 2A, 2B, 3 or 4")],
    repo: Annotated[Optional[Path], typer.Option("--repo", help="Resolve the plan against this clone (read-only)")] = None,
    config: ConfigOpt = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Step IDs or names")] = None,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Step IDs or names")] = None,
    merge: Annotated[str, typer.Option("--merge", help="The phase's merge commit")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Show the phase's steps in order with their exact commands; changes nothing."""
    from actor_rollback.flows.plan import plan_phase

    cfg = config_for(config, repo)
    report = plan_phase(cfg, phase, repo, split(only), split(skip), merge)
    configured = {"source": cfg.source, "non_defaults": [
        {"key": key, "value": value, "default": default} for key, value, default in cfg.non_defaults]}
    if as_json:
        print(json.dumps({**report.public(), "incident": None, "config": configured}))
    else:
        out.print(f"config: {escape(cfg.source)}" + (" (over the shipped defaults)" if cfg.non_defaults else ""))
        for key, value, default in cfg.non_defaults:
            out.print(escape(f"  {key} = {value}   (default {default}; from {cfg.source})"))
        print_report(report, f"Plan: phase {report.phase} rollback ({cfg.phase(report.phase).title})")
    raise typer.Exit(report.exit_code)


def run_phase_flow(phase: str, repo: Path, reason: str, incident: str, dry_run: bool, only: list[str],
                   skip: list[str], merge: str, config: Path | None, triggered_by: str,
                   terminal_approval: dict | None = None) -> RollbackReport:
    """Run a phase's flow in this process (on PREFECT_API_URL, or Prefect's ephemeral server)."""
    from prefect import tags

    from actor_rollback.flows.outcome import run_flow
    from actor_rollback.flows.phases import PHASE_FLOWS

    extra = {"terminal_approval": terminal_approval} if phase == "4" else {}
    with tags(f"phase:{phase}", f"incident:{incident}", "actor-rollback"):
        data = run_flow(
            PHASE_FLOWS[phase], reason=reason, repo=str(repo), incident_id=incident, dry_run=dry_run, only=only,
            skip=skip, merge=merge, config=config_parameter(config), triggered_by=triggered_by, **extra,
        )
    return RollbackReport.model_validate(data)


def ask_last_resort_at_terminal(cfg: RollbackConfig) -> dict | None:
    """On the embedded server nobody else can answer the run's pause: ask here, before the run."""
    if os.environ.get("PREFECT_API_URL") or not sys.stdin.isatty():
        return None
    err.print(f"[bold red]LAST RESORT[/bold red]: {cfg.main_branch} will be reset to the Phase 0 baseline and "
              "force-pushed with a lease (a backup ref is pushed first). Every contact is notified.")
    approver = typer.prompt("Your name (approver)")
    typed = typer.prompt(f"Type the branch name ({cfg.main_branch}) to confirm")
    comment = typer.prompt("Comment", default="")
    return {"approver": approver, "typed_branch": typed, "comment": comment}


@app.command()
@refusing_bad_input(OSError)
def init(
    repo: Annotated[Path, typer.Option("--repo", help="The workspace's git clone to read")],
    output: Annotated[Optional[Path], typer.Option("--output", help="Where to write (default: <repo>/rollback.toml)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file")] = False,
    flag: Annotated[str, typer.Option("--flag", help="The Cargo feature that gates the new code")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Write a starter rollback.toml for this workspace: what was found, and what a person must fill in."""
    from actor_rollback.tasks.init_config import check_starter_config, scan_workspace

    target = output or repo / "rollback.toml"
    if target.exists() and not force:
        raise BadInputError(f"{target} exists; nothing was written (--force overwrites it, --output FILE writes "
                            "elsewhere)")
    scan = scan_workspace(repo, load_config(None), flag)
    text = scan.render()
    check_starter_config(text, str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    if as_json:
        print(json.dumps({"written": str(target), "found": scan.summary, "to_fill": scan.to_fill}))
        return
    out.print(f"wrote {escape(str(target))}")
    for line in scan.summary:
        out.print(escape(f"  found: {line}"))
    if scan.to_fill:
        out.print("a person must still fill in:")
        for line in scan.to_fill:
            out.print(escape(f"  - {line}"))
    out.print(escape(f"next: review it, then `actor-rollback plan 1 --repo {repo}`"))


@app.command()
@refusing_bad_input()
def run(
    phase: Annotated[str, typer.Argument(help="0, 1, 2A, 2B, 3 or 4")],
    repo: Annotated[Path, typer.Option("--repo", help="The workspace's git clone")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in commits and the audit trail)")],
    incident: Annotated[str, typer.Option("--incident", help="Incident id; reruns with the same id converge")] = "",
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be done; change nothing")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Step IDs or names")] = None,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Step IDs or names")] = None,
    merge: Annotated[str, typer.Option("--merge", help="The phase's merge commit, when ambiguous")] = "",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a phase's rollback flow against the workspace."""
    from actor_rollback.runbook.ids import new_incident_id
    from actor_rollback.tasks.git_repo import open_workspace

    request = check_request(phase, repo, reason, incident, split(only), split(skip), config)
    key, cfg = request.phase, request.cfg
    open_workspace(repo)
    incident = incident or new_incident_id()
    if not (yes or dry_run or as_json) and sys.stdin.isatty():
        typer.confirm(f"Roll back phase {key} ({cfg.phase(key).title}) in {repo} for {incident}?", abort=True)
    quiet_prefect(as_json)
    cfg_file = config_path(config, repo)
    asks_reset = key == "4" and any(x in ("reset", "P4.3") for x in split(only)) and not dry_run
    terminal_approval = ask_last_resort_at_terminal(cfg) if asks_reset else None
    triggered_by = f"cli:{os.environ.get('USER', 'unknown')}"
    if dry_run:  # the plan's checks here, recorded as the phase's flow run without the engine (flows/dry_record.py)
        from actor_rollback.flows.dry_record import recorded_dry_run

        report = recorded_dry_run(cfg, key, repo.resolve(), reason, incident, split(only), split(skip), merge, {
            "reason": reason, "repo": str(repo.resolve()), "incident_id": incident, "dry_run": True,
            "only": split(only), "skip": split(skip), "merge": merge, "config": config_parameter(cfg_file),
            "triggered_by": triggered_by})
    else:
        with progress_shown(f"phase {key} rollback {incident} running…", as_json):
            report = run_phase_flow(key, repo.resolve(), reason, incident, dry_run, split(only), split(skip), merge,
                                    cfg_file, triggered_by=triggered_by, terminal_approval=terminal_approval)
    if as_json:
        print(json.dumps(report.public()))
    else:
        print_report(report, f"Phase {key} rollback {incident}{' (dry run)' if dry_run else ''}")
    raise typer.Exit(report.exit_code)
