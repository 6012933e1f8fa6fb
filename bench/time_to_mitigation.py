"""Time to mitigation on the Critical path (F.1), all real on loopback.

A Prefect server of its own, `actor-rollback serve` (runner + alert receiver) on a sample
workspace, a post-receive hook on the bare remote that stamps each push, and the sample's deploy
log. Each trial puts the flag back on the remote (a teammate's revert), then:

- webhook trials: the script posts an Alertmanager body (kind service-down) to the receiver;
- gauge trials: the service's metrics endpoint goes away, Prometheus (1 s scrape) fires the repo's
  `ActorServiceDown` rule (`for` set to 0 s), Alertmanager (group_wait 0 s) posts to the receiver.

Measured: until the flag-off commit is on the remote (the hook's stamp) and until the redeploy is
done (the deploy log), and each stage from Prefect's own timestamps: pick-up (webhook → triage
flow running), triage (decision, page, subflow start), flag, push, deploy. Both trigger paths
of the receiver are measured in the same run: `deployment` (a run of triage/alert picked up by
the runner: poll + new process) and `warm` (Critical triage in the serve process).

    .venv/bin/python bench/time_to_mitigation.py [--trials 20] [--gauge-trials 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from _services import free_port, git, postgres, stamp_pushes, start_prefect, stop, wait_for  # noqa: E402
from _timing import percentile  # noqa: E402

TOKEN = "ttm-bench-token-0123456789abcdef"


class Target:
    """The sample workspace, its remote with a push-stamping hook, a teammate clone, and production."""

    def __init__(self, where: Path) -> None:
        from actor_rollback.deployments.sample import create_sample_workspace

        self.sample = create_sample_workspace(where / "sample")
        self.pushes = where / "pushes.log"
        stamp_pushes(self.sample.origin, self.pushes)
        self.teammate = where / "teammate"
        subprocess.run(["git", "clone", "-q", str(self.sample.origin), str(self.teammate)], check=True)
        self.production = where / "production"
        self.port = free_port()

    def push_count(self) -> int:
        return len(self.pushes.read_text().splitlines()) if self.pushes.exists() else 0

    def push_time(self, n: int) -> float:
        return float(self.pushes.read_text().splitlines()[n - 1])

    def deploys(self) -> int:
        log = self.production / "deploys.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def flag_back_on(self) -> None:
        """A teammate reverts the last flag-off commit, so the next trial has the flag to turn off."""
        git(self.teammate, "pull", "-q", "--ff-only")
        default = next(line for line in (self.teammate / "modules" / "actor-core" / "Cargo.toml").read_text().splitlines()
                       if line.startswith("default"))
        if "new-scheduler" in default:
            return
        last = git(self.teammate, "log", "-1", "--format=%H", "--grep=Runbook-Step: P1.1")
        git(self.teammate, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "revert", "--no-edit", last)
        git(self.teammate, "push", "-q", "origin", "HEAD:main")


def config_for(target: Target, where: Path, warm: bool) -> Path:
    from actor_rollback.runbook.config import SHIPPED_CONFIG

    text = SHIPPED_CONFIG.read_text()
    text = text.replace("critical_in_process = true ", f"critical_in_process = {'true' if warm else 'false'} ")
    text = text.replace('default_phase = ""', 'default_phase = "1"')
    path = where / f"rollback-{'warm' if warm else 'deployment'}.toml"
    path.write_text(text)
    return path


def start_serve(target: Target, config: Path, receiver_port: int, log: Path,
                extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, **(extra_env or {}), "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "ACTOR_SERVICE_PORT": str(target.port),
           "ACTOR_DEPLOY_STATE": str(target.production), "PREFECT_LOGGING_LEVEL": "INFO",
           "XDG_STATE_HOME": str(log.parent / f"state-{receiver_port}")}  # the receiver's own spool per trial
    cli = str(Path(sys.executable).parent / "actor-rollback")
    process = subprocess.Popen([cli, "serve", "--repo", str(target.sample.repo), "--config", str(config),
                                "--receiver-port", str(receiver_port)], env=env, stdout=open(log, "w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    import httpx

    def up() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{receiver_port}/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            try:
                return client.read_deployment_by_name("triage/alert").parameters["config"] == str(config)
            except Exception:
                return False

    wait_for(up, 120, "serve to be ready", step=0.5)
    time.sleep(3)  # let the runner settle into its poll loop
    return process


def alert_body(fingerprint: str, started: datetime) -> bytes:
    body = json.loads((ROOT / "tests" / "data" / "alertmanager-v4-firing.json").read_text())
    alert = body["alerts"][0]
    alert["labels"] = {"alertname": "ActorServiceDown", "job": "actor-system", "instance": "bench", "phase": "1"}
    alert["annotations"] = {"summary": "actor-system is down (bench)"}
    alert["fingerprint"] = fingerprint
    alert["startsAt"] = started.isoformat().replace("+00:00", "Z")
    return json.dumps(body).encode()


def stages(incident: str, t0: float) -> dict[str, float]:
    """Prefect's own timestamps for one trial, as seconds since t0."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    def find(name: str):
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        return runs[0] if runs and runs[0].start_time else None

    triage = wait_for(lambda: find(f"triage-{incident}"), 60, "the triage run", step=0.2)
    sub = wait_for(lambda: find(f"rollback-phase-1-{incident}"), 60, "the rollback run", step=0.2)
    with get_client(sync_client=True) as client:
        tasks = {t.name: t for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[sub.id])))}
    out = {"triage running": triage.start_time.timestamp() - t0, "rollback created": sub.created.timestamp() - t0,
           "rollback running": sub.start_time.timestamp() - t0}
    for label, name in (("flag done", "P1.1 disable_feature_flag"), ("push done", "P1.2b push_rollback"),
                        ("deploy done", "P1.3a deploy_with_command")):
        task = tasks.get(name)
        if task and task.end_time:
            out[label] = task.end_time.timestamp() - t0
    return out


def wait_until_final(incident: str) -> None:
    """Until the trial's triage run and its rollback subflow have ended (their teardown included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from actor_rollback.flows.outcome import has_ended

    def ended() -> bool:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(
                any_=[f"triage-{incident}", f"rollback-phase-1-{incident}"])))
        return len(runs) == 2 and all(has_ended(r) for r in runs)

    wait_for(ended, 120, f"the end of {incident}'s runs", step=0.2)


def webhook_trials(target: Target, receiver_port: int, trials: int, mode: str, settle: bool = False) -> list[dict]:
    import httpx

    results = []
    for n in range(trials):
        target.flag_back_on()
        pushes, deploys = target.push_count(), target.deploys()
        started = datetime.now(timezone.utc)
        fingerprint = f"{mode.replace('-', '')}{n:04d}{int(started.timestamp())}"
        body = alert_body(fingerprint, started)
        t0 = time.time()
        answer = httpx.post(f"http://127.0.0.1:{receiver_port}/alerts/alertmanager", content=body,
                            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}, timeout=10)
        assert answer.status_code == 202, answer.text
        incident = answer.json()["accepted"][0]
        wait_for(lambda pushes=pushes: target.push_count() > pushes, 120, "the flag-off push")
        t_push = target.push_time(pushes + 1) - t0
        wait_for(lambda deploys=deploys: target.deploys() > deploys, 120, "the redeploy")
        t_deploy = time.time() - t0
        results.append({"pushed": t_push, "deployed": t_deploy, **stages(incident, t0)})
        got = results[-1]
        print(f"  {mode} trial {n + 1}: pushed {t_push:.2f} s, deployed {t_deploy:.2f} s (triage running "
              f"{got['triage running']:.2f}, rollback created {got['rollback created']:.2f}, running "
              f"{got['rollback running']:.2f})", flush=True)
        if settle:
            wait_until_final(incident)
        time.sleep(1)
    return results


def gauge_trials(target: Target, receiver_port: int, trials: int, where: Path) -> list[dict]:
    """The service's scrape target disappears → Prometheus → Alertmanager → receiver → flag off."""
    import httpx

    am_port, prom_port, exporter_port = free_port(), free_port(), free_port()
    (where / "am.yml").write_text(
        "route:\n  receiver: rb\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: rb\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{receiver_port}/alerts/alertmanager\n        send_resolved: true\n"
        f"        http_config:\n          authorization:\n            credentials: {TOKEN}\n")
    rules = (ROOT / "docker" / "prometheus" / "alert-rules.yml").read_text().replace("for: 1m", "for: 0s")
    (where / "rules.yml").write_text(rules)
    (where / "prom.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n"
        f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n"
        f"scrape_configs:\n  - job_name: actor-system\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n")
    am = subprocess.Popen(["prometheus-alertmanager", f"--config.file={where / 'am.yml'}", f"--storage.path={where / 'am'}",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    prom = subprocess.Popen(["prometheus", f"--config.file={where / 'prom.yml'}", f"--storage.tsdb.path={where / 'prom'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    exporter_code = ("import sys, time; from prometheus_client import start_http_server, Gauge; "
                     "Gauge('actor_bench_up', 'up').set(1); start_http_server(int(sys.argv[1]), addr='127.0.0.1'); "
                     "time.sleep(3600)")
    results = []

    def health() -> dict:
        return httpx.get(f"http://127.0.0.1:{receiver_port}/healthz", timeout=2).json()

    def up_is(value: str) -> bool:
        try:
            result = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": "up"}, timeout=2).json()
        except httpx.HTTPError:
            return False
        return any(r["value"][1] == value for r in result["data"]["result"])

    exporter = subprocess.Popen([sys.executable, "-c", exporter_code, str(exporter_port)], start_new_session=True)
    try:
        for n in range(trials):
            wait_for(lambda: up_is("1"), 60, "Prometheus scraping the exporter", step=0.2)
            target.flag_back_on()
            time.sleep(2)  # the runner's clone and the receiver settle; nothing fires while the exporter is up
            resolved, pushes, deploys = health()["resolved"], target.push_count(), target.deploys()
            t0 = time.time()
            stop(exporter)  # the outage
            wait_for(lambda pushes=pushes: target.push_count() > pushes, 120, "the flag-off push (gauge)")
            t_push = target.push_time(pushes + 1) - t0
            wait_for(lambda deploys=deploys: target.deploys() > deploys, 120, "the redeploy (gauge)")
            t_deploy = time.time() - t0
            results.append({"pushed": t_push, "deployed": t_deploy})
            print(f"  gauge trial {n + 1}: pushed {t_push:.2f} s, deployed {t_deploy:.2f} s", flush=True)
            # back up, and this alert resolved, before the next outage (which is then a new alert)
            exporter = subprocess.Popen([sys.executable, "-c", exporter_code, str(exporter_port)], start_new_session=True)
            wait_for(lambda resolved=resolved: health()["resolved"] > resolved, 90, "the resolved notification", step=0.2)
    finally:
        stop(exporter)
        stop(prom)
        stop(am)
    return results


def report(name: str, results: list[dict]) -> None:
    print(f"\n{name}: {len(results)} trials")
    print("| from the trigger to | p50 | p95 | max |")
    print("|---|---|---|---|")
    for key in ("triage running", "rollback created", "rollback running", "flag done", "pushed", "deployed"):
        values = [r[key] for r in results if key in r]
        if values:
            print(f"| {key} | {percentile(values, 50):.2f} s | {percentile(values, 95):.2f} s | {max(values):.2f} s |")
    if all("triage running" in r for r in results):
        shares = {"pick-up (webhook → triage running)": [r["triage running"] for r in results],
                  "triage (decide, page, subflow start)": [r["rollback running"] - r["triage running"] for r in results],
                  "flag step": [r["flag done"] - r["rollback running"] for r in results],
                  "push step": [r["push done"] - r["flag done"] for r in results],
                  "deploy step": [r["deploy done"] - r["push done"] for r in results]}
        total = statistics.median([r["deploy done"] for r in results])
        print("\n| stage (median) | seconds | share of the time to deploy done |")
        print("|---|---|---|")
        for stage, values in shares.items():
            print(f"| {stage} | {statistics.median(values):.2f} | {statistics.median(values) / total * 100:.0f} % |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--gauge-trials", type=int, default=20)
    parser.add_argument("--modes", default="deployment,warm",
                        help="webhook paths to measure: deployment, warm, warm-prefect-backoff")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Prefect server's database (postgres: a PostgreSQL of the script's own)")
    parser.add_argument("--settle", action="store_true",
                        help="start a trial only once the previous trial's runs have ended (not just pushed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, (postgres() if args.database == "postgres" else nullcontext("")) as db:
        where = Path(tmp)
        server = start_prefect(where / "prefect-home", db)
        print(f"Prefect server on {args.database}", flush=True)
        processes, target = [], None
        try:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
                target = Target(where)
                all_results = {}
                for mode in args.modes.split(","):
                    receiver_port = free_port()
                    # warm-prefect-backoff: the warm path with Prefect's own 503 backoff only (flows/busy_retry.py off)
                    serve = start_serve(target, config_for(target, where, mode.startswith("warm")), receiver_port,
                                        where / f"serve-{mode}.log",
                                        {"ACTOR_ROLLBACK_QUICK_503_RETRY": "0"} if mode == "warm-prefect-backoff" else {})
                    processes.append(serve)
                    print(f"{mode} path:", flush=True)
                    all_results[mode] = webhook_trials(target, receiver_port, args.trials, mode, args.settle)
                    if mode == "warm" and args.gauge_trials:
                        print("gauge path (warm):", flush=True)
                        all_results["gauge"] = gauge_trials(target, receiver_port, args.gauge_trials, where)
                    stop(serve)
                    processes.remove(serve)
                print(f"\nmachine: {os.cpu_count()} cores; Prefect server, runner, receiver, git remote and "
                      "service all on loopback")
                if "deployment" in all_results:
                    report("webhook → Critical path, receiver starts a deployment run (runner poll 1 s)",
                           all_results["deployment"])
                if "warm-prefect-backoff" in all_results:
                    report("webhook → Critical path, warm, Prefect's own 503 backoff (baseline for #19)",
                           all_results["warm-prefect-backoff"])
                if "warm" in all_results:
                    report("webhook → Critical path, warm (triage in the serve process)", all_results["warm"])
                if "gauge" in all_results:
                    report("gauge flip → Prometheus → Alertmanager → receiver → warm Critical path", all_results["gauge"])
        finally:
            for process in processes:
                stop(process)
            if target is not None:
                subprocess.run(["./scripts/deploy.sh", "production", "--stop"], cwd=target.sample.repo,
                               env={**os.environ, "ACTOR_DEPLOY_STATE": str(target.production)}, capture_output=True)
            stop(server)


if __name__ == "__main__":
    main()
