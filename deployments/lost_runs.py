"""Triage runs lost with a worker (or a receiver) are started again.

A worker (or its host) that dies takes its flow runs with it. Three kinds of loss:

- a run that was **Running** stops sending heartbeats; the zombie automation (deployments/
  automations.py, run by the server's background services) marks it **Crashed**;
- a run the dead worker had taken but not yet started stays **Pending** for ever — no process,
  no heartbeat, and Prefect marks nothing;
- a run its runner was starting or running when the runner stopped (serve's SIGTERM) ends **Cancelled**
  "Runner is shutting down." — lost too, not cancelled by anyone (an operator's cancel stays final);
- a Critical triage run on the warm path (inside a receiver's process, no deployment) lost with its
  receiver ends Crashed too, its incident marked started in the receiver's intake spool.

`LostRunRetrier` (a thread of `serve`, beside the receiver that started those runs) looks every
`runner.retry_lost_every_seconds` at the triage runs of its own deployment and puts each lost one
back in the queue — state **AwaitingRetry** (Scheduled), saying why — so another worker runs it
again: the same flow run, its history showing Running → Crashed → AwaitingRetry → Running → …;
one triage run per incident. A lost warm run's incident is reopened in the intake spool, and the
receiver's warm path starts its triage again (a new run of the same name). The steps are
idempotent (a flag already off, a merge already reverted, a push already on the remote are
`already-done`), so the rerun converges. A run is put
back at most `runner.lost_run_retries` times; then it stays Crashed, for a person. A run lost longer
ago than `runner.lost_run_max_age_minutes` (serve was down meanwhile) is left for a person too: its
incident may be over, or its phase reintroduced since — a rerun must not roll it back unasked.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

log = logging.getLogger("actor_rollback.receiver")
RETRY_STATE_NAME = "AwaitingRetry"


RUNNER_SHUTDOWN = "Runner is shutting down"  # the message Prefect's runner (serve, a worker) cancels its runs with


def cancelled_by_shutdown(state) -> bool:
    """A run its runner cancelled because the runner stopped (serve's SIGTERM) — lost with it, not cancelled by
    anyone: it is put back like a crashed one."""
    return bool(state and state.is_cancelled() and (state.message or "").startswith(RUNNER_SHUTDOWN))


class EveryFewSeconds:
    """A daemon thread of `serve` that calls `check()` every `every` seconds until stopped; a look that fails
    (Prefect unreachable for a moment) is logged, and the next one tries again."""

    what = "look"

    def __init__(self, every_seconds: float) -> None:
        self.every = every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.check()
            except Exception as exc:
                log.warning("could not %s: %s: %s", self.what, type(exc).__name__, exc)

    def check(self):
        raise NotImplementedError


class LostRunRetrier(EveryFewSeconds):
    what = "look for lost triage runs"

    def __init__(self, deployment: str, every_seconds: float, retries: int, pending_seconds: float,
                 max_age_seconds: float = 3600, spool=None) -> None:
        super().__init__(every_seconds)
        self.deployment, self.retries, self.pending_seconds = deployment, retries, pending_seconds
        self.max_age = timedelta(seconds=max_age_seconds)
        self.spool = spool  # the receiver's intake: warm (in-process) triage runs lost with a receiver
        self._deployment_id = None  # read once it exists
        self.retried: dict[str, int] = {}  # flow run id → times put back by this process (also in the run's states)

    def check(self) -> list[str]:
        """Put back every lost run of the deployment, and every lost warm run; the names of those put back."""
        return self._deployment_runs() + self._warm_runs()

    def _warm_runs(self) -> list[str]:
        """A Critical triage run in a receiver's own process (the warm path) is no deployment run: no worker can
        take it again. Lost with its receiver (SIGKILL, a lost host) it ends Crashed (zombie automation) with its
        incident marked started in the intake spool. Its spool row is reopened, so this receiver's warm path
        starts the triage again (a new run of the same name: WarmTriage starts one when the last crashed)."""
        if self.spool is None:
            return []
        import json

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        since = datetime.now(timezone.utc) - self.max_age
        rows = self.spool.started_in_process(since.timestamp())
        if not rows:
            return []
        names = {key: f"triage-{json.loads(incident)['id']}" for key, incident in rows.items()}
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=sorted(set(names.values())))), limit=200)
        by_name: dict[str, list] = {}
        for run in runs:
            by_name.setdefault(run.name, []).append(run)
        lost = []
        for key, name in names.items():
            mine = by_name.get(name, [])
            crashed = [r for r in mine if r.state and r.state.is_crashed()]
            if mine and len(crashed) == len(mine) and len(crashed) <= self.retries:
                lost.append(key)
                log.warning("warm triage run %s was lost with its receiver (Crashed): starting it again, %d of %d",
                            name, len(crashed), self.retries)
        if lost:
            self.spool.reopen(lost)
        return [names[key] for key in lost]

    def _deployment_runs(self) -> list[str]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
        from prefect.exceptions import ObjectNotFound
        from prefect.states import AwaitingRetry

        now = datetime.now(timezone.utc)
        put_back = []
        with get_client(sync_client=True) as client:
            if self._deployment_id is None:
                try:
                    self._deployment_id = client.read_deployment_by_name(self.deployment).id
                except ObjectNotFound:
                    return []
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(deployment_id={"any_": [self._deployment_id]},
                                              state=FlowRunFilterState(type=FlowRunFilterStateType(
                                                  any_=["CRASHED", "PENDING", "CANCELLED"]))), limit=50)
            for run in runs:
                state = run.state
                if state.is_cancelled() and not cancelled_by_shutdown(state):
                    continue  # an operator's cancel (or busy) is final
                if state.is_pending() and now - state.timestamp < timedelta(seconds=self.pending_seconds):
                    continue  # a worker is starting it
                if now - state.timestamp > self.max_age:
                    continue  # lost long ago (serve was down): the incident may be over or its phase back; a person
                history = client.read_flow_run_states(run.id)
                times = sum(1 for s in history if s.name == RETRY_STATE_NAME)
                if times >= self.retries:
                    continue  # left Crashed (or Pending) for a person; said once when it was put back the last time
                why = (f"Crashed: {state.message or 'its process ended without a final state'}" if state.is_crashed() else
                       f"Cancelled by its runner's shutdown: {state.message}" if state.is_cancelled() else
                       f"Pending for {int((now - state.timestamp).total_seconds())} s: the worker that took it is gone")
                client.set_flow_run_state(run.id, AwaitingRetry(
                    scheduled_time=now, message=f"started again ({times + 1} of {self.retries}): {why}"), force=True)
                self.retried[str(run.id)] = times + 1
                put_back.append(run.name)
                log.warning("triage run %s was lost (%s): put back for another worker, %d of %d",
                            run.name, why, times + 1, self.retries)
        return put_back
