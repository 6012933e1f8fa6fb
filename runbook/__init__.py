"""The runbook's domain: no I/O beyond reading its own configuration."""

from importlib.resources import files

# The shipped rollback.toml (the runbook's values), package data of this package: an installed wheel
# has it too. Here, not in runbook.config, so that a light command (compare-benchmarks) finds it
# without building the configuration's models.
SHIPPED_CONFIG = files("actor_rollback.runbook").joinpath("rollback.toml")
