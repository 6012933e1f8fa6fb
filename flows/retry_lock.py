"""A.4: no immediate retry. A rollback of a phase locks that phase's reintroduction for
`after.retry_lock_days` (7) days.

The lock lives in a Prefect variable (`retry_lock_<target>_<phase>`) on the server, so every
trigger sees it — the UI, the CLI, the alert receiver, a scheduled run, the target's CI through
`actor-rollback lock check`. A later rollback of the same phase extends it, never shortens it.
Lifting it early is a named person's decision with a reason, kept in the record.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prefect.variables import Variable
from pydantic import BaseModel

from actor_rollback.tasks.host_lock import target_key
from actor_rollback.flows.variables import put_variable
from actor_rollback.runbook.config import RollbackConfig, normalize_phase


class RetryLock(BaseModel):
    phase: str
    incident: str
    locked_at: datetime
    until: datetime
    flow_run_id: str | None = None
    lifted_by: str = ""
    lifted_at: datetime | None = None
    lift_reason: str = ""

    def holds(self, now: datetime | None = None) -> bool:
        return not self.lifted_by and (now or datetime.now(timezone.utc)) < self.until

    def describe(self, now: datetime | None = None) -> str:
        if self.lifted_by:
            return (f"phase {self.phase}: lifted by {self.lifted_by} at {self.lifted_at:%Y-%m-%d %H:%M} UTC "
                    f"({self.lift_reason}); it was locked by {self.incident}")
        if self.holds(now):
            left = self.until - (now or datetime.now(timezone.utc))
            return (f"phase {self.phase}: LOCKED until {self.until:%Y-%m-%d %H:%M} UTC ({left.days} d "
                    f"{left.seconds // 3600} h left) after the rollback {self.incident} (A.4: no immediate retry)")
        return f"phase {self.phase}: free since {self.until:%Y-%m-%d %H:%M} UTC (locked by {self.incident})"


def _name(repo: Path, cfg: RollbackConfig, phase: str) -> str:
    return f"retry_lock_{target_key(repo, cfg)}_{normalize_phase(phase).lower()}"


def read_retry_lock(repo: Path, cfg: RollbackConfig, phase: str) -> RetryLock | None:
    value = Variable.get(_name(repo, cfg, phase), default=None)
    return RetryLock.model_validate(json.loads(value) if isinstance(value, str) else value) if value else None


def _write(repo: Path, cfg: RollbackConfig, lock: RetryLock) -> None:
    put_variable(_name(repo, cfg, lock.phase), lock.model_dump_json(), tags=["actor-rollback", "retry-lock"])


def set_retry_lock(repo: Path, cfg: RollbackConfig, phase: str, incident: str, flow_run_id: str | None,
                   now: datetime | None = None) -> RetryLock:
    now = now or datetime.now(timezone.utc)
    key = normalize_phase(phase)
    lock = RetryLock(phase=key, incident=incident, locked_at=now, flow_run_id=flow_run_id,
                     until=now + timedelta(days=cfg.after.retry_lock_days))
    current = read_retry_lock(repo, cfg, key)
    if current is not None and current.incident == incident and not current.lifted_by:
        return current  # the incident's lock counts from its first change: a rerun does not extend it
    if current is not None and current.holds() and current.until >= lock.until:
        return current  # an earlier, longer lock stands
    _write(repo, cfg, lock)
    return lock


def lift_retry_lock(repo: Path, cfg: RollbackConfig, phase: str, approver: str, reason: str,
                    now: datetime | None = None) -> RetryLock:
    lock = read_retry_lock(repo, cfg, phase)
    if lock is None:
        raise LookupError(f"phase {normalize_phase(phase)} of {repo} has no retry lock")
    if not approver.strip() or not reason.strip():
        raise ValueError("lifting the retry lock early needs --approver NAME and --reason WHY (both recorded)")
    lifted = lock.model_copy(update={"lifted_by": approver.strip(), "lift_reason": reason.strip(),
                                     "lifted_at": now or datetime.now(timezone.utc)})
    _write(repo, cfg, lifted)
    return lifted
