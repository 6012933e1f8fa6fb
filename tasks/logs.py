"""P1.3c: count error lines in a bounded window of the service's logs — never a `-f` that does not end.

Sources: the pods of the Deployment (label selector) through the official kubernetes client,
a log file, or a command that prints recent lines. Each source gets the last `tail_lines`
lines; lines matching `error_pattern` are counted per source against `max_error_lines` and
shown as evidence. An empty log is reported as unverified: silence proves nothing.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

from actor_rollback.runbook.errors import BadInputError, TransientError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.attempts import with_attempts
from actor_rollback.tasks.commands import require_program, run_bounded, secret_names
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.kubernetes_deploy import kubernetes_clients

SHOWN_LINES = 5


def tail_file(path: Path, lines: int) -> list[str]:
    if not path.exists():
        raise BadInputError(f"the log file {path} does not exist; fix logs.file in the config")
    with path.open(errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=lines)]


def tail_pods(ctx: StepContext) -> dict[str, list[str]]:
    from kubernetes.client.exceptions import ApiException

    k = ctx.cfg.deploy.kubernetes
    core, _ = kubernetes_clients()
    try:
        pods = core.list_namespaced_pod(k.namespace, label_selector=k.label_selector).items
        return {pod.metadata.name: core.read_namespaced_pod_log(
            pod.metadata.name, k.namespace, container=k.container, tail_lines=ctx.cfg.logs.tail_lines,
            _request_timeout=ctx.cfg.logs.timeout_seconds).splitlines() for pod in pods}
    except ApiException as exc:
        if exc.status and exc.status >= 500:
            raise TransientError(f"Kubernetes API {exc.status} reading logs: {exc.reason}") from None
        raise BadInputError(f"Kubernetes API refused the log read ({exc.status} {exc.reason}); check the "
                            "namespace, label selector and RBAC (pods: list, pods/log: get)") from None


def read_recent_logs(ctx: StepContext) -> dict[str, list[str]]:
    logs = ctx.cfg.logs
    if logs.source == "kubernetes":
        return tail_pods(ctx)
    if logs.source == "file":
        if not logs.file:
            raise BadInputError("logs.source = 'file' needs logs.file in the config")
        path = Path(logs.file) if Path(logs.file).is_absolute() else ctx.repo / logs.file
        return {str(path): tail_file(path, logs.tail_lines)}
    if not logs.command:
        raise BadInputError("logs.source = 'command' needs logs.command in the config")
    outcome = run_bounded(logs.command, ctx.repo, logs.timeout_seconds, env=ctx.command_env(), keep_lines=logs.tail_lines,
                          secrets=secret_names(ctx.cfg))
    if outcome.returncode != 0:
        raise BadInputError(f"the log command exited {outcome.returncode}: " + " | ".join(outcome.tail[-3:]))
    return {logs.command: outcome.tail}


def probe_logs(ctx: StepContext) -> StepResult:
    """A plan's read-only look at the log source: the pods, the file or the command's program are there —
    else `needs-human`, as the run would end (logs it cannot read are unverified)."""
    logs = ctx.cfg.logs
    rule = (f"last {logs.tail_lines} lines from {logs.source}; lines matching {logs.error_pattern!r} "
            f"must be <= {logs.max_error_lines}")
    try:
        found = _log_source_there(ctx)
    except (BadInputError, TransientError) as exc:
        return StepResult(id=ctx.step_id, name="logs", status="needs-human", evidence=[
            f"the logs could not be read now: {exc}; the run would leave them unverified", rule],
            data={"logs": "unverified"})
    return StepResult(id=ctx.step_id, name="logs", status="planned", evidence=[rule, found])


def _log_source_there(ctx: StepContext) -> str:
    logs = ctx.cfg.logs
    if logs.source == "kubernetes":
        from kubernetes.client.exceptions import ApiException

        k = ctx.cfg.deploy.kubernetes
        core, _ = kubernetes_clients()
        try:
            pods = core.list_namespaced_pod(k.namespace, label_selector=k.label_selector,
                                            _request_timeout=10).items
        except ApiException as exc:
            raise BadInputError(f"Kubernetes API refused listing pods ({exc.status} {exc.reason}); check "
                                "deploy.kubernetes.namespace and RBAC (pods: list, pods/log: get)") from None
        except Exception as exc:  # connection refused, DNS, TLS: the API is not reachable from here
            raise TransientError(f"the Kubernetes API is not reachable ({type(exc).__name__}: {exc})") from None
        if not pods:
            raise BadInputError(f"no pods match {k.label_selector!r} in namespace {k.namespace}; "
                                "check deploy.kubernetes.label_selector")
        return f"{len(pods)} pod(s) match {k.label_selector!r} in {k.namespace}"
    if logs.source == "file":
        if not logs.file:
            raise BadInputError("logs.source = 'file' needs logs.file in the config")
        path = Path(logs.file) if Path(logs.file).is_absolute() else ctx.repo / logs.file
        if not path.is_file():
            raise BadInputError(f"the log file {path} does not exist; fix logs.file in the config")
        return f"{path}: {path.stat().st_size} bytes"
    if not logs.command:
        raise BadInputError("logs.source = 'command' needs logs.command in the config")
    require_program(logs.command, ctx.repo, "logs.command")
    return f"runs: {logs.command}"


@declare_step("logs", describe=lambda spec, cfg, phase: [
    f"last {cfg.logs.tail_lines} lines of pods {cfg.deploy.kubernetes.label_selector}; "
    f"lines matching {cfg.logs.error_pattern!r} must be <= {cfg.logs.max_error_lines}"])
def check_logs(ctx: StepContext) -> StepResult:
    """P1.3c: per source, the error lines of the recent window against the threshold."""
    logs = ctx.cfg.logs
    if ctx.dry_run:
        return probe_logs(ctx)
    pattern = re.compile(logs.error_pattern)
    try:
        sources = with_attempts(lambda: read_recent_logs(ctx), 3, TransientError)
    except (BadInputError, TransientError) as exc:  # no evidence is not a verdict: a person looks
        return StepResult(id=ctx.step_id, name="logs", status="needs-human", evidence=[
            f"the logs could not be read: {exc}"], data={"logs": "unverified"})
    if not sources or not any(sources.values()):
        return StepResult(id=ctx.step_id, name="logs", status="needs-human", evidence=[
            f"no log lines from {logs.source} ({', '.join(sources) or 'no pods'}): silence proves nothing; "
            "look at the logs by hand"], data={"logs": "unverified"})
    evidence, over = [], []
    for source, lines in sources.items():
        errors = [line for line in lines if pattern.search(line)]
        evidence.append(f"{source}: {len(errors)} error line(s) in the last {len(lines)} (max {logs.max_error_lines})")
        evidence += [f"  {line[:300]}" for line in errors[-SHOWN_LINES:]]
        if len(errors) > logs.max_error_lines:
            over.append(source)
    status = "failed" if over else "done"
    return StepResult(id=ctx.step_id, name="logs", status=status, evidence=evidence,
                      failure="fault" if over else None, data={"logs": "fail" if over else "pass"})
