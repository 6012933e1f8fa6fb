"""`actor-rollback`: plan and run the runbook's phase rollbacks, triage incidents, the after-rollback duties,
serve it all, and the demo — one module per command group, sharing `common` (the console, the options, and the
one mapping of errors to exit codes).

Exit codes: 0 done, 1 a step or a check failed, 2 bad input (usage, config, repository state), 3 a person is
needed (approval pending, a check unverified), 4 busy (another rollback of the same target holds it; nothing
was done). With --json exactly one JSON object goes to stdout; logs go to stderr.
"""

from __future__ import annotations

from actor_rollback.deployments.cli import after, drill, incidents, rollback, server, service
from actor_rollback.deployments.cli.common import app
from actor_rollback.deployments.cli.rollback import run_phase_flow
from actor_rollback.deployments.compare_cli import compare_benchmarks

COMMAND_GROUPS = (rollback, incidents, after, service, server, drill)  # importing each registers its commands on `app`
__all__ = ["app", "main", "run_phase_flow", "COMMAND_GROUPS"]

app.command("compare-benchmarks")(compare_benchmarks)  # deployments/compare_cli.py: light enough to start fast


# The commands that talk to Prefect: without PREFECT_API_URL they use the local server (deployments/local_server.py),
# started on first use — `plan`, `init`, `compare-benchmarks` and `server` never start it.
NEEDS_PREFECT = frozenset({"run", "triage", "approve", "ack", "postmortem", "reintroduce", "audit", "lock", "demo", "drill"})


def main() -> None:
    import os
    import sys

    # Prefect's ephemeral server (ACTOR_ROLLBACK_LOCAL_SERVER=off, or the local one could not start) gets 20 s to
    # start by default: a machine busy with builds or an incident's other runs missed it, and the command died.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
    if command in NEEDS_PREFECT and not {"--help", "-h"} & set(sys.argv):
        from actor_rollback.deployments.local_server import ensure

        ensure(say=lambda line: print(line, file=sys.stderr, flush=True))
    app()
