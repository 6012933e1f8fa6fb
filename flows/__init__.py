"""The rollback, triage, verification and after-rollback flows.

Importing the package makes this process's Prefect client retry a busy server's 503 at once
(flows/busy_retry.py): every process that runs these flows — serve, the CLI, a worker's flow
run, the tests — has it.
"""

from actor_rollback.flows.busy_retry import install as _install_busy_retry

_install_busy_retry()
