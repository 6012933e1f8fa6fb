"""Incidents on highly available Prefect while part of it fails (#19): all real processes on loopback.

The topology of bench/_ha.py (PostgreSQL, Redis, two API servers behind HAProxy, the background
services once) with two process workers on one work pool, and one `actor-rollback serve --pool
… --name t<N>` per target (its deployments registered on the pool, its alert receiver). Each
target is a sample workspace whose bare remote stamps every push. Incidents (kind service-down,
phase 1: Critical; each target's config makes Critical revert too — flag, revert, push, deploy —
and the deploy takes 3 s) arrive spread over `--spread` seconds, round-robin over the targets.
While they arrive one API server is SIGKILLed; separately, the worker running a rollback is
SIGKILLed with its flow run in the middle of it.

Checked and reported: every incident has exactly one triage run, which ends; each target has
exactly one flag-off commit, one revert of the phase-1 merge and one push that carried them; the
killed run is marked Crashed (the zombie automation, the background services) and started again
(the receiver's retry of crashed triage runs) and converges; every triage and rollback run has
its audit artifacts. Figures: time to mitigation (incident posted → the push carrying the flag
off on the remote) p50/p95, runs retried.

    .venv/bin/python bench/ha_faults.py              # --incidents 20 --targets 5 --spread 60
"""

from __future__ import annotations

import argparse
import contextvars
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from _ha import BIN, free_port, postgres, start_ha_prefect  # noqa: E402  (bench/ is on the path: a script's folder)
from _services import stamp_pushes  # noqa: E402
from _timing import percentile  # noqa: E402

TOKEN = "ha-bench-token-0123456789abcdef0123"
POOL = "rollback-process"


@dataclass
class Target:
    name: str
    repo: Path
    origin: Path
    pushes: Path
    deploys: Path
    config: Path
    port: int = 0
    serve: subprocess.Popen | None = None
    start: str = ""  # the remote's head before the incidents

    def new_commits(self) -> list[str]:
        return git(self.origin, "log", "--format=%s", f"{self.start}..main").splitlines()

    def push_times(self) -> list[float]:
        return [float(line) for line in self.pushes.read_text().split()] if self.pushes.exists() else []


@dataclass
class Outcome:
    incidents: dict[str, dict] = field(default_factory=dict)  # id → target, posted at, triage runs, states
    targets: dict[str, dict] = field(default_factory=dict)
    killed_api_at: float = 0.0
    killed_worker_run: str = ""
    crashed_detected_after: float | None = None
    runs_retried: int = 0
    problems: list[str] = field(default_factory=list)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def target_config(base: str, deploys: Path) -> str:
    replacements = {
        'critical_steps = ["flag", "push", "deploy"]': 'critical_steps = ["flag", "gating", "find-merge", "revert", "push", "deploy"]',
        "critical_in_process = true ": "critical_in_process = false ",
        'command = "./scripts/deploy.sh production --version={version}"':
            f"command = \"bash -c 'sleep 3; echo {{version}} >> {deploys}'\"",
        "crashed_after_seconds = 90 ": "crashed_after_seconds = 45 ",
        "retry_lost_every_seconds = 10 ": "retry_lost_every_seconds = 2 ",
        "pending_lost_after_seconds = 120 ": "pending_lost_after_seconds = 30 ",
    }
    for old, new in replacements.items():
        assert old in base, old
        base = base.replace(old, new)
    return base


def make_targets(where: Path, count: int) -> list[Target]:
    from actor_rollback.deployments.sample import create_sample_workspace
    from actor_rollback.runbook import SHIPPED_CONFIG

    targets = []
    for n in range(count):
        sample = create_sample_workspace(where / f"t{n}")
        pushes = where / f"t{n}-pushes.log"
        stamp_pushes(sample.origin, pushes)
        deploys = where / f"t{n}-deploys.log"
        config = where / f"t{n}-rollback.toml"
        config.write_text(target_config(SHIPPED_CONFIG.read_text(), deploys))
        targets.append(Target(f"t{n}", sample.repo, sample.origin, pushes, deploys, config,
                              start=git(sample.origin, "rev-parse", "main")))
    return targets


def start_serves(ha, targets: list[Target], where: Path) -> None:
    import httpx

    for t in targets:
        t.port = free_port()
        env = {**os.environ, **ha.env, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN,
               "XDG_STATE_HOME": str(where / f"{t.name}-state")}
        t.serve = subprocess.Popen([str(BIN / "actor-rollback"), "serve", "--repo", str(t.repo), "--config",
                                    str(t.config), "--pool", POOL, "--name", t.name, "--receiver-port", str(t.port)],
                                   env=env, stdout=open(where / f"{t.name}-serve.log", "w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
    for t in targets:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{t.port}/healthz", timeout=1).status_code == 200 and \
                        "deployments on work pool" in (where / f"{t.name}-serve.log").read_text():
                    break
            except httpx.HTTPError:
                pass
            if t.serve.poll() is not None:
                raise SystemExit(f"serve of {t.name} exited: {(where / f'{t.name}-serve.log').read_text()[-2000:]}")
            time.sleep(0.3)
        else:
            raise SystemExit(f"serve of {t.name} did not come up")


def post_incident(t: Target, incident_id: str) -> None:
    import httpx

    body = {"id": incident_id, "phase": "1", "kind": "service-down", "source": "manual",
            "summary": f"actor system down on {t.name}", "evidence": ["ha bench"]}
    for _attempt in range(20):
        try:
            r = httpx.post(f"http://127.0.0.1:{t.port}/incidents", json=body, timeout=5,
                           headers={"Authorization": f"Bearer {TOKEN}"})
            if r.status_code == 202:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the receiver of {t.name} did not accept {incident_id}")


def flow_runs(name_prefix: str = "", flow: str = "") -> list:
    """Flow runs named `name_prefix`…, or every run of the flow `flow` (a deployment run is named when it starts)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name_prefix)) if name_prefix else None,
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])) if flow else None, limit=200)


def kill_worker_mid_rollback(ha, deadline: float) -> tuple[str, float]:
    """SIGKILL the worker whose flow run has been in a rollback for a second (its flag off committed, the deploy
    going), and that run's process with it: a lost host. Returns the triage run's name and when."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, FlowRunFilterState, \
        FlowRunFilterStateType

    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            running = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(like_="rollback-phase-1-"),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["RUNNING"]))), limit=10)
            for rollback in running:
                if not rollback.start_time or time.time() - rollback.start_time.timestamp() < 1.0:
                    continue
                parent = client.read_flow_run(client.read_task_run(rollback.parent_task_run_id).flow_run_id)
                pid = int((parent.infrastructure_pid or ":0").rsplit(":", 1)[-1] or 0)
                for worker in ha.workers:
                    if worker.poll() is None and pid and _descends_from(pid, worker.pid):
                        os.kill(pid, signal.SIGKILL)
                        ha.kill(worker)
                        return parent.name, time.time()
        time.sleep(0.2)
    raise SystemExit("no rollback was seen running on a worker to kill")


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def run_scenario(where: Path, incidents: int = 20, targets: int = 5, spread: float = 60, kill_api: bool = True,
                 kill_worker: bool = True, settle_timeout: float = 420, log=print) -> Outcome:
    outcome = Outcome()
    with postgres() as database_url:
        t_start = time.monotonic()
        ha = start_ha_prefect(where / "ha", database_url)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        try:
            with temporary_settings({PREFECT_API_URL: ha.api_url}):  # this process's clients: the load balancer too
                run_faults(ha, outcome, where, incidents, targets, spread, kill_api, kill_worker, settle_timeout, log,
                           t_start)
        finally:
            ha.stop()
    return outcome


def run_faults(ha, outcome: Outcome, where: Path, incidents: int, targets: int, spread: float, kill_api: bool,
               kill_worker: bool, settle_timeout: float, log, t_start: float) -> None:
    ts: list[Target] = []
    try:
        log(f"HA Prefect up in {time.monotonic() - t_start:.1f} s: {ha.api_url}")
        worker_env = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
                      "PREFECT_LOGGING_LEVEL": "INFO"}
        ts.extend(make_targets(where, targets))
        start_serves(ha, ts, where)
        for n in range(2):
            ha.start_worker(POOL, f"worker-{n + 1}", worker_env)
        log(f"{len(ts)} targets served on pool {POOL}, 2 workers")
        ids = [(ts[i % len(ts)], f"INC-HA-{i + 1:03d}") for i in range(incidents)]
        killer = None
        if kill_worker:  # watches from the first incident on, beside the posting, in a copy of this context:
            # the same Prefect settings (the load balancer's URL)
            killer = ThreadPoolExecutor(1).submit(contextvars.copy_context().run, kill_worker_mid_rollback, ha,
                                                  time.monotonic() + 180)
        gap = spread / max(1, len(ids) - 1) if len(ids) > 1 else 0
        kill_api_after = len(ids) // 4
        first_post = time.time()
        for i, (t, incident) in enumerate(ids):
            posted = time.time()
            post_incident(t, incident)
            outcome.incidents[incident] = {"target": t.name, "posted": posted}
            if kill_api and i == kill_api_after:
                ha.kill(ha.servers[0])
                outcome.killed_api_at = time.time() - first_post
                log(f"SIGKILL API server 1 at +{outcome.killed_api_at:.1f} s (after incident {i + 1})")
            if i < len(ids) - 1:
                time.sleep(max(0.0, posted + gap - time.time()))
        log(f"{len(ids)} incidents posted in {time.time() - first_post:.1f} s")
        if killer is not None:
            outcome.killed_worker_run, killed_at = killer.result()
            log(f"SIGKILL the worker running {outcome.killed_worker_run} (and that run's process)")
        settle(outcome, ids, settle_timeout, log)
        if kill_worker:
            crashed_at = crash_time(outcome.killed_worker_run)
            outcome.crashed_detected_after = crashed_at - killed_at if crashed_at else None
        audit(outcome, ts, ids)
    finally:
        for t in ts:
            if t.serve and t.serve.poll() is None:
                os.killpg(t.serve.pid, signal.SIGTERM)
                try:
                    t.serve.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(t.serve.pid, signal.SIGKILL)


def settle(outcome: Outcome, ids: list, timeout: float, log) -> None:
    """Until every triage run has ended (after any retry; Paused = waiting for a person) and each incident has one."""
    from prefect.client.orchestration import get_client

    from actor_rollback.runbook.config import load_config

    retries = load_config(None).runner.lost_run_retries  # the targets' configs keep the shipped value

    def ended(run, client) -> bool:
        if not run.state or not (run.state.is_final() or run.state.is_paused()):
            return False
        if run.state.is_crashed():  # final only once the retrier has put it back as often as it may
            return sum(1 for s in client.read_flow_run_states(run.id) if s.name == "AwaitingRetry") >= retries
        return True

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = flow_runs(flow="triage")
        named = {run.name for run in runs}
        with get_client(sync_client=True) as client:
            if all(ended(run, client) for run in runs) and all(f"triage-{i}" in named for _, i in ids):
                return
        time.sleep(2)
    with get_client(sync_client=True) as client:
        left = [f"{run.name} {run.state.name}" for run in flow_runs(flow="triage") if not ended(run, client)]
    outcome.problems.append(f"not every triage run ended within {timeout:.0f} s: {', '.join(left)}")
    log(outcome.problems[-1])


def crash_time(run_name: str) -> float | None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for run in flow_runs(run_name):
            for state in client.read_flow_run_states(run.id):
                if state.type.value == "CRASHED":
                    return state.timestamp.timestamp()
    return None


def audit(outcome: Outcome, ts: list[Target], ids: list) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    runs = flow_runs(flow="triage")
    rollbacks = flow_runs("rollback-phase-1-INC-HA-")
    with get_client(sync_client=True) as client:
        for _target, incident in ids:
            mine = [r for r in runs if r.name == f"triage-{incident}"]
            entry = outcome.incidents[incident]
            entry["triage_runs"] = len(mine)
            entry["states"] = [r.state.name for r in mine if r.state]
            entry["run_counts"] = [r.run_count for r in mine]
            if len(mine) == 1 and mine[0].state:  # ended (or Paused for a person): the incident is handled
                entry["handled_after"] = mine[0].state.timestamp.timestamp() - entry["posted"]
            retried = sum(1 for r in mine for st in client.read_flow_run_states(r.id) if st.name == "AwaitingRetry")
            entry["retried"] = retried
            outcome.runs_retried += retried
            if len(mine) != 1:
                outcome.problems.append(f"{incident}: {len(mine)} triage runs, not one")
            key = f"triage-{incident.lower()}"
            if not client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_=key))):
                outcome.problems.append(f"{incident}: no triage record (artifact {key})")
            if not any(r.name == f"rollback-phase-1-{incident}" for r in rollbacks):
                outcome.problems.append(f"{incident}: no rollback run")
    for t in ts:
        subjects = t.new_commits()
        flag_commits = [s for s in subjects if s.startswith("rollback(") and " P1.1 " in s]
        reverts = [s for s in subjects if s.startswith("Revert ")]
        pushes = t.push_times()
        first_posted = min(outcome.incidents[i]["posted"] for tt, i in ids if tt is t)
        outcome.targets[t.name] = {"flag_commits": len(flag_commits), "reverts": len(reverts), "pushes": len(pushes),
                                   "mitigated_after": (pushes[0] - first_posted) if pushes else None,
                                   "deploys": len(t.deploys.read_text().split()) if t.deploys.exists() else 0}
        if len(flag_commits) != 1 or len(reverts) != 1 or len(pushes) != 1:
            outcome.problems.append(f"{t.name}: {len(flag_commits)} flag commits, {len(reverts)} reverts, "
                                    f"{len(pushes)} pushes (one each expected)")


def figures(outcome: Outcome) -> dict:
    ttm = [v["mitigated_after"] for v in outcome.targets.values() if v["mitigated_after"] is not None]
    handled = [v["handled_after"] for v in outcome.incidents.values() if "handled_after" in v]
    return {"handled_p50": percentile(handled, 50) if handled else None,
            "handled_p95": percentile(handled, 95) if handled else None,
            "handled_max": max(handled) if handled else None,"incidents": len(outcome.incidents), "targets": len(outcome.targets), "mitigated": len(ttm),
            "one_triage_each": sum(1 for v in outcome.incidents.values() if v.get("triage_runs") == 1),
            "retried": outcome.runs_retried, "p50": percentile(ttm, 50) if ttm else None,
            "p95": percentile(ttm, 95) if ttm else None, "max": max(ttm) if ttm else None}


def report(runs: dict[str, Outcome]) -> str:
    lines = ["| run | incidents | targets rolled back | one triage run each | runs retried | time to mitigation "
             "(a target's first incident → flag off pushed) p50 | p95 | max | incident → its triage run ended p50 | p95 "
             "| max |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, outcome in runs.items():
        f = figures(outcome)
        cells = " | ".join(f"{f[k]:.2f} s" if f[k] is not None else "-"
                           for k in ("p50", "p95", "max", "handled_p50", "handled_p95", "handled_max"))
        lines.append(f"| {label} | {f['incidents']} | {f['mitigated']}/{f['targets']} | "
                     f"{f['one_triage_each']}/{f['incidents']} | {f['retried']} | {cells} |")
    for label, outcome in runs.items():
        lines.append(f"\n{label}:")
        if outcome.killed_api_at:
            lines.append(f"- API server 1 SIGKILLed at +{outcome.killed_api_at:.1f} s")
        if outcome.killed_worker_run:
            lines.append(f"- worker killed in the middle of a rollback: {outcome.killed_worker_run}, marked Crashed "
                         + (f"{outcome.crashed_detected_after:.1f} s later" if outcome.crashed_detected_after else "-"))
        for name, v in outcome.targets.items():
            lines.append(f"- {name}: {v['flag_commits']} flag commit, {v['reverts']} revert, {v['pushes']} push, "
                         f"{v['deploys']} deploys" + (f", mitigated {v['mitigated_after']:.2f} s after its first incident"
                                                      if v["mitigated_after"] is not None else ", NOT mitigated"))
        lines.append("- problems: " + ("; ".join(outcome.problems) if outcome.problems else "none"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--spread", type=float, default=60, help="seconds over which the incidents arrive")
    parser.add_argument("--no-baseline", action="store_true", help="skip the same scenario without faults")
    args = parser.parse_args()
    started = time.monotonic()
    runs: dict[str, Outcome] = {}
    for label, faults in ([] if args.no_baseline else [("baseline: no fault", False)]) + [("faults", True)]:
        where = Path(tempfile.mkdtemp(prefix="actor-rollback-ha-"))
        runs[label] = run_scenario(where, args.incidents, args.targets, args.spread, kill_api=faults,
                                   kill_worker=faults)
        (where / "outcome.json").write_text(json.dumps(runs[label].__dict__, default=str, indent=1))
        print(f"{label}: logs in {where}", flush=True)
    print(report(runs))
    if len(runs) == 2:
        base, fault = (figures(o) for o in runs.values())
        if base["p50"] and fault["p50"]:
            print(f"\nratio faults / baseline, time to mitigation: p50 {fault['p50'] / base['p50']:.2f}, "
                  f"p95 {fault['p95'] / base['p95']:.2f}")
    print(f"\nmachine: {os.cpu_count()} cores; whole bench {time.monotonic() - started:.0f} s")
    sys.exit(1 if any(o.problems for o in runs.values()) else 0)


if __name__ == "__main__":
    main()
