"""End to end on loopback, all real: Prometheus scrapes the sample service, the repo's alert rule
fires when the service goes down, Alertmanager posts to the receiver of `actor-rollback serve`,
triage decides Critical (S.C/F.1), the Phase 1 flag-off lands on the sample's remote, the service
is redeployed, and the on-call's pager (an HTTP server on 127.0.0.1) gets the page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import free_port, require, wait_http
from helpers import config_variant, paged_config_text, pager_block, run_git, wait_until

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")
RULES = Path(__file__).resolve().parent.parent / "docker" / "prometheus" / "alert-rules.yml"
TOKEN = "e2e-receiver-token-abcdefghijklmnop"


class Processes:
    def __init__(self, home: Path) -> None:
        self.home, self.running = home, []

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "w")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.running.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text()[-3000:]

    def stop(self) -> None:
        for process in reversed(self.running):
            try:
                os.killpg(process.pid, 15)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)


def test_service_down_alert_to_flag_off_on_the_remote_and_the_on_call_paged(tmp_path, prefect_server, cargo_env,
                                                                             test_config):
    require(shutil.which("prometheus") is not None and shutil.which("prometheus-alertmanager") is not None,
            "Prometheus and Alertmanager (Debian packages prometheus, prometheus-alertmanager)")
    from actor_rollback.deployments.sample import create_sample_workspace

    pager = pager_block("test-e2e-pager")
    sample = create_sample_workspace(tmp_path / "sample")
    service_port, receiver_port, am_port, prom_port = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, "ACTOR_SERVICE_PORT": str(service_port), "ACTOR_DEPLOY_STATE": str(tmp_path / "prod"),
           "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "PREFECT_LOGGING_LEVEL": "INFO"}
    config = config_variant(tmp_path, paged_config_text("custom-webhook/test-e2e-pager", ("sre-oncall",)), **{
        'default_phase = ""': 'default_phase = "1"'})
    deployed = subprocess.run(["./scripts/deploy.sh", "production", "--version=v0.4.0"], cwd=sample.repo, env=env,
                              capture_output=True, text=True, timeout=60)
    assert deployed.returncode == 0 and "new-scheduler=on" in deployed.stdout, deployed.stderr

    procs = Processes(tmp_path)
    try:
        (tmp_path / "alertmanager.yml").write_text(
            "route:\n  receiver: actor-rollback\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n"
            "  repeat_interval: 1h\nreceivers:\n  - name: actor-rollback\n    webhook_configs:\n"
            f"      - url: http://127.0.0.1:{receiver_port}/alerts/alertmanager\n        send_resolved: true\n"
            f"        http_config:\n          authorization:\n            credentials: {TOKEN}\n")
        procs.start("alertmanager", ["prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
                                     f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                     "--cluster.listen-address="])
        (tmp_path / "rules.yml").write_text(RULES.read_text().replace("for: 1m", "for: 0s"))
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n"
            f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n"
            f"scrape_configs:\n  - job_name: actor-system\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{service_port}']\n")
        procs.start("prometheus", ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'prom'}", f"--web.listen-address=127.0.0.1:{prom_port}"])
        serve = procs.start("serve", [CLI, "serve", "--repo", str(sample.repo), "--config", str(config),
                                      "--receiver-port", str(receiver_port)], env=env)
        wait_http(f"http://127.0.0.1:{am_port}/-/ready")
        wait_http(f"http://127.0.0.1:{receiver_port}/healthz", timeout=90)
        up = f"http://127.0.0.1:{prom_port}/api/v1/query"
        wait_until(lambda: any(r["value"][1] == "1" for r in httpx.get(up, params={"query": "up"}).json()["data"]["result"]),
                   60, "Prometheus scraping the service")

        before = run_git(sample.origin, "rev-parse", "main")
        subprocess.run(["./scripts/deploy.sh", "production", "--stop"], cwd=sample.repo, env=env, check=True,
                       capture_output=True)  # the outage

        page = pager.wait_for(lambda b: "CRITICAL phase 1" in b["subject"], timeout=90)
        assert page["subject"].endswith("flag-off started"), page
        assert f"service-down: actor-system 127.0.0.1:{service_port} is down" in page["text"], page
        wait_until(lambda: run_git(sample.origin, "rev-parse", "main") != before, 120,
                   "the flag-off commit on the remote: " + procs.log("serve"))
        message = run_git(sample.origin, "log", "-1", "--format=%B", "main")
        assert "Runbook-Step: P1.1" in message and "Rollback-Incident: am-" in message
        assert run_git(sample.origin, "rev-list", "--count", f"{before}..main") == "1"
        done = pager.wait_for(lambda b: "CRITICAL phase 1" in b["subject"] and "flag-off started" not in b["subject"],
                              timeout=90)
        assert "deploy done" in done["text"], done
        deploys = (tmp_path / "prod" / "deploys.log").read_text().splitlines()
        assert "new-scheduler=off" in deploys[-1]  # redeployed with the flag off: the service is back
        health = wait_until(lambda: (h := httpx.get(f"http://127.0.0.1:{receiver_port}/healthz").json())["resolved"] and h,
                            90, "the resolved alert recorded")
        assert health["started"] == 1 and health["refused"] == 0
        assert "started: flow run in-process triage-am-" in (tmp_path / "serve.log").read_text()  # the warm path
        assert serve.poll() is None
    finally:
        procs.stop()
        subprocess.run(["./scripts/deploy.sh", "production", "--stop"], cwd=sample.repo, env=env, capture_output=True)
        pager.server.shutdown()
