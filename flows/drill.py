"""A rollback drill (#28): the phase's own rollback flow, rehearsed on a sandbox copy of the repository and its
remote, each step timed against the runbook's budgets.

    actor-rollback drill 1 --repo PATH          # the CLI, in this process
    drill/weekly-1                               # serve's deployment, on [drill] cron (off until set)

What a drill guarantees: the real remote and the working clone are the same after it as before (their refs, HEAD,
index and status are compared, and said in the report); its sandbox is removed when it ends, and one left by a
drill that was killed is removed by the next. Deploy, monitoring and logs come from `[drill]` (a staging deploy, a
staging Prometheus) or are skipped with the reason — a drill never deploys to production. A person's steps are
not rehearsed (said so). Anything that would stop a real rollback today — a merge that no longer reverts, a red
CI, a step that would need a person, a budget overrun — fails the drill, names the cause, and tells the tech lead
(X.1) days before an incident would have found it. Every run of a drill, its phase run too, is tagged `drill`:
never mixed with real rollbacks, never anybody's to-do, never notified as a rollback, no A.4 lock.
"""

from __future__ import annotations

import json
import os
import statistics
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from prefect import flow, get_run_logger, tags
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from actor_rollback.flows.outcome import DRILL_TAG, add_tags, bad_input_state, outcome_state, run_flow
from actor_rollback.flows.phases import PHASE_FLOWS
from actor_rollback.runbook.config import (RUNBOOK_BUDGETS, RollbackConfig, config_data, effective_config, load_config,
                            normalize_phase, overlay, toml_text)
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.ids import check_incident_id
from actor_rollback.runbook.model import EXIT_CODES, RollbackReport, StepResult
from actor_rollback.runbook.phases import phase_steps
from actor_rollback.tasks.context import artifact_key
from actor_rollback.tasks.host_lock import target_key, target_name
from actor_rollback.tasks.sandbox import Sandbox, drills_dir, fingerprint, make_sandbox, sweep_stale

# A drill never deploys to production nor judges production: these come from [drill] or are skipped, with the fix.
FROM_DRILL_TABLE = {
    "deploy": ("deploy", 'no [drill] deploy: a drill never deploys to production; set [drill] deploy = { command = '
                         '"./scripts/deploy.sh staging --version={version}" } to rehearse it'),
    "monitor": ("monitoring", "no [drill] monitoring: a drill does not judge production's metrics; set [drill] "
                              'monitoring = { metrics_url = "…staging…" } (or prometheus_url) to rehearse it'),
    "logs": ("logs", "no [drill] logs: a drill does not read production's logs; set [drill] logs = { … } to "
                     "rehearse it"),
}
PERSON = "a person's step: not rehearsed by a drill"


def new_drill_id(phase: str) -> str:
    return f"drill-{phase.lower()}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


def _run_name() -> str:
    return f"drill-phase-{str(flow_run.parameters.get('phase', '')).lower()}-{flow_run.parameters.get('incident_id') or ''}".rstrip("-")


@contextmanager
def _cargo_target(cfg: RollbackConfig, repo: Path) -> Iterator[None]:
    """The drill's builds share one target folder per target, kept between drills (only the first builds cold),
    outside the clone; the environment's CARGO_TARGET_DIR wins."""
    if os.environ.get("CARGO_TARGET_DIR"):
        yield
        return
    os.environ["CARGO_TARGET_DIR"] = str(drills_dir(cfg) / f"target-{target_key(repo, cfg)}")
    try:
        yield
    finally:
        os.environ.pop("CARGO_TARGET_DIR", None)


def drill_config(config: str, repo: Path, cfg: RollbackConfig, phase: str, sandbox: Sandbox) -> tuple[Path, dict[str, str]]:
    """The config the rehearsed run reads (the repository's, with [drill]'s tables over it), written into the sandbox,
    and the steps a drill skips, with why."""
    names = {spec.name for spec in phase_steps(phase)}
    over: dict = {}
    skipped: dict[str, str] = {}
    for step, (table, why) in FROM_DRILL_TABLE.items():
        given = getattr(cfg.drill, table)
        if given:
            over[table] = given
        elif step in names:
            skipped[step] = why
    for table in ("ci", "benchmarks"):
        if getattr(cfg.drill, table):
            over[table] = getattr(cfg.drill, table)
    data = overlay(config_data(config, repo), over)
    if data.get("ci", {}).get("check") == "commit-status" and "ci" in names:
        skipped["ci"] = ("CI is read from the forge's commit status, which a sandbox commit never gets: set [drill] "
                         'ci = { check = "command", command = "cargo test --workspace" } to rehearse it')
    path = sandbox.root / "rollback.drill.toml"
    path.write_text(toml_text(data))
    load_config(path)  # a [drill] table that makes the config invalid is refused here, naming the key
    return path, skipped


def budgets(cfg: RollbackConfig) -> dict[str, float]:
    return {**RUNBOOK_BUDGETS, **cfg.drill.budgets}


def judge(report: RollbackReport, phase: str, started: datetime, limits: dict[str, float],
          skipped: dict[str, str]) -> tuple[list[dict], list[str]]:
    """Each step's row (outcome, duration, time since the start against its budget, verdict) and the problems
    that would stop a real rollback today."""
    specs = {spec.name: spec for spec in phase_steps(phase)}
    rows, problems = [], []
    for step in report.steps:
        spec = specs.get(step.name)
        at = (step.finished_at - started).total_seconds() if step.finished_at else None
        limit = limits.get(step.id, limits.get(step.name))
        verdict, note = "ok", step.headline()
        if step.status == "skipped":
            verdict, note = "skipped", skipped.get(step.name, "skipped on request")
        elif step.status == "needs-human" and spec is not None and not spec.automated:
            verdict, note = "not rehearsed", PERSON
        elif step.status not in ("done", "already-done"):
            verdict = "would block"
            problems.append(_why(step, phase))
        if verdict == "ok" and limit is not None and at is not None and at > limit:
            verdict = "over budget"
            problems.append(f"{step.id} {step.name} ended {at:.0f} s after the start, over its budget of {limit:g} s")
        rows.append({"id": step.id, "step": step.name, "status": step.status, "seconds": round(step.seconds, 2),
                     "at_seconds": None if at is None else round(at, 2), "budget_seconds": limit, "verdict": verdict,
                     "note": note[:500]})
    return rows, problems


def _why(step: StepResult, phase: str) -> str:
    said = " ".join(step.evidence[-2:]) if step.evidence else step.status
    if step.name == "revert" and "conflicts in" in said:
        return f"the Phase {phase} merge no longer reverts cleanly: {said}"
    return f"{step.id} {step.name} {step.status}: {said}"


def untouched(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [f"{key} changed during the drill ({before[key]} → {after.get(key)}): by the drill, or by someone at the "
            "same time — look before trusting either" for key in before if before[key] != after.get(key)]


def _trend(key: str, current: dict) -> list[dict]:
    """Past drills of this phase and target (the versions of its keyed artifact), this one last."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        past = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=200)
    rows = []
    for artifact in sorted(past, key=lambda a: a.created):
        data = artifact.data
        if isinstance(data, str):  # a table artifact's rows are stored as JSON text
            try:
                data = json.loads(data)
            except ValueError:
                data = []
        data = data if isinstance(data, list) else []
        total = next((r for r in data if isinstance(r, dict) and r.get("step") == "(total)"), None)
        if total:
            rows.append({"at": artifact.created.isoformat(), "seconds": total.get("seconds"),
                         "verdict": total.get("verdict"), "steps": step_seconds(data)})
    return rows + [current]


def step_seconds(rows: list) -> dict[str, float]:
    """How long each rehearsed step took (the ones that ran), by name."""
    return {r["step"]: r["seconds"] for r in rows if isinstance(r, dict) and r.get("verdict") in ("ok", "over budget")
            and isinstance(r.get("seconds"), (int, float))}


def _weekly_chart(trend: list[dict]) -> str:
    weeks: dict[str, list[float]] = {}
    for row in trend:
        if isinstance(row.get("seconds"), (int, float)):
            at = datetime.fromisoformat(row["at"])
            weeks.setdefault(f"{at.isocalendar().year}-W{at.isocalendar().week:02d}", []).append(row["seconds"])
    if not weeks:
        return "(no drill yet)"
    medians = {week: statistics.median(values) for week, values in sorted(weeks.items())[-12:]}
    top = max(medians.values()) or 1.0
    return "\n".join(f"{week}  {'█' * max(1, round(30 * s / top)):30}  {s:7.1f} s  ({len(weeks[week])} drill(s))"
                     for week, s in medians.items())


def _weekly_steps(trend: list[dict]) -> list[str]:
    """Each step's median duration by week: which step got slower."""
    weeks: dict[str, dict[str, list[float]]] = {}
    names: list[str] = []
    for row in trend:
        at = datetime.fromisoformat(row["at"])
        week = weeks.setdefault(f"{at.isocalendar().year}-W{at.isocalendar().week:02d}", {})
        for name, seconds in (row.get("steps") or {}).items():
            week.setdefault(name, []).append(seconds)
            names += [name] if name not in names else []
    if not names:
        return []
    lines = ["| week | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for week, steps in sorted(weeks.items())[-12:]:
        cells = [f"{statistics.median(steps[n]):.1f} s" if n in steps else "" for n in names]
        lines.append(f"| {week} | " + " | ".join(cells) + " |")
    return lines


@flow(name="drill", flow_run_name=_run_name, persist_result=False, log_prints=True)
def drill(phase: str, repo: str, config: str = "", incident_id: str = "", skip: list[str] = (),
          triggered_by: str = "manual") -> dict:
    """Rehearse a phase's rollback on a sandbox copy of the repository and its remote; nothing real is touched.

    Args:
        phase: 0, 1, 2A, 2B, 3 or 4.
        repo: Path of the target workspace's git clone (read, never changed).
        config: Path of a rollback.toml; when empty, the repository's own, else the shipped one.
        incident_id: The drill's id (names its sandbox and its runs); empty: drill-<phase>-<UTC time>.
        skip: Steps not to rehearse (names or IDs), besides those a drill skips by itself.
        triggered_by: Who or what started the drill: a person, the weekly schedule.
    """
    try:
        key = normalize_phase(phase)
        cfg = effective_config(config, repo)
        incident = check_incident_id(incident_id or new_drill_id(key))
        clone = Path(repo).resolve()
        before = fingerprint(clone, cfg)
    except BadInputError as exc:
        return bad_input_state(exc)
    logger = get_run_logger()
    target = target_name(clone, cfg)
    add_tags(DRILL_TAG, f"phase:{key}", f"target:{target}", "actor-rollback")
    stale = sweep_stale(drills_dir(cfg))
    if stale:
        logger.warning("removed %d sandbox(es) left by drills that did not end: %s", len(stale), ", ".join(stale))
    started_drill = datetime.now(timezone.utc)
    try:
        sandbox = make_sandbox(clone, cfg, incident)
    except BadInputError as exc:  # the remote unreadable, the disk full: the drill could not even start — said, told
        summary = f"phase {key} drill {incident}: FAILED — could not make its sandbox: {exc}"
        result = {"phase": key, "incident": incident, "drill": True, "outcome": "failed",
                  "exit_code": EXIT_CODES["failed"], "passed": False, "problems": [summary], "steps": [],
                  "untouched": {"same": True, "before": before, "after": before, "changed": []},
                  "sandbox": {"path": "", "removed": True, "stale_removed": stale}, "skipped": {},
                  "rollback_flow_run_id": None, "flow_run_id": _run_id(), "trend": []}
        add_tags("outcome:failed")
        result["notified"] = _notify(cfg, summary, result)
        return outcome_state("failed", summary, result)
    try:
        try:
            drill_file, skipped = drill_config(config, clone, cfg, key, sandbox)
        except BadInputError as exc:
            return bad_input_state(exc)
        logger.info("sandbox %s: the remote copied to %s; the phase %s flow runs in %s", sandbox.root,
                    sandbox.remote, key, sandbox.work)
        started = datetime.now(timezone.utc)
        try:
            with tags(DRILL_TAG), _cargo_target(cfg, clone):
                data = run_flow(PHASE_FLOWS[key], reason=f"drill of the phase {key} rollback ({incident})",
                                repo=str(sandbox.work), incident_id=incident, config=str(drill_file),
                                skip=sorted({*skip, *skipped}), triggered_by=f"drill:{triggered_by}")
        except BadInputError as exc:  # the rehearsed run refused its input (a step name, the config)
            return bad_input_state(exc)
        report = RollbackReport.model_validate(data)
    finally:
        sandbox.remove()
    ended = datetime.now(timezone.utc)
    after = fingerprint(clone, cfg)
    rows, problems = judge(report, key, started, budgets(cfg), skipped)
    changed = untouched(before, after)
    problems += [f"NOT UNTOUCHED: {line}" for line in changed]
    total = (ended - started).total_seconds()
    outcome = "failed" if problems else "done"
    rows.append({"id": "", "step": "(total)", "status": f"rollback {report.outcome}", "seconds": round(total, 2),
                 "at_seconds": round(total, 2), "budget_seconds": None,
                 "verdict": "failed" if problems else "passed", "note": f"sandbox made in "
                 f"{(started - started_drill).total_seconds():.1f} s and removed"})
    history_key = artifact_key("drill", key, target_key(clone, cfg))
    trend = _trend(history_key, {"at": ended.isoformat(), "seconds": round(total, 2),
                                 "verdict": rows[-1]["verdict"], "steps": step_seconds(rows)})
    result = {"phase": key, "incident": incident, "drill": True, "outcome": outcome,
              "exit_code": EXIT_CODES[outcome], "passed": not problems, "problems": problems, "steps": rows,
              "untouched": {"same": not changed, "before": before, "after": after, "changed": changed},
              "sandbox": {"path": str(sandbox.root), "removed": not sandbox.root.exists(), "stale_removed": stale},
              "skipped": skipped, "rollback_flow_run_id": report.flow_run_id, "flow_run_id": _run_id(),
              "trend": trend}
    _artifacts(result, history_key, target)
    add_tags(f"outcome:{outcome}")
    summary = (f"phase {key} drill {incident}: PASSED in {total:.0f} s" if not problems else
               f"phase {key} drill {incident}: FAILED — " + "; ".join(problems))
    if problems:
        result["notified"] = _notify(cfg, summary, result)
    return outcome_state(outcome, summary, result)


def _run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def _notify(cfg: RollbackConfig, summary: str, result: dict) -> list[str]:
    """X.1: the tech lead hears of a failed drill now, days before an incident would have found it."""
    from actor_rollback.tasks.notify import notify_roles

    body = "\n".join([summary, "", "Steps:", *[f"- {r['id']} {r['step']}: {r['status']} ({r['verdict']}) {r['note']}"
                                              for r in result["steps"]]])
    evidence = notify_roles(cfg, ["tech-lead"], f"[actor-rollback] drill FAILED: phase {result['phase']}", body,
                            flow_run.get_flow_run_ui_url())
    get_run_logger().warning("drill failed; %s", "; ".join(evidence))
    return evidence


def _artifacts(result: dict, history_key: str, target: str) -> None:
    phase, incident = result["phase"], result["incident"]
    lines = [f"# Phase {phase} rollback drill — {incident}", "",
             f"**{'PASSED' if result['passed'] else 'FAILED'}** on a sandbox copy of {target}", ""]
    if result["problems"]:
        lines += ["## What would stop a real rollback today", "", *[f"- {p}" for p in result["problems"]], ""]
    lines += ["## Steps against the runbook's budgets", "", "| step | status | took | ended at | budget | verdict |",
              "|---|---|---|---|---|---|"]
    for row in result["steps"]:
        at = "" if row["at_seconds"] is None else f"{row['at_seconds']:.1f} s"
        budget = "" if row["budget_seconds"] is None else f"{row['budget_seconds']:.0f} s"
        lines.append(f"| {row['id']} {row['step']} | {row['status']} | {row['seconds']:.1f} s | {at} | {budget} | "
                     f"{row['verdict']} |")
    same = result["untouched"]["same"]
    lines += ["", "## The real clone and remote", "",
              "refs, HEAD, index, status and the remote's refs: " + ("the same before and after" if same else
                                                                    "CHANGED: " + "; ".join(result["untouched"]["changed"])),
              "", "## Duration by week (median of the drills, whole phase run)", "", "```",
              _weekly_chart(result["trend"]), "```", "", "Each step's median by week:", "",
              *_weekly_steps(result["trend"])]
    create_markdown_artifact(markdown="\n".join(lines), key=artifact_key("drill-report", phase, incident),
                             description=f"Phase {phase} drill {incident}")
    create_table_artifact(table=result["steps"], key=history_key,
                          description=f"Phase {phase} drill steps (versions: every drill of this target)")
