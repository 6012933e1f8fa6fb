"""An incident's history read back from Prefect: the runs, their states, task runs and artifacts.

Prefect is the audit trail; this module only reads it (for the postmortem and `audit`).
"""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey, FlowRunFilter,
                                            FlowRunFilterId,
                                            FlowRunFilterName, FlowRunFilterStartTime, FlowRunFilterTags)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.utilities.urls import url_for

from actor_rollback.runbook.config import RollbackConfig
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.postmortem import IncidentHistory, TimelineEntry


def _artifacts(client, run_id) -> dict:
    found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    return {a.key: a for a in found if a.key}


def _table(artifact) -> list[dict]:
    if artifact is None:
        return []
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return list(data)


def find_rollback_run(client, ref: str):
    """A rollback flow run by its id or name, or the latest non-dry run tagged with the incident."""
    try:
        run = client.read_flow_run(UUID(ref))
        if run.name.startswith("rollback-phase-"):
            return run
        ref = next((t.removeprefix("incident:") for t in run.tags if t.startswith("incident:")), ref)
    except ValueError:
        pass
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"incident:{ref}"])),
                                 sort=FlowRunSort.START_TIME_DESC, limit=50)
    runs += client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"rollback-phase-%-{ref}")),
                                  sort=FlowRunSort.START_TIME_DESC, limit=50)
    rollbacks = [r for r in runs if r.name.startswith("rollback-phase-") and not r.parameters.get("dry_run")]
    if not rollbacks:
        raise BadInputError(f"no rollback run for {ref!r} on this Prefect server; give the run's id or the incident id "
                            "(actor-rollback audit lists them)")
    return max(rollbacks, key=lambda r: r.start_time or r.expected_start_time)


def incident_history(ref: str, cfg: RollbackConfig) -> IncidentHistory:
    with get_client(sync_client=True) as client:
        run = find_rollback_run(client, ref)
        incident = next((t.removeprefix("incident:") for t in run.tags if t.startswith("incident:")), ref)
        phase = next((t.removeprefix("phase:") for t in run.tags if t.startswith("phase:")), "?")
        artifacts = _artifacts(client, run.id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        triage = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"triage-{incident}"])),
                                       sort=FlowRunSort.START_TIME_DESC, limit=1)
        decision, triage_url, timeline = {}, "", []
        if triage:
            decision = triage_decisions(triage).get(str(triage[0].id), {})
            triage_url = url_for(triage[0]) or ""
            if decision.get("started_at"):
                timeline.append(TimelineEntry(datetime.fromisoformat(decision["started_at"]),
                                              f"incident started ({decision.get('source', '?')})"))
            if triage[0].start_time:
                timeline.append(TimelineEntry(triage[0].start_time, f"triage: {decision.get('severity', '?')} by "
                                              f"{decision.get('rule', '?')}, decided by {decision.get('decided_by', '?')}",
                                              triage[0].total_run_time.total_seconds(), triage[0].state_name or ""))
    key = f"rollback-phase-{phase}-{incident}".lower()
    steps = _table(artifacts.get(f"{_key(key)}-steps"))
    for row in steps:
        row["data"] = json.loads(row["data"]) if isinstance(row.get("data"), str) and row["data"] else {}
    if run.start_time:
        timeline.append(TimelineEntry(run.start_time, f"{run.name} started", None, ""))
    for task in tasks:
        if task.start_time:
            took = (task.end_time - task.start_time).total_seconds() if task.end_time else None
            timeline.append(TimelineEntry(task.start_time, task.name, took, task.state_name or ""))
    if run.end_time:
        timeline.append(TimelineEntry(run.end_time, f"{run.name} ended", run.total_run_time.total_seconds(),
                                      run.state_name or ""))
    checklist = artifacts.get(f"{_key(key)}-checklist")
    ttm = _table(artifacts.get(f"{_key(key)}-ttm"))
    for row in ttm:
        if row["milestone"] not in ("run started",):
            timeline.append(TimelineEntry(datetime.fromisoformat(row["at"]), f"time to mitigation: {row['milestone']} "
                                          f"(+{row['seconds']:.2f} s)"))
    failed = any(r.get("status") == "failed" for r in steps)
    return IncidentHistory(
        incident=incident, phase=phase, rollback_run=run.name, rollback_run_id=str(run.id), rollback_url=url_for(run) or "",
        started=run.start_time or run.expected_start_time, ended=run.end_time,
        outcome=("failed" if failed else run.state_name or "?"), trigger=str(run.parameters.get("triggered_by", "?")),
        reason=str(run.parameters.get("reason", "")), decision=decision, triage_url=triage_url, timeline=timeline,
        steps=steps, checklist=str(checklist.data) if checklist else "", mitigation=ttm,
        links={k: v for k, v in cfg.dashboards.model_dump().items() if v})


def _key(text: str) -> str:
    from actor_rollback.tasks.context import artifact_key

    return artifact_key(text)


def triage_decisions(runs) -> dict[str, dict[str, str]]:
    """The decision of every triage run among `runs`, by run id: the artifacts read in pages of
    200 runs, not one request per run (an audit of a year of alerts stays a few requests)."""
    wanted = {str(r.id): _key(r.name + "-decision") for r in runs if r.name.startswith("triage-")}
    found: dict[str, dict[str, str]] = {}
    ids = list(wanted)
    with get_client(sync_client=True) as client:
        for start in range(0, len(ids), 200):
            chunk = ids[start:start + 200]
            offset = 0
            while True:
                page = client.read_artifacts(artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=chunk), key=ArtifactFilterKey(like_="triage-%-decision")),
                    limit=200, offset=offset)
                for artifact in page:
                    run_id = str(artifact.flow_run_id)
                    rows = _table(artifact) if artifact.key == wanted.get(run_id) else []
                    if rows:
                        found[run_id] = {k: str(v) for k, v in rows[0].items()}
                offset += len(page)
                if len(page) < 200:
                    break
    return found


def list_runs(since: datetime | None, phase: str | None) -> list:
    """Every triage and rollback run (not dry runs), newest first."""
    filters = {"tags": FlowRunFilterTags(all_=["actor-rollback"])}
    if since:
        filters["start_time"] = FlowRunFilterStartTime(after_=since)
    with get_client(sync_client=True) as client:
        runs, offset = [], 0
        while True:
            page = client.read_flow_runs(flow_run_filter=FlowRunFilter(**filters), sort=FlowRunSort.START_TIME_DESC,
                                         limit=200, offset=offset)
            runs += page
            offset += len(page)
            if len(page) < 200:
                break
    chosen = [r for r in runs if (r.name.startswith(("rollback-phase-", "triage-")))
              and not r.parameters.get("dry_run")]
    if phase:
        chosen = [r for r in chosen if f"phase:{phase}" in r.tags]
    return chosen
