"""The runbook's domain: no I/O beyond reading its own configuration."""

from pathlib import Path

# The shipped rollback.toml (the runbook's values); here, not in runbook.config, so that a light
# command (compare-benchmarks) finds it without building the configuration's models.
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "rollback.toml"
