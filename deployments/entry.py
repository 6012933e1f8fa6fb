"""The `actor-rollback` command: `compare-benchmarks` starts without loading the rest of the CLI (no Prefect,
no pydantic), so on thousands of benchmarks it finishes like a plain script; everything else is deployments/cli/ (a module per command group)."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["compare-benchmarks"]:
        from deployments.compare_cli import app

        app()
    else:
        from deployments.cli import main as cli

        cli()


if __name__ == "__main__":
    main()
