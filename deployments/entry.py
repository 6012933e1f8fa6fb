"""The `actor-rollback` command: `compare-benchmarks` starts without loading the rest of the CLI (no Prefect,
no pydantic), so on thousands of benchmarks it finishes like a plain script; everything else is deployments/cli/ (a module per command group).

The process ends as soon as its exit handlers have run (Prefect's log and event workers drained, logging flushed,
standard streams flushed): the interpreter's own teardown of the thousands of modules and objects Prefect loads
is skipped — it cost 0.3–1.5 s of every command, after its output, for nothing the command had to do.
"""

from __future__ import annotations

import atexit
import os
import sys

_status = {"code": 0}


def main() -> None:
    atexit.register(_end_without_teardown)  # registered before anything else: it runs after every other handler
    try:
        if sys.argv[1:2] == ["compare-benchmarks"]:
            from actor_rollback.deployments.compare_cli import app

            app()
        else:
            from actor_rollback.deployments.cli import main as cli

            cli()
    except SystemExit as exc:
        _status["code"] = exit_status(exc.code)
        raise
    except KeyboardInterrupt:
        _status["code"] = 130
        raise
    except BaseException:  # the interpreter prints the traceback first, then runs the exit handlers
        _status["code"] = 1
        raise


def exit_status(code: object) -> int:
    """What the interpreter makes of SystemExit(code): None is 0, a number itself, anything else printed and 1."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _end_without_teardown() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream: nothing more can be said
            pass
    os._exit(_status["code"])


if __name__ == "__main__":
    main()
