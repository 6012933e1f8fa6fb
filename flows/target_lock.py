"""One rollback per target repository at a time: a strict Prefect global concurrency limit.

The application creates the limit itself (`rollback-target-<key>`, limit 1; the key is derived
from the remote's URL, so two clones of one remote share it). A missing or misconfigured limit
is never treated as "no limit": acquisition must return our limit or the run stops.

Beside it, a host-level lock (tasks/host_lock.py): a file per target in `concurrency.host_lock_dir`, held with
flock(2) for the whole run. Two runs on one host exclude each other even when they talk to different Prefect servers
(a served run and `actor-rollback run` on the embedded server); the kernel drops it when its process dies,
so it never goes stale. It is taken first, then the Prefect limit (one order: no deadlock).

A second run for the same target waits (its log says for which run) up to
`concurrency.wait_seconds`, then stops with "busy". Waiting is safe because every step is
idempotent: the second run finds the first one's work done. A holder killed on this host
(its process gone) is recognised from the lock record it left in a Prefect variable, and its
lease is released at once instead of after the server's lease expiry.
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.context import get_settings_context
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.variables import Variable

from actor_rollback.tasks.host_lock import HostLock, TargetBusy, target_key
from actor_rollback.tasks.pids import pid_alive
from actor_rollback.flows.outcome import has_ended
from actor_rollback.flows.variables import put_variable
from actor_rollback.runbook.config import RollbackConfig
from actor_rollback.runbook.errors import StepError
from actor_rollback.tasks.work_tree import working_in_own_tree


def _take_host_lock(lock: HostLock, holder: dict, repo: Path, cfg: RollbackConfig, deadline: float, log) -> None:
    said = False
    while not lock.try_acquire(holder):
        held = lock.holder()
        who = (f"{held.get('incident', 'unknown incident')}, flow run {held.get('flow_run_id', '?')} on "
               f"{held.get('server') or 'the embedded server'}, pid {held.get('pid', '?')}")
        if time.monotonic() >= deadline:
            raise TargetBusy(f"another rollback holds {repo} on this host ({who}); waited "
                             f"{cfg.concurrency.wait_seconds} s. Rerun when it has finished: its steps will be found done")
        if not said:
            log(f"waiting for the rollback already running on this target on this host: {who}")
            said = True
        time.sleep(0.2)


def ensure_limit(client, name: str) -> None:
    try:
        limit = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except ObjectAlreadyExists:
            pass  # created meanwhile by the other run (found by the PostgreSQL test): fine
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code != 409:
                raise
        return
    if limit.limit != 1 or not limit.active:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))


class TargetLock:
    def __init__(self, name: str, record: str, lease_seconds: float) -> None:
        self.name, self.record, self.lease_seconds = name, record, lease_seconds
        self.lease_id: UUID | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def try_acquire(self, client, holder: ConcurrencyLeaseHolder | None) -> bool:
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=[self.name], slots=1, mode="concurrency", lease_duration=self.lease_seconds, holder=holder)
        except PrefectHTTPStatusError as exc:
            if exc.response.status_code == 423:
                return False
            raise
        body = response.json()
        if self.name not in [limit["name"] for limit in body.get("limits", [])]:
            # The server granted nothing for our name: the limit vanished. Never run unguarded.
            client.release_concurrency_slots_with_lease(UUID(body["lease_id"]))
            raise StepError(f"the concurrency limit {self.name} does not exist on the Prefect server; rerun to recreate it")
        self.lease_id = UUID(body["lease_id"])
        return True

    def start_renewing(self) -> None:
        def renew() -> None:
            with get_client(sync_client=True) as client:
                while not self._stop.wait(self.lease_seconds / 3):
                    try:
                        client.renew_concurrency_lease(self.lease_id, lease_duration=self.lease_seconds)
                    except Exception:
                        pass  # the next attempt may get through; the lease outlives two missed renewals

        context = contextvars.copy_context()  # the same Prefect settings (server URL) as the flow
        self._renewer = threading.Thread(target=context.run, args=(renew,), name=f"renew-{self.name}", daemon=True)
        self._renewer.start()

    def release(self, client) -> None:
        self._stop.set()
        if self._renewer:
            self._renewer.join(timeout=5)
        if self.lease_id:
            # our record goes first: once the slot is free the next run writes its own record
            held = Variable.get(self.record, default=None)
            if isinstance(held, dict) and held.get("lease_id") == str(self.lease_id):
                Variable.unset(self.record)
            free_slot(client, self.name, self.record, self.lease_id, self.lease_seconds)


def _lease_known(client, lease_id: UUID, lease_seconds: float) -> bool:
    """Whether the server still knows this lease. Leases live in the server's memory: a restarted server forgets
    them while the slot they took stays counted in its database."""
    try:
        client.renew_concurrency_lease(lease_id, lease_duration=lease_seconds)
        return True
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code in (404, 410):
            return False
        raise


def free_slot(client, name: str, record: str, lease_id: UUID, lease_seconds: float) -> None:
    """Release a holder's slot: through its lease, or — when the server forgot the lease — by name, unless another
    run's record shows that the slot is now that run's (its lease expired and was reaped, and the slot taken again)."""
    if _lease_known(client, lease_id, lease_seconds):
        client.release_concurrency_slots_with_lease(lease_id)
        return
    held = Variable.get(record, default=None)
    if isinstance(held, dict) and held.get("lease_id") != str(lease_id):
        return  # the slot is another run's now
    limit = client.read_global_concurrency_limit_by_name(name)
    if limit.active_slots > 0:
        client.release_concurrency_slots(names=[name], slots=1, occupancy_seconds=1.0)


def _holder_gone(client, held: dict) -> str:
    """Why the holder in this record can no longer be running ("" while it may be)."""
    if held.get("host") == socket.gethostname() and not pid_alive(int(held.get("pid", 0))):
        return f"pid {held.get('pid')} is gone"
    run_id = held.get("flow_run_id")
    if run_id:
        try:
            run = client.read_flow_run(UUID(run_id))
        except (ObjectNotFound, ValueError):
            return "its flow run does not exist"
        if has_ended(run):  # final, or paused for a person after its work
            return f"its flow run ended {run.state.name}"
    return ""


def _release_if_holder_died(client, record: str, lease_seconds: float, log) -> bool:
    held = Variable.get(record, default=None)
    if not isinstance(held, dict):
        return False
    why = _holder_gone(client, held)
    if not why:
        return False
    log(f"the rollback holding this target ({held.get('incident')}) is gone ({why}); releasing its slot")
    free_slot(client, held.get("limit", ""), record, UUID(held["lease_id"]), lease_seconds)
    Variable.unset(record)
    return True


def _release_orphaned_slot(client, name: str, record: str, since: float, lease_seconds: float, log) -> bool:
    """A slot taken with no holder record for a whole lease: a holder that vanished before releasing it (or a
    server restart that lost its lease). A live holder writes its record right after acquiring."""
    if Variable.get(record, default=None) is not None or time.monotonic() - since < lease_seconds:
        return False
    limit = client.read_global_concurrency_limit_by_name(name)
    if limit.active_slots <= 0:
        return False
    log(f"{name}: a slot has been taken for {lease_seconds:.0f} s with no holder recorded; freeing it")
    client.release_concurrency_slots(names=[name], slots=1, occupancy_seconds=1.0)
    return True


@contextmanager
def one_rollback_per_target(repo: Path, cfg: RollbackConfig, incident: str, flow_run_id: str | None,
                            log=print) -> Iterator[str]:
    key = target_key(repo, cfg)
    lock = TargetLock(f"rollback-target-{key}", f"rollback_lock_{key}", cfg.concurrency.lease_seconds)
    holder = ConcurrencyLeaseHolder(type="flow_run", id=UUID(flow_run_id)) if flow_run_id else None
    deadline = time.monotonic() + cfg.concurrency.wait_seconds
    host_lock = HostLock(Path(cfg.concurrency.host_lock_dir), key)
    _take_host_lock(host_lock, {"incident": incident, "flow_run_id": flow_run_id, "pid": os.getpid(),
                                "server": get_settings_context().settings.api.url or ""}, repo, cfg, deadline, log)
    try:
        with _prefect_limit(lock, holder, repo, cfg, incident, flow_run_id, deadline, log):
            yield lock.name
    finally:
        host_lock.release()


@contextmanager
def _prefect_limit(lock: TargetLock, holder: ConcurrencyLeaseHolder | None, repo: Path, cfg: RollbackConfig,
                   incident: str, flow_run_id: str | None, deadline: float, log) -> Iterator[None]:
    name, record = lock.name, lock.record
    with get_client(sync_client=True) as client:
        ensure_limit(client, name)
        waiting_said, recordless_since = False, time.monotonic()
        while not lock.try_acquire(client, holder):
            if _release_if_holder_died(client, record, cfg.concurrency.lease_seconds, log):
                continue
            held = Variable.get(record, default=None) or {}
            if held:
                recordless_since = time.monotonic()
            elif _release_orphaned_slot(client, name, record, recordless_since, cfg.concurrency.lease_seconds, log):
                continue
            if time.monotonic() >= deadline:
                raise TargetBusy(
                    f"another rollback holds {repo} ({held.get('incident', 'unknown incident')}, flow run "
                    f"{held.get('flow_run_id', '?')}); waited {cfg.concurrency.wait_seconds} s. "
                    "Rerun when it has finished: its steps will be found done"
                )
            if not waiting_said:
                log(f"waiting for the rollback already running on this target: {held.get('incident', '?')} "
                    f"(flow run {held.get('flow_run_id', '?')})")
                waiting_said = True
            time.sleep(0.2)  # a fine poll: the next run starts within 0.2 s of the release
        put_variable(record, {"lease_id": str(lock.lease_id), "incident": incident, "flow_run_id": flow_run_id,
                              "host": socket.gethostname(), "pid": os.getpid(), "limit": name})
        lock.start_renewing()
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            lock.release(client)



@contextmanager
def holding_target(ctx, log=print, purpose: str = "files") -> Iterator[None]:
    """A write to the target outside a phase run (F.4's issue file, the postmortem draft, the ADR stub) takes the
    same lock as a rollback, in a work tree of its own: it never interleaves with a rollback's commits or another
    incident's files, and never sees a person's changes in the clone."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    with one_rollback_per_target(ctx.repo, ctx.cfg, ctx.incident, str(run_id) if run_id else None, log=log):
        with working_in_own_tree(ctx, log=log, purpose=purpose):
            yield
