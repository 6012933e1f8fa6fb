"""What every command group shares: the console, the options, the one mapping of errors to exit codes,
the config lookup, the report tables and the progress shown while a flow runs here."""

from __future__ import annotations

import functools
import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from actor_rollback.runbook.config import RollbackConfig, config_file, effective_config
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import RollbackReport

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


def split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def bad_input(message: str, as_json: bool = False) -> typer.Exit:
    """Exit 2 naming the problem (and, with --json, one object saying so on stdout)."""
    if as_json:
        print(json.dumps({"error": message, "exit_code": EXIT_BAD_INPUT}))
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(EXIT_BAD_INPUT)


# What a command refuses as bad input — exit 2, nothing changed — wherever it is raised: the one mapping of
# errors to exit codes (a failed step is not an error here: it is a report with its own exit code).
BAD_INPUT = (BadInputError,)  # its family: ConfigError, StepSelectionError, IncidentIdError, AlertError, …


def _said(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # a command that builds a model from its options (triage's --incident ../x)
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return str(exc)


def refusing_bad_input(*also: type[Exception]):
    """A command whose bad input (BAD_INPUT, and `also`) ends in `bad_input`: exit 2 with the message."""
    def decorate(command):
        @functools.wraps(command)  # typer reads the signature through the wrapper
        def guarded(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except (*BAD_INPUT, *also) as exc:
                raise bad_input(_said(exc), bool(kwargs.get("as_json"))) from None

        return guarded

    return decorate


def config_path(path: Path | None, repo: Path | None) -> Path | None:
    """--config, else the workspace's own rollback.toml, else None (the shipped one): the flows' own rule."""
    return config_file(path, repo)


def config_for(path: Path | None, repo: Path | None) -> RollbackConfig:
    return effective_config(path, repo)


def brief(lines: list[str], keep: int = 4) -> str:
    shown = lines[:keep] + ([f"… {len(lines) - keep} more (--json shows all)"] if len(lines) > keep else [])
    return escape((" / " if PIPED else "\n").join(shown))


def table_for(title: str) -> Table:
    """A table for the terminal, or a markdown table (one line per row) when the output is piped."""
    return Table(title=title, show_lines=False, expand=False, box=box.MARKDOWN if PIPED else box.HEAVY_HEAD)


def show(renderable) -> None:
    """A table on stdout; piped, without the lines of only spaces that rich pads a markdown table with."""
    if not PIPED:
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines() if line.strip()))
    sys.stdout.flush()


def print_report(report: RollbackReport, title: str) -> None:
    table = table_for(title)
    for column in ("step", "name", "status", "seconds", "evidence"):
        table.add_column(column, overflow="fold")
    for step in report.steps:
        style = STATUS_STYLE.get(step.status, "")
        table.add_row(step.id, step.name, f"[{style}]{step.status}[/{style}]", f"{step.seconds:.1f}",
                      brief(step.evidence))
    show(table)
    if report.checklist:
        checks = table_for("Checklist")
        for column in ("item", "status", "evidence"):
            checks.add_column(column, overflow="fold")
        for item in report.checklist:
            style = STATUS_STYLE.get(item.status, "")
            checks.add_row(escape(f"{item.id} {item.item}"), f"[{style}]{item.status}[/{style}]", brief(item.evidence, 3))
        show(checks)
    for line in record_lines(report):
        out.print(escape(line), highlight=False)
    out.print(f"outcome: [bold]{report.outcome}[/bold] (exit {report.exit_code})")


def record_lines(report: RollbackReport) -> list[str]:
    """Where the run's record is, on stdout beside its outcome: the flow run, and the page that shows it (or the
    database of the embedded server, which `prefect server start` shows later); the config it read."""
    lines = [f"config: {report.config_source}"] if report.config_source and report.flow_run_id else []
    if not report.flow_run_id:
        return lines
    from prefect.settings import PREFECT_HOME, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    where = (f"{ui.rstrip('/')}/runs/flow-run/{report.flow_run_id}" if ui else
             f"in {PREFECT_HOME.value()}/prefect.db (the embedded server's; `prefect server start` shows it)")
    return [*lines, f"record: flow run {report.flow_run_id} — {where}"]


@contextmanager
def progress_shown(what: str, as_json: bool):
    """The long steps' progress (the metrics watch, the benchmark rounds) while a flow runs here: bars on a
    terminal, a plain line per tenth on stderr when piped, nothing with --json (stdout stays one object)."""
    from actor_rollback.tasks.progress import listening

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


def quiet_prefect(as_json: bool) -> None:
    # Prefect reads its settings when first imported: choose its verbosity before that.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if as_json or not sys.stderr.isatty():
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


RepoOpt = Annotated[Path, typer.Option("--repo", help="The workspace's git clone (its remote names the target)")]
PhasesOpt = Annotated[Optional[list[str]], typer.Option("--phase", help="Phases to look at (default: all)")]
NowOpt = Annotated[Optional[datetime], typer.Option("--now", help="Judge at this time instead of now (what-if, tests)")]
