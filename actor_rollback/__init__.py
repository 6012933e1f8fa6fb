"""actor-rollback, installed under one name.

The repository keeps its folders at the top (`runbook/`, `tasks/`, `flows/`, `deployments/`); pyproject.toml maps
each under this package (`actor_rollback.tasks` is `tasks/`), so that an environment holding actor-rollback gains
one top-level name and none that shadows another project's `tasks` or `flows`. Import them by that name."""
