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

The same watch keeps two promises of the UI's buttons on runs that have no process:

- **Resume** on a run that ended needing a person asks for its acknowledgement (who, what they did,
  resolved or failed); the server then marks it Running with nothing to run it — the watch closes it
  Completed or Failed with that record (`flows.outcome.close_acknowledged`; `actor-rollback ack` does
  the same at once);
- **Cancel** on a run waiting for a person (paused or suspended) would sit in Cancelling for minutes:
  the watch ends it Cancelled at once, tagged `outcome:cancelled` — told apart from `busy` — and tags
  `outcome:cancelled` on any run of ours an operator cancelled while it ran (its process, and the
  commands it ran, were ended by the runner).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from actor_rollback.deployments.lost_runs import EveryFewSeconds, cancelled_by_shutdown
from actor_rollback.runbook.config import RollbackConfig, parse_duration

log = logging.getLogger("actor_rollback.receiver")
REMINDED = "f3:reminded"


class PersonWaits(EveryFewSeconds):
    what = "look at the runs waiting for people"

    def __init__(self, cfg: RollbackConfig, every_seconds: float | None = None, target: str = "") -> None:
        super().__init__(every_seconds or cfg.triage.watch_seconds)
        self.cfg = cfg
        self.mine = [f"target:{target}"] if target else []  # several serves on one server: each keeps its own runs

    def check(self, now: datetime | None = None) -> dict[str, str]:
        """Everything due, once: {run name: what was done}."""
        return {**self.owner_decisions(now), **self.acknowledgements(), **self.cancels()}

    def acknowledgements(self) -> dict[str, str]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                    FlowRunFilterTags)

        from actor_rollback.flows.outcome import close_acknowledged

        done = {}
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=["outcome:needs-human", *self.mine]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["RUNNING"]))), limit=200)
            for run in runs:
                final = close_acknowledged(client, run)
                if final is not None:
                    done[run.name] = f"acknowledged: {final.name}"
                    log.warning("%s: %s", run.name, final.message)
        return done

    def cancels(self) -> dict[str, str]:
        from datetime import timedelta

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterStartTime, FlowRunFilterState,
                                                    FlowRunFilterStateType, FlowRunFilterTags)
        from prefect.states import Cancelled

        done = {}
        since = datetime.now(timezone.utc) - timedelta(days=1)
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=["actor-rollback", *self.mine]), start_time=FlowRunFilterStartTime(after_=since),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["CANCELLING", "CANCELLED"]))), limit=200)
            for run in runs:
                if any(tag.startswith("outcome:") and tag != "outcome:needs-human" for tag in run.tags):
                    continue  # busy (Cancelled by the tool itself), or already told
                if cancelled_by_shutdown(run.state):
                    continue  # lost with its runner, not cancelled by anyone: the lost-run retrier puts it back
                if run.state.type.value == "CANCELLING":
                    history = client.read_flow_run_states(run.id)
                    before = history[-2] if len(history) > 1 else None
                    if before is None or not before.is_paused():
                        continue  # a running run: its runner ends the process, then the state is Cancelled
                    client.set_flow_run_state(run.id, Cancelled(message=(
                        f"cancelled by an operator while it waited for a person ({before.name}): nothing more is "
                        f"done — was: {before.message or ''}")[:2000]), force=True)
                tags = {t for t in run.tags if t != "outcome:needs-human"} | {"outcome:cancelled"}
                client.update_flow_run(run.id, tags=sorted(tags))
                done[run.name] = "cancelled"
        return done

    def owner_decisions(self, now: datetime | None = None) -> dict[str, str]:
        """Remind or escalate every suspended F.3 run that is due."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
                                                    FlowRunFilterTags)
        from prefect.flow_runs import resume_flow_run
        from prefect.input import read_flow_run_input

        from actor_rollback.flows.outcome import pause_key
        from actor_rollback.flows.triage import AWAITING_OWNER, remind_owner

        now = now or datetime.now(timezone.utc)
        remind_before = parse_duration(self.cfg.triage.reminder_before)
        done: dict[str, str] = {}
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[AWAITING_OWNER, *self.mine]),
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
