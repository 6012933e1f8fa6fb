"""Running it as a service and showing it: `serve` (deployments + alert receiver), `automations`, `demo`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from actor_rollback.deployments.cli.common import (ConfigOpt, app, bad_input, config_for, config_path, out, print_report,
                                    progress_shown, quiet_prefect, refusing_bad_input)
from actor_rollback.deployments.cli.rollback import run_phase_flow
from actor_rollback.runbook.model import EXIT_CODES
from actor_rollback.runbook.secrets import SecretError, secret


@app.command()
@refusing_bad_input()
def serve(
    repo: Annotated[Path, typer.Option("--repo", help="The workspace clone the deployments roll back")],
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Runs at once (each target still takes one at a time)")] = 4,
    receiver: Annotated[bool, typer.Option("--receiver/--no-receiver", help="Run the alert receiver beside the deployments")] = True,
    receiver_port: Annotated[Optional[int], typer.Option("--receiver-port", help="Override receiver.port")] = None,
    receiver_host: Annotated[Optional[str], typer.Option("--receiver-host", help="Override receiver.host (0.0.0.0 in a container)")] = None,
    pool: Annotated[Optional[str], typer.Option("--pool", help="Register the deployments on this process work pool "
                                                "for `prefect worker start --pool …` workers instead of running them here")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name every deployment of this target so (triage/NAME, "
                                                "rollback-phase-1/NAME, …): one set per target on a shared server")] = None,
) -> None:
    """Serve the deployments (rollback-phase-<P>/manual, triage/alert, verify/scheduled) and the alert receiver."""
    from actor_rollback.deployments.serve import prepare_runner_environment
    from actor_rollback.tasks.git_repo import open_workspace

    cfg = config_for(config, repo)
    open_workspace(repo)
    try:
        token = secret(cfg.receiver.token_env) if receiver else "-"
    except SecretError as exc:
        raise bad_input(str(exc), False) from None
    if not token:
        raise bad_input(f"the alert receiver needs its bearer token: put a long random string in a file and set "
                        f"{cfg.receiver.token_env}_FILE to its path (or export {cfg.receiver.token_env}); the same "
                        "goes into Alertmanager's http_config. Or serve with --no-receiver", False)
    if not os.environ.get("PREFECT_API_URL"):
        raise bad_input("serve needs a Prefect server that people can reach: set PREFECT_API_URL "
                         "(e.g. `prefect server start`, or `make serve` which starts one)", False)
    prepare_runner_environment(cfg.runner.heartbeat_seconds)
    from actor_rollback.deployments.serve import serve_rollbacks

    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise bad_input(f"--name {name!r}: a deployment name of letters, digits, '.', '_' and '-', starting with a "
                        "letter or digit, at most 64 characters (e.g. the target's name: cellex-rs)", False)
    config = config_path(config, repo)
    serve_rollbacks(repo, config, limit, receiver_port, receiver, receiver_host, pool=pool, name=name)


@app.command()
@refusing_bad_input()
def automations(
    repo: Annotated[Optional[Path], typer.Option("--repo", help="The workspace (its rollback.toml, when present)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create or update the shipped automations on PREFECT_API_URL (serve does it too): failed and needs-human
    rollbacks notify runner.outcome_notify; runs whose heartbeats stopped end Crashed."""
    from actor_rollback.deployments.automations import ensure_outcome_automation, ensure_zombie_automation

    cfg = config_for(config, repo)
    if not os.environ.get("PREFECT_API_URL"):
        raise bad_input("automations live on a Prefect server: set PREFECT_API_URL", False)
    lines = ensure_outcome_automation(cfg)
    out.print(f"zombie automation {ensure_zombie_automation(cfg)}: runs whose heartbeats stop end Crashed")
    for line in lines:
        out.print(escape(line))
    raise typer.Exit(0 if not lines[0].startswith("outcome automation NOT") else EXIT_CODES["needs-human"])


@app.command()
@refusing_bad_input(FileExistsError)
def demo(
    dir: Annotated[Optional[Path], typer.Option("--dir", help="Where to create the sample workspace")] = None,
) -> None:
    """Create the sample workspace, deploy its regressed head, roll back Phase 1 end to end, show the recovery."""
    import tempfile

    from actor_rollback.deployments.demo import deploy_regressed, prepare, stop_service, watch
    from actor_rollback.runbook.ids import new_incident_id
    from actor_rollback.tasks.git_repo import open_workspace, run_git

    root = dir or Path(tempfile.mkdtemp(prefix="actor-rollback-demo-"))
    demo_env = prepare(root)
    sample = demo_env.sample
    out.print(f"sample workspace: {sample.repo}\nits remote:       {sample.origin}\nconfig:           {demo_env.config}")
    quiet_prefect(False)
    incident = "demo-" + new_incident_id().removeprefix("inc-")
    try:
        out.print(f"\n[bold]1. Production runs the regressed head[/bold]: {escape(deploy_regressed(demo_env))}")
        before = watch(demo_env)
        out.print(escape("\n".join(line for line in before.evidence if line.startswith(("PASS", "FAIL", "UNVERIFIED")))))
        out.print(f"\n[bold]2. Phase 1 rollback {incident}[/bold] (flag off, revert, push, CI ∥ deploy, monitor ∥ logs)")
        with progress_shown("rolling back…", False):
            report = run_phase_flow("1", sample.repo, "demo: ReadyQueueCoordinator throughput regression", incident,
                                    False, [], [], "", demo_env.config, triggered_by="demo")
        print_report(report, f"Phase 1 rollback {incident}")
        monitor = next((s for s in report.steps if s.name == "monitor"), None)
        if monitor:
            out.print("\n[bold]3. After the rollback[/bold]")
            out.print(escape("\n".join(line for line in monitor.evidence if line.startswith(("PASS", "FAIL", "UNVERIFIED")))))
    finally:
        stop_service(demo_env)
    remote_log = run_git(open_workspace(sample.repo), "log", "--oneline", "-3", "origin/main")
    out.print(f"\nThe remote's main now:\n{escape(remote_log)}")
    where = os.environ.get("PREFECT_API_URL") or "Prefect's ephemeral server (database under PREFECT_HOME, ~/.prefect by default)"
    from actor_rollback.deployments.local_server import read_state

    local = read_state()
    if local and local.get("url") == os.environ.get("PREFECT_API_URL"):
        where = (f"the local Prefect server — its UI {local['url'].removesuffix('/api')} shows it until it stops "
                 "(`actor-rollback server status`); the record stays in " + local["database"])
    out.print(f"\nAudit trail: flow run rollback-phase-1-{incident} ({report.flow_run_id}) on {where}; "
              f"artifacts rollback-phase-1-{incident}-checklist, -steps and -ttm (its time to mitigation).")
    raise typer.Exit(report.exit_code)  # one truth: the demo's exit is its rollback's outcome
