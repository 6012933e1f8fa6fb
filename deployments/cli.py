"""`actor-rollback`: plan and run the runbook's phase rollbacks, and the demo.

Exit codes: 0 done, 1 a step or a check failed, 2 bad input (usage, config, repository
state), 3 a person is needed (approval pending, a check unverified), 4 busy (another rollback of the
same target holds it; nothing was done). With --json exactly one
JSON object goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional
from uuid import UUID

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pydantic import ValidationError

from deployments.compare_cli import compare_benchmarks
from runbook.config import ConfigError, RollbackConfig, load_config, normalize_phase

from runbook.errors import BadInputError
from runbook.ids import IncidentIdError, check_incident_id
from runbook.model import EXIT_CODES, RollbackReport
from runbook.phases import StepSelectionError, select_steps

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Run the ActorScheduler rollback runbook as Prefect flows.")
PIPED = not sys.stdout.isatty()


def _console(stderr: bool = False) -> Console:
    """A terminal gets rich output; a pipe or a file gets plain text that is never wrapped or coloured."""
    if (sys.stderr if stderr else sys.stdout).isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, soft_wrap=True, width=100_000, no_color=True, highlight=False, emoji=False)


out = _console()
err = _console(stderr=True)

EXIT_BAD_INPUT = 2
STATUS_STYLE = {"done": "green", "already-done": "green", "pass": "green", "planned": "cyan", "skipped": "dim",
                "would-fail": "red", "blocked": "dim",
                "failed": "red", "fail": "red", "needs-human": "yellow", "unverified": "yellow"}

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="rollback.toml (default: <repo>/rollback.toml, then the shipped one)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout, logs on stderr")]


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _bad_input(message: str, as_json: bool) -> typer.Exit:
    if as_json:
        print(json.dumps({"error": message, "exit_code": EXIT_BAD_INPUT}))
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _config_path(path: Path | None, repo: Path | None) -> Path | None:
    """--config, else the workspace's own rollback.toml, else None (the shipped one)."""
    if path is None and repo is not None and (repo / "rollback.toml").exists():
        return repo / "rollback.toml"
    return path


def _config(path: Path | None, repo: Path | None) -> RollbackConfig:
    return load_config(_config_path(path, repo))


def _brief(lines: list[str], keep: int = 4) -> str:
    shown = lines[:keep] + ([f"… {len(lines) - keep} more (--json shows all)"] if len(lines) > keep else [])
    return escape((" / " if PIPED else "\n").join(shown))


def _table(title: str) -> Table:
    """A table for the terminal, or a markdown table (one line per row) when the output is piped."""
    return Table(title=title, show_lines=False, expand=False, box=box.MARKDOWN if PIPED else box.HEAVY_HEAD)


def _print_report(report: RollbackReport, title: str) -> None:
    table = _table(title)
    for column in ("step", "name", "status", "seconds", "evidence"):
        table.add_column(column, overflow="fold")
    for step in report.steps:
        style = STATUS_STYLE.get(step.status, "")
        table.add_row(step.id, step.name, f"[{style}]{step.status}[/{style}]", f"{step.seconds:.1f}",
                      _brief(step.evidence))
    out.print(table)
    if report.checklist:
        checks = _table("Checklist")
        for column in ("item", "status", "evidence"):
            checks.add_column(column, overflow="fold")
        for item in report.checklist:
            style = STATUS_STYLE.get(item.status, "")
            checks.add_row(escape(f"{item.id} {item.item}"), f"[{style}]{item.status}[/{style}]", _brief(item.evidence, 3))
        out.print(checks)
    out.print(f"outcome: [bold]{report.outcome}[/bold] (exit {report.exit_code})")


@app.command()
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
    from flows.plan import plan_phase

    try:
        cfg = _config(config, repo)
        report = plan_phase(cfg, phase, repo, _split(only), _split(skip), merge)
    except (ConfigError, StepSelectionError, BadInputError) as exc:
        raise _bad_input(str(exc), as_json) from None
    configured = {"source": cfg.source, "non_defaults": [
        {"key": key, "value": value, "default": default} for key, value, default in cfg.non_defaults]}
    if as_json:
        print(json.dumps({**report.public(), "incident": None, "config": configured}))
    else:
        out.print(f"config: {escape(cfg.source)}" + (" (over the shipped defaults)" if cfg.non_defaults else ""))
        for key, value, default in cfg.non_defaults:
            out.print(escape(f"  {key} = {value}   (default {default}; from {cfg.source})"))
        _print_report(report, f"Plan: phase {report.phase} rollback ({cfg.phase(report.phase).title})")
    raise typer.Exit(report.exit_code)


def run_phase_flow(phase: str, repo: Path, reason: str, incident: str, dry_run: bool, only: list[str],
                   skip: list[str], merge: str, config: Path | None, triggered_by: str,
                   terminal_approval: dict | None = None) -> RollbackReport:
    """Run a phase's flow in this process (on PREFECT_API_URL, or Prefect's ephemeral server)."""
    from prefect import tags

    from flows.outcome import run_flow
    from flows.phases import PHASE_FLOWS

    extra = {"terminal_approval": terminal_approval} if phase == "4" else {}
    with tags(f"phase:{phase}", f"incident:{incident}", "actor-rollback"):
        data = run_flow(
            PHASE_FLOWS[phase], reason=reason, repo=str(repo), incident_id=incident, dry_run=dry_run, only=only,
            skip=skip, merge=merge, config=str(config) if config else "", triggered_by=triggered_by, **extra,
        )
    return RollbackReport.model_validate(data)


@contextmanager
def _progress_shown(what: str, as_json: bool):
    """The long steps' progress (the metrics watch, the benchmark rounds) while a flow runs here: bars on a
    terminal, a plain line per tenth on stderr when piped, nothing with --json (stdout stays one object)."""
    from tasks.progress import listening

    if as_json:
        yield
        return
    if err.is_terminal:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      console=err, transient=True) as bars:
            bars.add_task(what, total=None)
            shown: dict[str, object] = {}

            def show(update) -> None:
                if update.step not in shown:
                    shown[update.step] = bars.add_task(update.step, total=update.total)
                bars.update(shown[update.step], completed=update.done, description=f"{update.step}: {update.text}")

            with listening(show):
                yield
        return
    said: dict[str, int] = {}

    def line(update) -> None:
        tenth = int(update.percent // 10)
        if update.finished or said.get(update.step, -1) < tenth:
            said[update.step] = 11 if update.finished else tenth
            sys.stderr.write(f"{update.step}: {update.percent:.0f} % — {update.text}\n")  # not print: a task's print
            sys.stderr.flush()  # goes to the run's log (log_prints)

    with listening(line):
        yield


def _ask_last_resort_at_terminal(cfg: RollbackConfig) -> dict | None:
    """On the embedded server nobody else can answer the run's pause: ask here, before the run."""
    if os.environ.get("PREFECT_API_URL") or not sys.stdin.isatty():
        return None
    err.print(f"[bold red]LAST RESORT[/bold red]: {cfg.main_branch} will be reset to the Phase 0 baseline and "
              "force-pushed with a lease (a backup ref is pushed first). Every contact is notified.")
    approver = typer.prompt("Your name (approver)")
    typed = typer.prompt(f"Type the branch name ({cfg.main_branch}) to confirm")
    comment = typer.prompt("Comment", default="")
    return {"approver": approver, "typed_branch": typed, "comment": comment}


def _quiet_prefect(as_json: bool) -> None:
    # Prefect reads its settings when first imported: choose its verbosity before that.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if as_json or not sys.stderr.isatty():
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@app.command()
def init(
    repo: Annotated[Path, typer.Option("--repo", help="The workspace's git clone to read")],
    output: Annotated[Optional[Path], typer.Option("--output", help="Where to write (default: <repo>/rollback.toml)")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file")] = False,
    flag: Annotated[str, typer.Option("--flag", help="The Cargo feature that gates the new code")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Write a starter rollback.toml for this workspace: what was found, and what a person must fill in."""
    from tasks.init_config import check_starter_config, scan_workspace

    target = output or repo / "rollback.toml"
    try:
        if target.exists() and not force:
            raise BadInputError(f"{target} exists; nothing was written (--force overwrites it, --output FILE writes "
                                "elsewhere)")
        scan = scan_workspace(repo, load_config(None), flag)
        text = scan.render()
        check_starter_config(text, str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except (ConfigError, BadInputError, OSError) as exc:
        raise _bad_input(str(exc), as_json) from None
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
    from flows.runner import new_incident_id
    from tasks.git_repo import open_workspace

    try:
        key = normalize_phase(phase)
        cfg = _config(config, repo)
        select_steps(key, _split(only), _split(skip))
        open_workspace(repo)
        if not reason.strip():
            raise BadInputError("--reason is empty; say why the rollback is done (it goes into every commit)")
        if incident:
            check_incident_id(incident)
    except (ConfigError, StepSelectionError, BadInputError, IncidentIdError) as exc:
        raise _bad_input(str(exc), as_json) from None
    incident = incident or new_incident_id()
    if not (yes or dry_run or as_json) and sys.stdin.isatty():
        typer.confirm(f"Roll back phase {key} ({cfg.phase(key).title}) in {repo} for {incident}?", abort=True)
    _quiet_prefect(as_json)
    config_path = _config_path(config, repo)
    asks_reset = key == "4" and any(x in ("reset", "P4.3") for x in _split(only)) and not dry_run
    terminal_approval = _ask_last_resort_at_terminal(cfg) if asks_reset else None
    with _progress_shown(f"phase {key} rollback {incident} running…", as_json):
        report = run_phase_flow(key, repo.resolve(), reason, incident, dry_run, _split(only), _split(skip), merge,
                                config_path, triggered_by=f"cli:{os.environ.get('USER', 'unknown')}",
                                terminal_approval=terminal_approval)
    if as_json:
        print(json.dumps(report.public()))
    else:
        _print_report(report, f"Phase {key} rollback {incident}{' (dry run)' if dry_run else ''}")
    raise typer.Exit(report.exit_code)


@app.command()
def approve(
    run_id: Annotated[str, typer.Argument(help="The paused flow run: its id or its name (rollback-phase-4-INC)")],
    approver: Annotated[str, typer.Option("--approver", help="Your name, recorded in the audit trail")],
    reject: Annotated[bool, typer.Option("--reject", help="Say no: nothing is force-pushed")] = False,
    branch: Annotated[str, typer.Option("--branch", help="The branch name typed back (asked when omitted)")] = "",
    comment: Annotated[str, typer.Option("--comment", help="Why")] = "",
) -> None:
    """Answer a run that waits for a person: the last resort (P4.3) or a Medium incident's owner decision (F.3)."""
    _quiet_prefect(False)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    from flows.outcome import NEEDS_HUMAN_KEY

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(run_id))
        except (ValueError, ObjectNotFound):
            found = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_id])))
            if not found:
                where = os.environ.get("PREFECT_API_URL") or "the embedded server"
                raise _bad_input(f"no flow run with id or name {run_id!r} on {where}", False) from None
            run = found[0]
    if not (run.state and run.state.is_paused()):
        raise _bad_input(f"{run.name} is {run.state.name if run.state else 'unknown'}, not waiting for an approval", False)
    if run.state.state_details.pause_key == NEEDS_HUMAN_KEY:
        raise _bad_input(f"{run.name} is not waiting for an approval: it ended needing a person ({run.state.message}); "
                         "do that, then mark the run Completed in the UI (Change state)", False)
    if run.name.startswith("triage-"):  # F.3: the owner's decision needs no branch typed back
        try:
            resume_flow_run(run.id, run_input={"approved": not reject, "approver": approver, "comment": comment})
        except Exception as exc:
            raise _bad_input(f"the run did not accept the answer ({exc}); it is still waiting", False) from None
        out.print(f"{run.name}: {'next release (rejected)' if reject else 'roll back (approved)'} by {approver}")
        return
    if not reject and not branch:
        if not sys.stdin.isatty():
            raise _bad_input("--branch is required: type the name of the branch that will be reset", False)
        branch = typer.prompt("Type the branch name to confirm")
    try:
        resume_flow_run(run.id, run_input={"approved": not reject, "approver": approver,
                                           "typed_branch": branch, "comment": comment})
    except Exception as exc:
        raise _bad_input(f"the run did not accept the answer ({exc}); it is still waiting", False) from None
    out.print(f"{run.name}: {'rejected' if reject else 'approved'} by {approver}")


KINDS = ("service-down", "data-loss", "perf-regression", "crash", "incompatibility", "docs", "deploy-failure")


def _incidents_from_file(path: Path, cfg: RollbackConfig) -> list:
    """An alert file: an Alertmanager or Grafana webhook body, or one JSON incident."""
    from runbook.alerts import alerts_to_incidents, generic_incident

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
def triage(
    repo: Annotated[Optional[Path], typer.Option("--repo", help="The workspace's git clone (not needed with --dry-run)")] = None,
    alert: Annotated[Optional[Path], typer.Option("--alert", help="An Alertmanager/Grafana webhook body or an incident, as JSON")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help=", ".join(KINDS))] = None,
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
    from datetime import datetime, timezone

    from flows.runner import new_incident_id
    from runbook.alerts import AlertError
    from runbook.model import Incident, TriageReport
    from runbook.severity import decide
    from tasks.git_repo import open_workspace

    try:
        cfg = _config(config, repo)
        if (alert is None) == (kind is None):
            raise BadInputError("give either --alert FILE or --kind KIND (with --regression-pct N for a perf-regression)")
        if kind is not None and kind not in KINDS:
            raise BadInputError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
        incidents = _incidents_from_file(alert, cfg) if alert else [Incident(
            id=incident or new_incident_id(), source="cli", phase=normalize_phase(phase), kind=kind,
            regression_pct=regression_pct, crashes_per_hour=crashes_per_hour, summary=summary,
            started_at=datetime.now(timezone.utc))]
        decisions = [decide(i, cfg.severity) for i in incidents]  # refuse bad input before acting on any
        if not dry_run:
            if repo is None:
                raise BadInputError("--repo is needed to act (or add --dry-run to only decide)")
            open_workspace(repo)
    except (ConfigError, BadInputError, AlertError) as exc:
        raise _bad_input(str(exc), as_json) from None
    except ValidationError as exc:  # e.g. --incident ../x: said, never a traceback
        raise _bad_input("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()), as_json) from None
    if dry_run:
        reports = [TriageReport(incident=i, decision=d, dry_run=True) for i, d in zip(incidents, decisions)]
    else:
        _quiet_prefect(as_json)
        from flows.outcome import run_flow
        from flows.triage import triage as triage_flow

        config_path = _config_path(config, repo)
        reports = [TriageReport.model_validate(run_flow(triage_flow, incident=i, repo=str(repo.resolve()),
                                                        skip=_split(skip) or None,
                                                        config=str(config_path) if config_path else ""))
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
                out.print(f"  {step.id} {step.name}: {step.status} — {_brief(step.evidence, 2)}")
            if r.rollback:
                _print_report(r.rollback, f"Phase {r.rollback.phase} rollback {r.rollback.incident}")
            out.print(f"outcome: [bold]{r.outcome}[/bold]{' (dry run: nothing done)' if r.dry_run else ''}")
    raise typer.Exit(code)


@app.command("postmortem")
def postmortem_cmd(
    ref: Annotated[str, typer.Argument(help="The rollback's flow run id or name, or the incident id")],
    repo: RepoOpt,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A.1/A.2: draft docs/postmortem/YYYY-MM-DD-phase-X-rollback.md and the ADR stub from Prefect's record."""
    from flows.outcome import run_flow
    from flows.postmortem import postmortem
    from tasks.git_repo import open_workspace

    _quiet_prefect(as_json)
    try:
        cfg_path = _config_path(config, repo)
        _config(cfg_path, repo)
        open_workspace(repo)
        result = run_flow(postmortem, ref=ref, repo=str(repo), config=str(cfg_path) if cfg_path else "")
    except (ConfigError, BadInputError) as exc:
        raise _bad_input(str(exc), as_json) from None
    if as_json:
        print(json.dumps(result))
    else:
        out.print(f"postmortem draft: {result['postmortem']}\nADR stub: {result['adr']}\n"
                  + escape("\n".join(result["evidence"])))
    raise typer.Exit(EXIT_CODES[result["outcome"]])


@app.command()
def reintroduce(
    phase: Annotated[str, typer.Argument(help="0, 1, 2A, 2B, 3 or 4")],
    repo: RepoOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why now: the ADR's plan (recorded in every commit)")],
    incident: Annotated[str, typer.Option("--incident", help="An id for this reintroduction")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A.6: after the retry lock and with the ADR written, re-apply the phase behind its flag via a canary."""
    from flows.outcome import run_flow
    from flows.reintroduce import reintroduce as reintroduce_flow
    from tasks.git_repo import open_workspace

    try:
        key = normalize_phase(phase)
        cfg_path = _config_path(config, repo)
        _config(cfg_path, repo)
        open_workspace(repo)
        check_incident_id(incident)
        if not reason.strip():
            raise BadInputError("--reason is empty; say why the phase comes back (it goes into every commit)")
    except (ConfigError, BadInputError, IncidentIdError) as exc:
        raise _bad_input(str(exc), as_json) from None
    _quiet_prefect(as_json)
    try:
        result = run_flow(reintroduce_flow, phase=key, repo=str(repo.resolve()), reason=reason, incident_id=incident,
                          config=str(cfg_path) if cfg_path else "")
    except BadInputError as exc:
        raise _bad_input(str(exc), as_json) from None
    if as_json:
        print(json.dumps(result))
    else:
        _print_report(RollbackReport.model_validate({k: v for k, v in result.items()
                                                     if k in ("phase", "incident", "dry_run", "steps")}),
                      f"Reintroduction of phase {key} ({incident})")
    raise typer.Exit(result["exit_code"])


@app.command()
def audit(
    since: Annotated[Optional[datetime], typer.Option("--since", help="Only runs started after this date")] = None,
    phase: Annotated[Optional[str], typer.Option("--phase", help="Only this phase")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every triage and rollback on the Prefect server: trigger, decision, approvals, outcome, duration."""
    from flows.history import list_runs, triage_decisions

    _quiet_prefect(as_json)
    try:
        key = normalize_phase(phase) if phase else None
    except ConfigError as exc:
        raise _bad_input(str(exc), as_json) from None

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
    table = _table("actor-rollback audit")
    for column in ("started", "run", "incident", "phase", "severity", "decided by", "trigger", "seconds", "outcome"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["started"][:19], r["run"], r["incident"], r["phase"], r["severity"], r["decided_by"],
                      r["trigger"], f"{r['seconds']:.1f}", r["outcome"])
    out.print(table)


lock_app = typer.Typer(no_args_is_help=True, help="A.4: the one-week lock on reintroducing a rolled-back phase.")
app.add_typer(lock_app, name="lock")
RepoOpt = Annotated[Path, typer.Option("--repo", help="The workspace's git clone (its remote names the target)")]
PhasesOpt = Annotated[Optional[list[str]], typer.Option("--phase", help="Phases to look at (default: all)")]
NowOpt = Annotated[Optional[datetime], typer.Option("--now", help="Judge at this time instead of now (what-if, tests)")]


def _locks(repo: Path, config: Path | None, phases: list[str] | None, as_json: bool):
    from flows.retry_lock import read_retry_lock
    from runbook.config import PHASES

    _quiet_prefect(as_json)
    try:
        cfg = _config(config, repo)
        keys = [normalize_phase(p) for p in _split(phases)] or list(PHASES)
    except (ConfigError, BadInputError) as exc:
        raise _bad_input(str(exc), as_json) from None
    return cfg, [(key, read_retry_lock(repo, cfg, key)) for key in keys]


def _when(now: datetime | None) -> datetime:
    from datetime import timezone

    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


@lock_app.command("status")
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
def lock_lift(repo: RepoOpt, phase: Annotated[str, typer.Option("--phase", help="The phase to unlock")],
              approver: Annotated[str, typer.Option("--approver", help="Who decides (recorded)")],
              reason: Annotated[str, typer.Option("--reason", help="Why the week of analysis is cut short (recorded)")],
              config: ConfigOpt = None) -> None:
    """Lift a retry lock early: a named person's decision, with the reason, kept in the record."""
    from flows.retry_lock import lift_retry_lock

    _quiet_prefect(False)
    try:
        lifted = lift_retry_lock(repo, _config(config, repo), phase, approver, reason)
    except (ConfigError, BadInputError, LookupError, ValueError) as exc:
        raise _bad_input(str(exc), False) from None
    out.print(escape(lifted.describe()))


app.command("compare-benchmarks")(compare_benchmarks)  # deployments/compare_cli.py: light enough to start fast


@app.command()
def serve(
    repo: Annotated[Path, typer.Option("--repo", help="The workspace clone the deployments roll back")],
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Runs at once (each target still takes one at a time)")] = 4,
    receiver: Annotated[bool, typer.Option("--receiver/--no-receiver", help="Run the alert receiver beside the deployments")] = True,
    receiver_port: Annotated[Optional[int], typer.Option("--receiver-port", help="Override receiver.port")] = None,
    receiver_host: Annotated[Optional[str], typer.Option("--receiver-host", help="Override receiver.host (0.0.0.0 in a container)")] = None,
) -> None:
    """Serve the deployments (rollback-phase-<P>/manual, triage/alert, verify/scheduled) and the alert receiver."""
    from deployments.serve import prepare_runner_environment
    from tasks.git_repo import open_workspace

    try:
        cfg = _config(config, repo)
        open_workspace(repo)
    except (ConfigError, BadInputError) as exc:
        raise _bad_input(str(exc), False) from None
    if receiver and not os.environ.get(cfg.receiver.token_env):
        raise _bad_input(f"the alert receiver needs its bearer token: export {cfg.receiver.token_env}=<a long random "
                         "string> (the same goes into Alertmanager's http_config), or serve with --no-receiver", False)
    if not os.environ.get("PREFECT_API_URL"):
        raise _bad_input("serve needs a Prefect server that people can reach: set PREFECT_API_URL "
                         "(e.g. `prefect server start`, or `make serve` which starts one)", False)
    prepare_runner_environment(cfg.runner.heartbeat_seconds)
    from deployments.serve import serve_rollbacks

    config = _config_path(config, repo)
    serve_rollbacks(repo, config, limit, receiver_port, receiver, receiver_host)


@app.command()
def automations(
    repo: Annotated[Optional[Path], typer.Option("--repo", help="The workspace (its rollback.toml, when present)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create or update the shipped automations on PREFECT_API_URL (serve does it too): failed and needs-human
    rollbacks notify runner.outcome_notify; runs whose heartbeats stopped end Crashed."""
    from deployments.automations import ensure_outcome_automation, ensure_zombie_automation

    try:
        cfg = _config(config, repo)
    except ConfigError as exc:
        raise _bad_input(str(exc), False) from None
    if not os.environ.get("PREFECT_API_URL"):
        raise _bad_input("automations live on a Prefect server: set PREFECT_API_URL", False)
    lines = ensure_outcome_automation(cfg)
    out.print(f"zombie automation {ensure_zombie_automation(cfg)}: runs whose heartbeats stop end Crashed")
    for line in lines:
        out.print(escape(line))
    raise typer.Exit(0 if not lines[0].startswith("outcome automation NOT") else EXIT_CODES["needs-human"])


@app.command()
def demo(
    dir: Annotated[Optional[Path], typer.Option("--dir", help="Where to create the sample workspace")] = None,
) -> None:
    """Create the sample workspace, deploy its regressed head, roll back Phase 1 end to end, show the recovery."""
    import tempfile

    from deployments.demo import deploy_regressed, prepare, stop_service, watch
    from flows.runner import new_incident_id
    from tasks.git_repo import open_workspace, run_git

    root = dir or Path(tempfile.mkdtemp(prefix="actor-rollback-demo-"))
    try:
        demo_env = prepare(root)
    except FileExistsError as exc:
        raise _bad_input(str(exc), False) from None
    sample = demo_env.sample
    out.print(f"sample workspace: {sample.repo}\nits remote:       {sample.origin}\nconfig:           {demo_env.config}")
    _quiet_prefect(False)
    incident = "demo-" + new_incident_id().removeprefix("inc-")
    try:
        out.print(f"\n[bold]1. Production runs the regressed head[/bold]: {escape(deploy_regressed(demo_env))}")
        before = watch(demo_env)
        out.print(escape("\n".join(line for line in before.evidence if line.startswith(("PASS", "FAIL", "UNVERIFIED")))))
        out.print(f"\n[bold]2. Phase 1 rollback {incident}[/bold] (flag off, revert, push, CI ∥ deploy, monitor ∥ logs)")
        with _progress_shown("rolling back…", False):
            report = run_phase_flow("1", sample.repo, "demo: ReadyQueueCoordinator throughput regression", incident,
                                    False, [], [], "", demo_env.config, triggered_by="demo")
        _print_report(report, f"Phase 1 rollback {incident}")
        monitor = next((s for s in report.steps if s.name == "monitor"), None)
        if monitor:
            out.print("\n[bold]3. After the rollback[/bold]")
            out.print(escape("\n".join(line for line in monitor.evidence if line.startswith(("PASS", "FAIL", "UNVERIFIED")))))
    finally:
        stop_service(demo_env)
    remote_log = run_git(open_workspace(sample.repo), "log", "--oneline", "-3", "origin/main")
    out.print(f"\nThe remote's main now:\n{escape(remote_log)}")
    where = os.environ.get("PREFECT_API_URL") or "Prefect's ephemeral server (database under PREFECT_HOME, ~/.prefect by default)"
    out.print(f"\nAudit trail: flow run rollback-phase-1-{incident} ({report.flow_run_id}) on {where}; "
              f"artifacts rollback-phase-1-{incident}-checklist, -steps and -ttm (its time to mitigation).")
    # The demo shows the flow; findings of its checks (a noisy benchmark) are reported, not fatal.
    broken = [s for s in report.steps if s.status == "failed" and s.name not in ("monitor", "logs", "benchmarks")]
    raise typer.Exit(1 if broken else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
