"""`actor-rollback serve`: the deployments and the alert receiver, served from this process.

- `rollback-phase-<P>/manual`: one manual-trigger deployment per phase (the Prefect UI's form);
- `triage/alert`: what the alert receiver starts (and a form for a person to file an incident);
- `verify/scheduled`: the scheduled verification (`verification.cron`);
- `drill/weekly-<P>`: a rehearsal of each phase in `drill.phases` on `drill.cron` (no schedule until it is set);
- the alert receiver (deployments/receiver.py) on `receiver.host:port`, when its token is set.

Each `rollback-phase-<P>/manual` deployment shows its parameters as a form in the Prefect UI
(reason required; incident id, dry run, steps to skip, merge override). The runner polls every
second (PREFECT_RUNNER_POLL_FREQUENCY, set before Prefect loads) so a run starts within about
two seconds of the click, instead of the default ten.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Callable


def prepare_runner_environment(heartbeat_seconds: int = 30) -> None:
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(heartbeat_seconds))  # runs say they are alive
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def build_deployments(repo: Path, config: Path | None = None, cfg=None, name: str | None = None,
                      module_entrypoints: bool = False):
    """The deployments of one target. `name` replaces every deployment's name (one set per target on a shared
    server: `triage/<name>`, `rollback-phase-1/<name>`, …); `module_entrypoints` makes each entrypoint the
    flow's module path (`actor_rollback.flows.triage.triage`), which a worker imports from the installed package."""
    from prefect.deployments.runner import EntrypointType

    from actor_rollback.flows.phases import PHASE_FLOWS
    from actor_rollback.runbook.config import config_parameter, effective_config

    from actor_rollback.flows.postmortem import postmortem, postmortem_deadlines
    from actor_rollback.flows.reintroduce import reintroduce
    from actor_rollback.flows.triage import triage
    from actor_rollback.flows.verify import verify

    cfg = cfg or effective_config(config, repo)
    common = {"repo": str(repo.resolve()), "config": config_parameter(config)}
    how = {"entrypoint_type": EntrypointType.MODULE_PATH} if module_entrypoints else {}

    def named(default: str) -> dict:
        return {"name": name or default, **how}

    deployments = [
        triage.to_deployment(**named("alert"), parameters=common, tags=["actor-rollback", "triage"],
                             description="Triage an incident by the runbook's severity matrix (F.1–F.4); "
                                         "the alert receiver starts runs of this deployment."),
        verify.to_deployment(**named("scheduled"), parameters=common, cron=cfg.verification.cron,
                             tags=["actor-rollback", "verify"],
                             description=f"Metrics and benchmarks of phase {cfg.verification.phase} against their "
                                         "baselines; a regression starts triage."),
        postmortem.to_deployment(**named("manual"), parameters=common, tags=["actor-rollback", "postmortem"],
                                 description="Draft the postmortem and the ADR stub of a rollback (A.1, A.2, A.5)."),
        postmortem_deadlines.to_deployment(**named("scheduled"), parameters=common, cron=cfg.after.postmortem_cron,
                                           tags=["actor-rollback", "postmortem"],
                                           description="Remind the owners of postmortem drafts still unfilled near "
                                                       f"their {cfg.after.postmortem_hours}-hour deadline."),
        reintroduce.to_deployment(**named("manual"), parameters=common, tags=["actor-rollback", "reintroduce"],
                                  description="A.6: after the retry lock and with the ADR written, re-apply a phase "
                                              "behind its flag through a canary; a regressing canary rolls back."),
    ]
    for phase, flow in PHASE_FLOWS.items():
        deployments.append(flow.to_deployment(
            **named("manual"),
            parameters=common,
            tags=["actor-rollback", f"phase:{phase}", "manual"],
            description=f"Phase {phase} rollback — {cfg.phase(phase).title}. Fill in the reason; "
                        "a dry run shows the plan without changing anything.",
        ))
    from actor_rollback.flows.drill import drill
    from actor_rollback.flows.outcome import DRILL_TAG

    for phase in cfg.drill.phases:  # drill/weekly-<P>: on [drill] cron, or no schedule (off) until one is set
        deployments.append(drill.to_deployment(
            name=f"{name}-weekly-{phase.lower()}" if name else f"weekly-{phase.lower()}", **how,
            parameters={**common, "phase": phase, "triggered_by": "drill/weekly schedule"},
            cron=cfg.drill.cron or None, tags=["actor-rollback", DRILL_TAG, f"phase:{phase}"],
            description=f"Rehearse the phase {phase} rollback on a sandbox copy of the repository and its remote "
                        "(nothing real is touched); a failed or over-budget drill tells the tech lead."))
    return deployments


def start_receiver(repo: Path, config: Path | None = None, port: int | None = None, host: str | None = None,
                   full=None, deployment: str | None = None, work: bool = True):
    """The alert receiver beside the deployments; it starts runs of `deployment` (`receiver.deployment`), and
    Critical incidents' triage in this process when `receiver.critical_in_process`, High ones' in a pool of their own
    when `receiver.high_in_process`."""
    import logging

    from actor_rollback.deployments.receiver import AlertReceiver, WarmTriage, deployment_starter
    from actor_rollback.runbook.config import config_parameter, effective_config

    full = full or effective_config(config, repo)
    cfg = full.receiver
    warm = WarmTriage(str(repo.resolve()), config_parameter(config), flag_off_first=cfg.critical_flag_off_first) \
        if cfg.critical_in_process else None
    warm_high = WarmTriage(str(repo.resolve()), config_parameter(config)) if cfg.high_in_process else None
    logging.getLogger("actor_rollback.receiver").setLevel(logging.INFO)  # accepted, refused, started: in serve's log
    return AlertReceiver(cfg, deployment_starter(deployment or cfg.deployment, {}), host=host, port=port,
                         critical_starter=warm, high_starter=warm_high, severity=full.severity).start(work=work)


def serve_rollbacks(repo: Path, config: Path | None = None, limit: int = 4, receiver_port: int | None = None,
                    with_receiver: bool = True, receiver_host: str | None = None, pool: str | None = None,
                    name: str | None = None) -> None:
    """Serve the deployments from this process (Prefect's runner), or — with `pool` — register them on that
    process work pool for its workers (any number, on any host) and run only the receiver here."""
    prepare_runner_environment()

    def stop_now(signum, frame):  # until Prefect's runner installs its own handler: stop through `finally`
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop_now)
    from actor_rollback.deployments.automations import ensure_outcome_automation, ensure_zombie_automation
    from actor_rollback.runbook.config import effective_config

    cfg = effective_config(config, repo)  # once, here at the edge; the runs resolve theirs by the same rule
    triage_deployment = f"triage/{name}" if name else cfg.receiver.deployment
    # The receiver listens first, before Prefect's flows are loaded (about 1.4 s): a restarted serve takes alerts
    # again half a second after it starts, and a Critical's flag-off first needs no Prefect at all.
    receiver = (start_receiver(repo, config, receiver_port, receiver_host, cfg, deployment=triage_deployment,
                               work=False) if with_receiver else None)
    try:  # the receiver takes alerts into its spool from now on, whether Prefect answers yet or not
        cancel_runs_at_once()
        deployments = build_deployments(repo, config, cfg, name=name, module_entrypoints=bool(pool))
        if receiver is not None:
            receiver.start_work()  # the flows are loaded: the intake's triage starts from here
        wait_for_prefect()
    except BaseException:
        if receiver is not None:
            receiver.stop()
        raise
    if pool:
        register_on_pool(deployments, pool)
    from actor_rollback.deployments.lost_runs import LostRunRetrier

    retrier = LostRunRetrier(triage_deployment, cfg.runner.retry_lost_every_seconds, cfg.runner.lost_run_retries,
                             cfg.runner.pending_lost_after_seconds,
                             cfg.runner.lost_run_max_age_minutes * 60,
                             spool=receiver.spool if receiver is not None else None).start()  # lost runs run again
    from actor_rollback.deployments.person_waits import PersonWaits

    from actor_rollback.tasks.host_lock import target_name

    watch = PersonWaits(cfg, target=target_name(repo, cfg)).start()  # runs waiting for people have no process: their clocks and buttons are kept here
    # runs of a runner (or worker) killed with them end Crashed, not Running
    until_prefect_takes("the zombie automation", lambda: ensure_zombie_automation(cfg))
    for line in until_prefect_takes("the outcome automation", lambda: ensure_outcome_automation(cfg)):
        print(line, flush=True)  # failed / needs-human rollbacks tell the tech lead
    if receiver is not None:
        print(f"alert receiver: {receiver.url}/alerts/alertmanager, /alerts/grafana, /incidents, /healthz", flush=True)
    try:
        if pool:
            print(f"{len(deployments)} deployments on work pool {pool}: start its workers with "
                  f"`prefect worker start --pool {pool}`", flush=True)
            _wait_for_stop()
        else:
            serve_deployments(deployments, limit)
    finally:
        # SIGTERM: Prefect's runner stops on its own; then the receiver stops accepting and hands back what it
        # holds. A warm run still going was handed back and marked Crashed: end now, within Kubernetes' grace.
        # One budget for all of it (serve exits within 10 s): the watches are told first, joined last.
        stopped_at = time.monotonic()
        retrier.stop(timeout=0)
        watch.stop(timeout=0)
        handed = receiver.stop(timeout=3, grace=3) if receiver is not None else []
        for helper in (retrier, watch):
            helper.stop(timeout=7 - (time.monotonic() - stopped_at))
        if receiver is not None:
            if handed:
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=2)
                os._exit(0)


def serve_deployments(deployments: list, limit: int) -> None:
    """Prefect's `serve`, but a deployment the server refuses for a moment (a 503 from a busy database, as when
    every serve of a host restarts at once) is registered again, not the end of serve."""
    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    # not paused on shutdown (Prefect's default): a call per deployment, one after the other, in the SIGTERM's budget
    # (slow on a busy server), and it would pause what another serve of the same target (HA) still serves; a
    # schedule that comes due while no serve runs waits as Late and runs when one is back
    runner = Runner(pause_on_shutdown=False, limit=limit)
    for deployment in deployments:
        until_prefect_takes(f"deployment {deployment.name}", lambda d=deployment: runner.add_deployment(d))
    print(f"Your deployments are being served and polling for scheduled runs ({len(deployments)}: "
          + ", ".join(f"{d.flow_name}/{d.name}" for d in deployments) + ")", flush=True)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        print("serve: stopping", flush=True)


def until_prefect_takes(what: str, call: Callable[[], Any], most_seconds: float = 30.0) -> Any:
    """`call`, again while Prefect answers 5xx or cannot be reached (0.5 s doubling, at most `most_seconds`
    between tries, said each time); any other error is raised — a refusal is not waited out."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    delay = 0.5
    while True:
        try:
            return call()
        except (PrefectHTTPStatusError, httpx.TransportError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", 0)
            if isinstance(exc, PrefectHTTPStatusError) and status < 500:
                raise
            print(f"Prefect did not take {what} ({status or type(exc).__name__}); trying again in {delay:.1f} s",
                  flush=True)
            time.sleep(delay)
            delay = min(most_seconds, delay * 2)


def cancel_runs_at_once() -> None:
    """Prefect's runner, stopping, cancels its runs one after the other — each: the cancel intent, SIGTERM, the
    wait for its exit, the Cancelled state; four runs deploying took serve 14 s to stop (bench/serve_sigterm.py).
    This cancels them all at once, each by the very same steps (Kubernetes' grace is 30 s; serve's aim, 10 s).
    Prefect's private class: without it, its own sequential way stays."""
    import asyncio

    try:
        from prefect.runner._cancellation_manager import CancellationManager
    except ImportError:
        return
    if getattr(CancellationManager.cancel_all, "at_once", False) or not hasattr(CancellationManager, "cancel"):
        return

    async def cancel_all(self, state_msg: str = "Runner is shutting down.") -> None:
        async def one(flow_run_id) -> None:
            handle = self._process_manager.get(flow_run_id)
            if handle is None:
                return
            try:
                flow_run = await asyncio.wait_for(self._client.read_flow_run(flow_run_id), 2)
                await asyncio.wait_for(self.cancel(flow_run, state_msg=state_msg), CANCEL_BUDGET_SECONDS)
            except asyncio.TimeoutError:  # its process did not end in time: killed; the run is Crashed
                _kill_late(handle)
                await _say_crashed(self._client, flow_run_id, state_msg)
            except Exception:
                self._logger.exception("Exception while cancelling flow run '%s'", flow_run_id)

        await asyncio.gather(*(one(flow_run_id) for flow_run_id in self._process_manager.flow_run_ids()))

    cancel_all.at_once = True  # type: ignore[attr-defined]
    CancellationManager.cancel_all = cancel_all


CANCEL_BUDGET_SECONDS = 6.0  # a run's cancel at serve's stop, at most; then its process group is killed


def _kill_late(handle) -> None:
    try:
        handle.hard_kill()
    except (ProcessLookupError, OSError):
        pass


async def _say_crashed(client, flow_run_id, state_msg: str) -> None:
    """The run of a process killed at serve's stop: Crashed (what the lost-run retrier and a person rerun)."""
    import asyncio

    from prefect.states import Crashed

    message = (f"{state_msg} Its process did not end within {CANCEL_BUDGET_SECONDS:g} s and was killed; "
               "rerun the incident (its steps converge)")
    try:
        await asyncio.wait_for(client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True), 2)
    except Exception:  # the zombie automation marks it Crashed later
        pass


def wait_for_prefect(most_seconds: float = 30.0) -> None:
    """Until the Prefect API answers: said once, then every time the wait grows (1 s doubling, at most
    `most_seconds`). A serve started while Prefect is down keeps its receiver taking alerts meanwhile, and sets
    its deployments and automations up when Prefect is back; SIGTERM still ends it at once."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    delay, said = 1.0, 0.0
    while True:
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
        if problem is None:
            if said:
                print(f"Prefect at {PREFECT_API_URL.value()} answers again: setting up", flush=True)
            return
        if delay > said:
            print(f"Prefect at {PREFECT_API_URL.value()} does not answer ({type(problem).__name__}); alerts are kept "
                  f"in the intake spool; trying again in {delay:.0f} s", flush=True)
            said = delay
        time.sleep(delay)
        delay = min(most_seconds, delay * 2)


def _wait_for_stop() -> None:
    import threading

    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()


def register_on_pool(deployments, pool: str) -> None:
    """Apply the deployments to a process work pool, creating the pool when it does not exist yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            except ObjectAlreadyExists:  # another receiver host made it meanwhile
                pass
    for deployment in deployments:
        deployment.apply(work_pool_name=pool)
