"""What every step receives: the target, the configuration, and who asked for what."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from actor_rollback.runbook.config import PhaseConfig, RollbackConfig


@dataclass(frozen=True)
class Approval:
    """A person's go-ahead for the last resort (P4.3): who, and the branch name typed back."""

    approver: str
    typed_branch: str
    comment: str = ""


@dataclass
class StepContext:
    repo: Path
    cfg: RollbackConfig
    phase: str
    incident: str
    reason: str
    dry_run: bool = False
    step_id: str = ""
    merge_override: str = ""
    facts: dict[str, str] = field(default_factory=dict)  # what earlier steps established (merge SHA, …)
    approval: Approval | None = None  # P4.3 only
    clone: Path | None = None  # the configured clone, while `repo` is the run's own work tree (tasks/work_tree.py)
    work_branch: str = ""  # that work tree's branch

    @property
    def phase_cfg(self) -> PhaseConfig:
        return self.cfg.phase(self.phase)

    def for_step(self, step_id: str) -> StepContext:
        return StepContext(**{**self.__dict__, "step_id": step_id})

    def cargo_target_dir(self) -> str | None:
        """Builds in a run's own work tree share the clone's target folder (the dependencies are not compiled again
        per incident) unless the environment names one."""
        if os.environ.get("CARGO_TARGET_DIR"):
            return os.environ["CARGO_TARGET_DIR"]
        return str(self.clone / "target") if self.clone and self.clone != self.repo else None

    def command_env(self) -> dict[str, str]:
        """What the commands run in the target (CI, deploy, logs, benches) get on top of the tool's environment."""
        target = self.cargo_target_dir()
        return {"CARGO_TARGET_DIR": target} if target else {}

    def commit_message(self, summary: str) -> str:
        """A rollback commit: what, why, and trailers that let reruns and audits find it."""
        return (
            f"rollback({self.incident}): {self.step_id} {summary}\n\n"
            f"Reason: {self.reason}\n\n"
            f"Rollback-Incident: {self.incident}\n"
            f"Runbook-Step: {self.step_id}\n"
        )


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def step_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task (its lines land in the run's log), else a plain one."""
    if in_prefect_run():
        from prefect import get_run_logger

        return get_run_logger()
    return logging.getLogger("actor_rollback")
