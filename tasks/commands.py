"""Commands the runbook runs in the workspace: the CI check (P1.2c) and the deploy script (P1.3a)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.runbook.model import StepResult
from actor_rollback.runbook.phases import deploy_version
from actor_rollback.runbook.secrets import redact_text, secret, secret_values
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import DECLARED, declare_step

TAIL_LINES = 15


@dataclass
class CommandOutcome:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    tail: list[str]
    seconds: float


# The tool's own secrets never reach the commands it runs (a `cargo test` of the target, a deploy script), and
# their values never stay in evidence: besides these, the names the config points at (see secret_names).
ALWAYS_SECRET = ("ACTOR_ROLLBACK_RECEIVER_TOKEN", "GITHUB_TOKEN", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")


def secret_names(cfg) -> set[str]:
    """The environment variables holding the tool's secrets: the ways in's (the receiver's token and HMAC secret,
    the issue tracker's token) and each step's, as its declaration names them."""
    from actor_rollback.tasks import registry  # noqa: F401  (every step's declaration, whoever asks first)

    names = {*ALWAYS_SECRET, cfg.receiver.token_env, cfg.receiver.hmac_secret_env, cfg.triage.issue_token_env,
             *(name for d in DECLARED.values() if d.secrets for name in d.secrets(cfg))}
    return {name for name in names if name}


def redact(lines: list[str], names) -> list[str]:
    """Lines with the values of these secrets (from NAME or NAME_FILE, 6 characters or more) replaced, in their
    encoded forms too (base64, URL-encoding, hex: runbook/secrets.py)."""
    values = secret_values(names)
    return [redact_text(line, values) for line in lines] if values else lines


def command_environment(secrets, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a configured command gets, built here: this process's, without the tool's secrets (nor
    the files naming them), without any Prefect setting (its API URL, key and auth string are the runner's, not
    the target's), with ACTOR_ROLLBACK_PYTHON and the step's own variables."""
    hidden = {*secrets, *ALWAYS_SECRET}
    hidden |= {f"{name}_FILE" for name in hidden}
    kept = {k: v for k, v in os.environ.items() if k not in hidden and not k.startswith("PREFECT_")}
    return {**kept, "ACTOR_ROLLBACK_PYTHON": sys.executable, **(extra or {})}


STOPPING = threading.Event()  # set by SIGTERM (see end_commands_on_sigterm): running commands end at once


def end_commands_on_sigterm() -> None:
    """Chain a SIGTERM handler in front of the current one (Prefect's, in a flow run): it first ends the commands
    this process runs — a step's thread otherwise keeps the process alive for the whole command (a 30 s grace
    spent waiting on a deploy) — then lets the previous handler do what it does."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "ends_commands", False) or _is_prefects_bridge(previous):
        # Prefect's own handler stays the installed one: its control channel acknowledges an operator's cancel
        # only while it is (else the cancel ends Crashed). It raises in the main thread, whose command `_wait`
        # then ends; commands in other threads end when they see the main thread gone.
        return

    def handler(signum, frame):
        STOPPING.set()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    handler.ends_commands = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, handler)


def _is_prefects_bridge(handler) -> bool:
    try:
        from prefect.utilities.engine import _prefect_sigterm_handler
    except ImportError:  # another Prefect version: judge by where the handler comes from
        return getattr(handler, "__module__", "").startswith("prefect.")
    return handler is _prefect_sigterm_handler


SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
OUTPUT_KEPT_BYTES = 256 * 1024  # the tail of a command's output that is read back (the last lines are kept)


def _program_missing(argv: list[str], cwd: Path, env: dict[str, str]) -> BadInputError | None:
    program = argv[0]
    path = (cwd / program) if "/" in program else shutil.which(program, path=env.get("PATH"))
    if path is None or not Path(path).exists():
        return BadInputError(f"{program}: no such program or script in {cwd}; check the command in the config")
    if not os.access(path, os.X_OK) or Path(path).is_dir():
        return BadInputError(f"{program}: not executable (chmod +x {program})")
    return None


def run_bounded(command: str, cwd: Path, timeout: float, env: dict[str, str] | None = None,
                keep_lines: int = TAIL_LINES, secrets=ALWAYS_SECRET, record: Path | None = None) -> CommandOutcome:
    """Run without a shell under a supervising parent (tasks/supervise.py) that ends the command's whole tree —
    `setsid` descendants included — at the timeout, on SIGTERM, or when this process dies; success is the exit
    status (a service the command leaves running does not keep it waiting). The command's environment has none of
    `secrets` (variable names), and the tail of its output has their values redacted. With `record` (a file per
    target and command), it never starts beside a live earlier run of the same command: it waits for that one to
    end, at most `timeout`."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise BadInputError(f"the command {command!r} cannot be read ({exc}); fix its quoting in the config") from None
    if not argv:
        raise BadInputError("an empty command is configured; set it in the config")
    full_env = command_environment(secrets, env)
    missing = _program_missing(argv, Path(cwd), full_env)
    if missing is not None:
        raise missing
    start = time.monotonic()
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        _wait_for_earlier(record, start + timeout, argv)
        start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="actor-rollback-command-") as scratch:
        output_file = Path(scratch) / "output"
        supervisor = subprocess.Popen(
            [sys.executable, "-I", SUPERVISOR, str(os.getpid()), str(output_file), str(record or "-"), "--", *argv],
            cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env=full_env)
        code, stopping = _wait(supervisor, start + timeout)
        tail = _tail(output_file, keep_lines)
    if stopping:
        raise StepError(f"`{shlex.join(argv)}` was stopped: this process is shutting down (SIGTERM); "
                        "rerun the step") from None
    tail = redact(tail, {*secrets, *ALWAYS_SECRET})
    return CommandOutcome(argv, code, tail, time.monotonic() - start)


def command_record(ctx: StepContext, kind: str, command: str) -> Path:
    """Where a target's running `command` is named (one file per target and command, shared by its work trees)."""
    from actor_rollback.tasks.work_tree import git_common_dir

    digest = hashlib.sha256(command.encode()).hexdigest()[:12]
    return git_common_dir(ctx.clone or ctx.repo) / "actor-rollback" / "running" / f"{kind}-{digest}.json"


def _proc_stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def live_record(record: Path) -> dict | None:
    """The earlier run named by `record` (tasks/supervise.py writes it) while its supervisor or its command is alive;
    None once both have ended. What the command left running in the background (a deploy's service) is its
    result, not a run in progress."""
    try:
        body = json.loads(record.read_text())
        named = [(int(body["supervisor"]), int(body["supervisor_start"])),
                 (int(body["command"]), int(body["command_start"]))]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for pid, started in named:
        fields = _proc_stat(pid)
        if fields and int(fields[19]) == started and fields[0] != b"Z":
            return body
    return None


def _wait_for_earlier(record: Path, deadline: float, argv: list[str]) -> None:
    """Never start beside a live earlier run of the same command (its runner was SIGKILLed with the supervisor)."""
    while (earlier := live_record(record)) is not None:
        if time.monotonic() >= deadline or STOPPING.is_set():
            group = earlier.get("process_group")
            raise StepError(
                f"`{shlex.join(argv)}` from an earlier run (pid {earlier.get('command')}, started "
                f"{earlier.get('since')}) is still running; this run does not start another beside it. Let it "
                f"finish, or end it (kill -TERM {earlier.get('command')}; kill -TERM -- -{group} also ends all it "
                f"started), then rerun")
        time.sleep(0.2)
    record.unlink(missing_ok=True)


def _wait(supervisor: subprocess.Popen, deadline: float) -> tuple[int | None, bool]:
    """(exit status, or None when killed at the deadline; whether this process is shutting down). Whatever
    interrupts the wait — Prefect's TerminationSignal on a cancel, a KeyboardInterrupt — ends the command first."""
    try:
        while True:  # in slices, so that a process shutting down (SIGTERM) ends its commands instead of waiting
            try:
                return supervisor.wait(timeout=max(0.01, min(0.2, deadline - time.monotonic()))), False
            except subprocess.TimeoutExpired:
                stopping = STOPPING.is_set() or not threading.main_thread().is_alive()
                if time.monotonic() < deadline and not stopping:
                    continue
                _end(supervisor)
                return None, stopping
    except BaseException:
        _end(supervisor)
        raise


def _end(supervisor: subprocess.Popen) -> None:
    if supervisor.poll() is not None:
        return
    supervisor.terminate()  # it kills the command's whole tree, then exits
    try:
        supervisor.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()


def _tail(output_file: Path, keep_lines: int) -> list[str]:
    try:
        with output_file.open("rb") as out:
            out.seek(max(0, output_file.stat().st_size - OUTPUT_KEPT_BYTES))
            text = out.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line.strip()][-keep_lines:]


def require_program(command: str, cwd: Path, key: str) -> str:
    """A plan's check: the command's program exists (a script in the workspace, or on PATH); else bad input."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # an unbalanced quote
        raise BadInputError(f"{key} = {command!r} cannot be read as a command ({exc}); fix its quoting") from None
    if not argv:
        raise BadInputError(f"{key} is empty; set the command in the config")
    program = argv[0]
    if "/" in program:
        path = cwd / program
        if not path.exists():
            raise BadInputError(f"{program} does not exist in {cwd}; fix {key} in the config")
        if not os.access(path, os.X_OK):
            raise BadInputError(f"{program} is not executable (chmod +x {program}); {key}")
    elif shutil.which(program) is None:
        raise BadInputError(f"{program}: not found on PATH; install it or fix {key} in the config")
    return program


def _result(ctx: StepContext, name: str, outcome: CommandOutcome, timeout: float, what: str) -> StepResult:
    shown = redact([shlex.join(outcome.argv)], secret_names(ctx.cfg))[0]
    if outcome.returncode is None:
        raise StepError(f"{what}: `{shown}` did not finish within {timeout:g} s and was killed; "
                        + _last_output(outcome.tail[-3:]))
    if outcome.returncode != 0:
        raise StepError(f"{what}: `{shown}` exited {outcome.returncode}; " + _last_output(outcome.tail[-5:]))
    return StepResult(id=ctx.step_id, name=name, status="done",
                      evidence=[f"$ {shown}  (exit 0, {outcome.seconds:.1f} s)", *outcome.tail])


def _last_output(lines: list[str]) -> str:
    return "last output: " + " | ".join(lines) if lines else "it printed nothing (stdout and stderr were read)"


def _describe_ci(spec, cfg, phase) -> list[str]:
    if cfg.ci.check == "command":
        again = " — not again for a commit whose CI already passed here" if cfg.ci.remember_pass else ""
        return [f"{cfg.ci.command}  (timeout {cfg.ci.timeout_seconds} s){again}"]
    return [f"poll {cfg.ci.status_url} until the combined status is success"]


@declare_step("ci", describe=_describe_ci, secrets=lambda cfg: [cfg.ci.token_env], evidence={"P1.C5": None})
def check_ci(ctx: StepContext) -> StepResult:
    """P1.2c / P1.C5: CI is green — the configured command passes, or the forge's status says success."""
    ci = ctx.cfg.ci
    if ci.check == "commit-status":
        return wait_for_commit_status(ctx)
    if ctx.dry_run:
        require_program(ci.command, ctx.repo, "ci.command")
        from actor_rollback.tasks.cargo_resolve import cargo_resolves

        return StepResult(id=ctx.step_id, name="ci", status="planned",
                          evidence=[ci.command, cargo_resolves(ctx.repo, "ci.command")])
    commit = _clean_head(ctx) if ci.remember_pass else None
    passed = _ci_pass_record(ctx, commit) if commit else None
    if passed is not None and passed.get("command") == ci.command:
        return StepResult(id=ctx.step_id, name="ci", status="already-done", evidence=[
            f"`{ci.command}` passed for {commit[:10]} at {passed.get('at', '?')} (flow run {passed.get('flow_run', '?')}); "
            "not run again for the same commit (ci.remember_pass)"], data={"ci_commit": commit})
    outcome = run_bounded(ci.command, ctx.repo, ci.timeout_seconds, env=ctx.command_env(), secrets=secret_names(ctx.cfg),
                          record=command_record(ctx, "ci", ci.command))
    result = _result(ctx, "ci", outcome, ci.timeout_seconds, "CI check failed")
    if commit and _clean_head(ctx) == commit:  # the tree CI tested is that commit, unchanged
        _record_ci_pass(ctx, commit)
    return result


def _ci_pass_dir(ctx: StepContext) -> Path:
    out = subprocess.run(["git", "rev-parse", "--git-common-dir"], cwd=ctx.repo, capture_output=True, text=True,
                         check=True)
    return (ctx.repo / out.stdout.strip()).resolve() / "actor-rollback" / "ci-pass"


def _clean_head(ctx: StepContext) -> str | None:
    """HEAD's sha when the work tree is exactly HEAD (no tracked change), else None: only then does a CI pass
    belong to a commit."""
    status = subprocess.run(["git", "status", "--porcelain=v1", "--untracked-files=no"], cwd=ctx.repo,
                            capture_output=True, text=True)
    return _head(ctx) if status.returncode == 0 and not status.stdout.strip() else None


def _ci_pass_record(ctx: StepContext, commit: str) -> dict | None:
    try:
        return json.loads((_ci_pass_dir(ctx) / commit).read_text())
    except (OSError, ValueError):
        return None


def _record_ci_pass(ctx: StepContext, commit: str) -> None:
    """This tool's record of a green CI, in the clone's git dir (beside the objects it is about)."""
    from datetime import datetime, timezone

    from prefect.runtime import flow_run

    folder = _ci_pass_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"command": ctx.cfg.ci.command, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "flow_run": str(flow_run.get_id() or ""), "incident": ctx.incident}
    temporary = folder / f".{commit}.tmp"
    temporary.write_text(json.dumps(record))
    temporary.replace(folder / commit)


def wait_for_commit_status(ctx: StepContext) -> StepResult:
    """Poll a GitHub-style combined commit status for the pushed head until success or failure."""
    ci = ctx.cfg.ci
    sha = ctx.facts.get("pushed") or _head(ctx)
    if not ci.status_url:
        raise BadInputError("ci.check = 'commit-status' needs ci.status_url (with {sha}) in the config")
    url = ci.status_url.format(sha=sha)
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="ci", status="planned", evidence=[f"poll {url}"])
    token = secret(ci.token_env)
    headers = {"Accept": "application/vnd.github+json", **({"Authorization": f"Bearer {token}"} if token else {})}
    deadline = time.monotonic() + ci.timeout_seconds
    seen: list[str] = []
    while True:
        try:
            response = httpx.get(url, headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            state, detail = "unreachable", str(exc)
        else:
            if response.status_code in (401, 403, 404):
                raise BadInputError(f"{url} answered {response.status_code}: check ci.status_url and the token in "
                                    f"${ci.token_env}")
            if response.status_code >= 500:
                state, detail = "unreachable", f"HTTP {response.status_code}"
            else:
                body = response.json()
                state = body.get("state", "unknown")
                detail = ", ".join(f"{s.get('context')}={s.get('state')}" for s in body.get("statuses", []))
        if not seen or seen[-1] != f"{state}: {detail}":
            seen.append(f"{state}: {detail}")
        if state == "success":
            return StepResult(id=ctx.step_id, name="ci", status="done",
                              evidence=[f"GET {url}", *seen[-5:]], data={"ci_state": "success"})
        if state in ("failure", "error"):
            raise StepError(f"CI is {state} for {sha[:10]} ({detail}); see {url}")
        if time.monotonic() > deadline:
            raise StepError(f"CI did not finish within {ci.timeout_seconds} s for {sha[:10]} (last: {seen[-1]})")
        time.sleep(ci.poll_seconds)


def _head(ctx: StepContext) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ctx.repo, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@declare_step("build", describe=lambda spec, cfg, phase: [cfg.phase(phase).tokio_build])
def build_pinned_to_tokio(ctx: StepContext) -> StepResult:
    """P3.1: the build pinned to the Tokio runtime."""
    command = ctx.phase_cfg.tokio_build
    if not command:
        raise BadInputError(f"phase {ctx.phase} has no tokio_build command in the config")
    if ctx.dry_run:
        from actor_rollback.tasks.cargo_manifest import undeclared_features

        require_program(command, ctx.repo, f"phases.{ctx.phase}.tokio_build")
        missing = undeclared_features(ctx.repo, command)
        if missing:
            raise BadInputError(f"{command}: {'; '.join(missing)}; fix phases.{ctx.phase}.tokio_build")
        from actor_rollback.tasks.cargo_resolve import cargo_resolves

        return StepResult(id=ctx.step_id, name="build", status="planned",
                          evidence=[command, cargo_resolves(ctx.repo, f"phases.{ctx.phase}.tokio_build")])
    outcome = run_bounded(command, ctx.repo, ctx.cfg.ci.timeout_seconds, env=ctx.command_env(), secrets=secret_names(ctx.cfg),
                          record=command_record(ctx, "build", command))
    return _result(ctx, "build", outcome, ctx.cfg.ci.timeout_seconds, "the Tokio-pinned build failed")


def _describe_deploy(spec, cfg, phase) -> list[str]:
    version = deploy_version(cfg, phase)
    order = ("only after CI is green (P1.2c); a failed CI stops the run before this" if cfg.ci.gate_deploy else
             "RISK: at the same time as CI (ci.gate_deploy = false) — a failing CI does not stop this deploy")
    if cfg.deploy.backend == "command":
        return [cfg.deploy.command.format(version=version) + f"  (timeout {cfg.deploy.timeout_seconds} s)", order]
    k = cfg.deploy.kubernetes
    return [f"patch deployment/{k.deployment} -n {k.namespace}: container {k.container} image "
            f"{k.image.format(version=version)}; wait for the rollout ({k.rollout_timeout_seconds} s)", order]


@declare_step("deploy", describe=_describe_deploy, milestone="deploy done")
def deploy_with_command(ctx: StepContext) -> StepResult:
    """P1.3a: the runbook's deploy script with the rollback version (or the Kubernetes backend)."""
    deploy = ctx.cfg.deploy
    command = deploy.command.format(version=deploy_version(ctx.cfg, ctx.phase))
    if ctx.dry_run and deploy.backend == "command":
        require_program(command, ctx.repo, "deploy.command")
        return StepResult(id=ctx.step_id, name="deploy", status="planned", evidence=[command])
    if deploy.backend == "kubernetes":
        from actor_rollback.tasks.kubernetes_deploy import deploy_to_kubernetes

        return deploy_to_kubernetes(ctx)
    require_program(command, ctx.repo, "deploy.command")  # the plan's check: an empty or missing one is bad input
    outcome = run_bounded(command, ctx.repo, deploy.timeout_seconds, env=ctx.command_env(), secrets=secret_names(ctx.cfg),
                          record=command_record(ctx, "deploy", command))
    return _result(ctx, "deploy", outcome, deploy.timeout_seconds, "deploy failed")
