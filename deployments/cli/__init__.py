"""`actor-rollback`: plan and run the runbook's phase rollbacks, triage incidents, the after-rollback duties,
serve it all, and the demo — one module per command group, sharing `common` (the console, the options, and the
one mapping of errors to exit codes).

Exit codes: 0 done, 1 a step or a check failed, 2 bad input (usage, config, repository state), 3 a person is
needed (approval pending, a check unverified), 4 busy (another rollback of the same target holds it; nothing
was done). With --json exactly one JSON object goes to stdout; logs go to stderr.
"""

from __future__ import annotations

from deployments.cli import after, incidents, rollback, service
from deployments.cli.common import app
from deployments.cli.rollback import run_phase_flow
from deployments.compare_cli import compare_benchmarks

COMMAND_GROUPS = (rollback, incidents, after, service)  # importing each registers its commands on `app`
__all__ = ["app", "main", "run_phase_flow", "COMMAND_GROUPS"]

app.command("compare-benchmarks")(compare_benchmarks)  # deployments/compare_cli.py: light enough to start fast


def main() -> None:
    app()
