"""`actor-rollback serve`: one manual-trigger deployment per phase, served from this process.

Each `rollback-phase-<P>/manual` deployment shows its parameters as a form in the Prefect UI
(reason required; incident id, dry run, steps to skip, merge override). The runner polls every
second (PREFECT_RUNNER_POLL_FREQUENCY, set before Prefect loads) so a run starts within about
two seconds of the click, instead of the default ten.
"""

from __future__ import annotations

import os
from pathlib import Path


def prepare_runner_environment() -> None:
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def build_deployments(repo: Path, config: Path | None = None):
    from flows.phases import PHASE_FLOWS
    from runbook.config import load_config

    cfg = load_config(config)
    deployments = []
    for phase, flow in PHASE_FLOWS.items():
        deployments.append(flow.to_deployment(
            name="manual",
            parameters={"repo": str(repo.resolve()), "config": str(config.resolve()) if config else ""},
            tags=["actor-rollback", f"phase:{phase}", "manual"],
            description=f"Phase {phase} rollback — {cfg.phase(phase).title}. Fill in the reason; "
                        "a dry run shows the plan without changing anything.",
        ))
    return deployments


def serve_rollbacks(repo: Path, config: Path | None = None, limit: int = 4) -> None:
    prepare_runner_environment()
    from prefect import serve

    serve(*build_deployments(repo, config), limit=limit, print_starting_message=True)
