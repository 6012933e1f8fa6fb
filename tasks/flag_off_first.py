"""F.1's flag-off first: a Critical incident's flag off and pushed by the alert receiver, before Prefect is asked.

No Prefect import in this module nor in what it imports (a test checks): serve's receiver runs it from the moment it
listens, before Prefect's flows are loaded, and while the Prefect server is down. The triage run that follows
records these results (flows/runner.py::PhaseRun._as_done_before).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from actor_rollback.runbook.config import effective_config, normalize_phase
from actor_rollback.runbook.model import Decision, Incident, StepResult
from actor_rollback.runbook.phases import PHASE_STEPS
from actor_rollback.runbook.severity import decide
from actor_rollback.tasks.cargo_manifest import flag_off_on_remote
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.host_lock import TargetBusy, holding_host_lock
from actor_rollback.tasks.registry import execute_step, step_function
from actor_rollback.tasks.work_tree import git_common_dir, working_in_own_tree


# a Low incident's issue file or a postmortem draft holds the target for a second or two: wait that long; a
# rollback holds it for minutes: then the triage's own run waits for it (and says so), as before
FIRST_LOCK_WAIT_SECONDS = 10.0


def flag_off_first(incident: Incident, repo: str, config: str = "") -> list[StepResult]:
    """F.1 before anything else: a Critical incident's flag off, committed and pushed by the receiver the moment
    the alert is stored — no Prefect call on the way, so neither a busy Prefect server nor a slow run start
    (nor Prefect being down) delays the mitigation. The same step functions as the phase run, under the
    target's host lock (waited for a few seconds at most), in a work tree of the incident's own; the triage run
    that follows records these results (its rollback finds the steps done). When another rollback of the target holds it, the remote's branch is read
    first (no lock, no write): a flag already pushed off there is the mitigation in place, said at once. Returns []
    when there is nothing to do first: not Critical, no flag step in the phase, or the target still busy after the
    wait (the run then waits for it, as before)."""
    cfg = effective_config(config, repo)
    phase = normalize_phase(incident.phase)
    decision = decide(incident, cfg.severity)
    names = [spec.name for spec in PHASE_STEPS[phase]]
    if decision.severity != "critical" or not {"flag", "push"} <= set(names) \
            or not {"flag", "push"} <= set(cfg.triage.critical_steps):
        return []
    ctx = StepContext(repo=Path(repo).resolve(), cfg=cfg, phase=phase, incident=incident.id,
                      reason=rollback_reason(incident, decision))
    specs = [spec for spec in PHASE_STEPS[phase] if spec.name in ("flag", "push")]
    held = ""
    for wait in (0.0, FIRST_LOCK_WAIT_SECONDS):  # at once; else, unless the remote says it is done, a moment's wait
        try:
            with holding_host_lock(ctx.repo, cfg, incident.id, "F.1 flag-off first (receiver)", wait_seconds=wait):
                return _recorded(ctx, _flag_off_in_own_tree(ctx, specs))
        except TargetBusy as busy:  # another rollback of the target holds it: has it pushed the flag off already?
            held = held or str(busy)
        if not wait and (found := _found_off_on_remote(ctx, specs, held)):
            return _recorded(ctx, found)
    return []  # a rollback of this target is going: the triage's run waits for it and says so


def _record_path(repo: Path, incident: str) -> Path:
    return git_common_dir(repo) / "actor-rollback" / "first" / f"{incident}.json"


def _recorded(ctx: StepContext, results: list[StepResult]) -> list[StepResult]:
    """Keep what was done first beside the clone (`.git/actor-rollback/first/<incident>.json`): the triage run may
    start in another process — the next serve, after a restart took this one down before it started the run —
    and its record must still say when the flag went off, not when that run found it off."""
    if results and all(r.status in ("done", "already-done") for r in results):
        path = _record_path(ctx.clone or ctx.repo, ctx.incident)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps([r.model_dump(mode="json") for r in results]))
            partial.replace(path)
        except OSError:  # a full disk: the run then records the time it found the steps done, no worse than before
            pass
    return results


def recorded_first(repo: str | Path, incident: str) -> list[StepResult]:
    """What the receiver did first for this incident, as it recorded it; [] when nothing (or unreadable)."""
    try:
        return [StepResult.model_validate(r) for r in json.loads(_record_path(Path(repo), incident).read_text())]
    except Exception:  # noqa: BLE001 — no record, or no clone there: the run's own steps say what is wrong
        return []


def _flag_off_in_own_tree(ctx: StepContext, specs: list) -> list[StepResult]:
    results: list[StepResult] = []
    with working_in_own_tree(ctx, log=lambda line: None):
        for spec in specs:
            result = execute_step(spec, ctx.for_step(spec.id), step_function(spec.name))
            results.append(result)
            if result.status not in ("done", "already-done"):
                break  # the rollback run does it again and says why
    return results


def _found_off_on_remote(ctx: StepContext, specs: list, held: str) -> list[StepResult]:
    """The target is held by another rollback: when the remote's branch already has the flag off (that rollback
    pushed it), the mitigation is in place now — say so at once instead of waiting for the holder; [] otherwise."""
    if ctx.cfg.git.push != "direct":
        return []
    found = flag_off_on_remote(ctx)
    if found is None:
        return []
    sha, evidence = found
    now = datetime.now(timezone.utc)
    said = {"flag": [held, *evidence],
            "push": [f"{ctx.cfg.remote}/{ctx.cfg.main_branch} already contains {sha[:10]}, with the flag off"]}
    return [StepResult(id=spec.id, name=spec.name, status="already-done", evidence=said[spec.name], finished_at=now,
                       data={"flag": "off"} if spec.name == "flag" else {"pushed": sha}) for spec in specs]


def rollback_reason(incident: Incident, decision: Decision) -> str:
    """What the rollback commits say: the decision and the incident, the same whoever makes the commit."""
    return f"{decision.severity} ({decision.rule}): {incident.summary or incident.kind}"
