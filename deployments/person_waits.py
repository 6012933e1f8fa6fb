"""Runs that wait for a person hold no process: `serve` keeps their clocks.

A Medium incident's triage run (F.3) from a deployment asks its owner, then *suspends*: its process
exits and its runner slot is free for the next incident, whatever its severity, and a restart of
`serve` — or its SIGTERM — leaves it waiting and answerable. Nothing runs in it until the answer
comes, so the reminder before the deadline and the escalation at it come from here:
`OwnerDecisionWatch`, a thread of `serve`, looks every `triage.watch_seconds` at the runs tagged
`awaiting:owner-decision` that are still suspended:

- `triage.reminder_before` ahead of the deadline (the first run's, kept as a run input): the owner is
  reminded, once — the run is tagged `f3:reminded`, so a restarted serve does not remind again;
- at the deadline: the run is resumed with the answer `expired`, and the triage flow itself escalates
  to the owner and the tech lead and ends Failed (one code path for the escalation and its record).

A serve that was down at the deadline escalates when it is back.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from runbook.config import RollbackConfig, parse_duration

log = logging.getLogger("actor_rollback.receiver")
REMINDED = "f3:reminded"


class OwnerDecisionWatch:
    def __init__(self, cfg: RollbackConfig, every_seconds: float | None = None) -> None:
        self.cfg = cfg
        self.every = every_seconds or cfg.triage.watch_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="owner-decision-watch", daemon=True)

    def start(self) -> OwnerDecisionWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.check()
            except Exception as exc:  # Prefect unreachable for a moment: the next look tries again
                log.warning("could not look at the runs waiting for an owner's decision: %s: %s",
                            type(exc).__name__, exc)

    def check(self, now: datetime | None = None) -> dict[str, str]:
        """Remind or escalate every suspended F.3 run that is due; {run name: what was done}."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                    FlowRunFilterTags)
        from prefect.flow_runs import resume_flow_run
        from prefect.input import read_flow_run_input

        from flows.outcome import pause_key
        from flows.triage import AWAITING_OWNER, remind_owner

        now = now or datetime.now(timezone.utc)
        remind_before = parse_duration(self.cfg.triage.reminder_before)
        done: dict[str, str] = {}
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[AWAITING_OWNER]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["PAUSED"]))), limit=200)
            for run in runs:
                incident = run.parameters.get("incident") or {}
                key = pause_key("owner-decision", str(incident.get("id", "")))
                first = read_flow_run_input(f"{key}-deadline", flow_run_id=run.id)
                if not first:
                    continue  # asked but not yet suspended: its process is still going
                deadline = datetime.fromisoformat(first)
                if now >= deadline:
                    resume_flow_run(run.id, run_input={"approved": False, "approver": "actor-rollback (deadline passed)",
                                                       "comment": "", "expired": True})
                    done[run.name] = "escalated"
                    log.warning("%s: no owner decision by %s; resumed to escalate", run.name, first)
                elif now >= deadline - remind_before and REMINDED not in run.tags:
                    remind_owner(self.cfg, incident, deadline, run.id)
                    client.update_flow_run(run.id, tags=sorted({*run.tags, REMINDED}))
                    done[run.name] = "reminded"
        return done
