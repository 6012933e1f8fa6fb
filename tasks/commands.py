"""Commands the runbook runs in the workspace: the CI check (P1.2c) and the deploy script (P1.3a)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from runbook.errors import BadInputError, StepError
from runbook.model import StepResult
from runbook.phases import deploy_version
from tasks.context import StepContext

TAIL_LINES = 15


@dataclass
class CommandOutcome:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    tail: list[str]
    seconds: float


def run_bounded(command: str, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> CommandOutcome:
    """Run without a shell, kill the whole process group at the timeout, keep the output's tail."""
    argv = shlex.split(command)
    if not argv:
        raise BadInputError("an empty command is configured; set it in the config")
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace", start_new_session=True, env={**os.environ, **(env or {})},
        )
    except FileNotFoundError:
        raise BadInputError(f"{argv[0]}: no such program or script in {cwd}; check the command in the config") from None
    except PermissionError:
        raise BadInputError(f"{argv[0]}: not executable (chmod +x {argv[0]})") from None
    try:
        output, _ = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        code = None
    tail = [line for line in (output or "").splitlines() if line.strip()][-TAIL_LINES:]
    return CommandOutcome(argv, code, tail, time.monotonic() - start)


def _result(ctx: StepContext, name: str, outcome: CommandOutcome, timeout: float, what: str) -> StepResult:
    shown = shlex.join(outcome.argv)
    if outcome.returncode is None:
        raise StepError(f"{what}: `{shown}` did not finish within {timeout:g} s and was killed; last output: "
                        + " | ".join(outcome.tail[-3:]))
    if outcome.returncode != 0:
        raise StepError(f"{what}: `{shown}` exited {outcome.returncode}; last output: " + " | ".join(outcome.tail[-5:]))
    return StepResult(id=ctx.step_id, name=name, status="done",
                      evidence=[f"$ {shown}  (exit 0, {outcome.seconds:.1f} s)", *outcome.tail])


def check_ci(ctx: StepContext) -> StepResult:
    """P1.2c / P1.C5: CI is green — here, the configured command passes in the workspace."""
    ci = ctx.cfg.ci
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="ci", status="planned", evidence=[ci.command])
    if ci.check != "command":
        return StepResult(id=ctx.step_id, name="ci", status="needs-human", evidence=[
            f"ci.check = {ci.check!r} is not automated yet (issue #3): check {ci.status_url} by hand"])
    outcome = run_bounded(ci.command, ctx.repo, ci.timeout_seconds)
    return _result(ctx, "ci", outcome, ci.timeout_seconds, "CI check failed")


def deploy_with_command(ctx: StepContext) -> StepResult:
    """P1.3a: the runbook's deploy script with the rollback version."""
    deploy = ctx.cfg.deploy
    command = deploy.command.format(version=deploy_version(ctx.cfg, ctx.phase))
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="deploy", status="planned", evidence=[command])
    if deploy.backend != "command":
        return StepResult(id=ctx.step_id, name="deploy", status="needs-human", evidence=[
            "the kubernetes deploy backend is not automated yet (issue #5): deploy by hand"])
    script = shlex.split(command)[0]
    if script.startswith(("./", "../")) and not (ctx.repo / script).exists():
        raise BadInputError(f"the deploy script {script} does not exist in {ctx.repo}; fix deploy.command in the config")
    outcome = run_bounded(command, ctx.repo, deploy.timeout_seconds)
    return _result(ctx, "deploy", outcome, deploy.timeout_seconds, "deploy failed")
