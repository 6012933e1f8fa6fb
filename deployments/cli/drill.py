"""`drill`: rehearse a phase's rollback on a sandbox copy of the repository and its remote (flows/drill.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from actor_rollback.deployments.cli.common import ConfigOpt, JsonOpt, app, config_for, config_path, out, progress_shown, quiet_prefect, refusing_bad_input, split
from actor_rollback.runbook.config import config_parameter, normalize_phase
from actor_rollback.runbook.ids import check_incident_id
from actor_rollback.runbook.phases import select_steps


@app.command()
@refusing_bad_input()
def drill(
    phase: Annotated[str, typer.Argument(help="0, 1, 2A, 2B, 3 or 4")],
    repo: Annotated[Path, typer.Option("--repo", help="The workspace's git clone (read, never changed)")],
    incident: Annotated[str, typer.Option("--incident", help="The drill's id (default drill-<phase>-<UTC time>)")] = "",
    config: ConfigOpt = None,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Steps not to rehearse (names or IDs)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rehearse a phase's rollback on a sandbox copy: the same flow, timed against the runbook's budgets; the real
    remote and clone are never changed. Exit 0 passed, 1 failed (what would stop a real rollback is named)."""
    from actor_rollback.flows.drill import drill as drill_flow
    from actor_rollback.flows.outcome import run_flow
    from actor_rollback.tasks.git_repo import open_workspace

    key = normalize_phase(phase)
    config_for(config, repo)  # a broken config is refused here, before any sandbox
    open_workspace(repo)
    select_steps(key, None, split(skip))
    if incident:
        check_incident_id(incident)
    quiet_prefect(as_json)
    with progress_shown(f"phase {key} drill running on a sandbox…", as_json):
        result = run_flow(drill_flow, phase=key, repo=str(repo.resolve()),
                          config=config_parameter(config_path(config, repo)), incident_id=incident,
                          skip=split(skip), triggered_by=f"cli:{os.environ.get('USER', 'unknown')}")
    if as_json:
        print(json.dumps(result))
    else:
        _print(result)
    raise typer.Exit(result["exit_code"])


def _print(result: dict) -> None:
    verdict = "[green]PASSED[/green]" if result["passed"] else "[red]FAILED[/red]"
    out.print(f"Phase {result['phase']} drill {escape(result['incident'])}: {verdict}")
    for row in result["steps"]:
        at = "" if row["at_seconds"] is None else f" at {row['at_seconds']:.1f} s"
        budget = "" if row["budget_seconds"] is None else f" (budget {row['budget_seconds']:.0f} s)"
        out.print(escape(f"  {row['id']:6} {row['step']:12} {row['status']:12} {row['seconds']:7.1f} s{at}{budget} "
                         f"{row['verdict']}" + (f" — {row['note']}" if row["verdict"] in ("skipped", "not rehearsed")
                                                else "")))
    for problem in result["problems"]:
        out.print(escape(f"  would stop a real rollback: {problem}"))
    same = result["untouched"]["same"]
    out.print(escape("real clone and remote: " + ("the same before and after" if same else "CHANGED — " +
                                                 "; ".join(result["untouched"]["changed"]))))
    out.print(escape(f"sandbox {result['sandbox']['path']}: {'removed' if result['sandbox']['removed'] else 'LEFT'}"))
    for line in result.get("notified", []):
        out.print(escape(f"  told: {line}"))
    if result.get("flow_run_id"):
        out.print(escape(f"record: flow run {result['flow_run_id']}"))
