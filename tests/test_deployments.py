"""Manual triggers: served deployments (one per phase) with a form, started from the API and from
the real Prefect UI in headless Chromium; and prefect.yaml registering on a process work pool."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, require
from helpers import run_git

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def read_deployment(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def wait_for_run(predicate, timeout: float = 120):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:  # the newest runs: other tests (a storm) may have made hundreds
            for run in client.read_flow_runs(limit=50, sort=FlowRunSort.EXPECTED_START_TIME_DESC):
                if predicate(run) and run.state and run.state.is_final():
                    return run
            time.sleep(0.5)
    raise AssertionError("no matching flow run finished in time")


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_server, cargo_env, test_config):
    """`actor-rollback serve` against the session's server, for a sample workspace."""
    from tasks.sample_workspace import create_sample_workspace

    sample = create_sample_workspace(tmp_path_factory.mktemp("served") / "sample")
    log = open(sample.root / "serve.log", "w")
    process = subprocess.Popen([CLI, "serve", "--repo", str(sample.repo), "--config", str(test_config),
                                "--receiver-port", "0"], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": "served-test-token"},
                               start_new_session=True)
    deadline = time.monotonic() + 90
    while True:  # another test's serve may have registered the same names: wait for ours
        try:
            if all(read_deployment(name).parameters["repo"] == str(sample.repo.resolve())
                   for name in ("rollback-phase-4/manual", "triage/alert", "verify/scheduled")):
                break
            raise LookupError("not ours yet")
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not register its deployments: {(sample.root / 'serve.log').read_text()}")
            time.sleep(0.5)
    yield sample
    os.killpg(process.pid, 15)
    process.wait(timeout=30)
    log.close()


def test_serve_registers_triage_verification_postmortem_and_reintroduction_deployments(served):
    triage = read_deployment("triage/alert")
    assert triage.parameters["repo"] == str(served.repo.resolve())
    assert triage.parameter_openapi_schema["required"] == ["incident", "repo"]
    verify = read_deployment("verify/scheduled")
    assert [s.schedule.cron for s in verify.schedules] == ["0 */6 * * *"]
    deadlines = read_deployment("postmortem-deadlines/scheduled")  # A.1's 48-hour watch
    assert [s.schedule.cron for s in deadlines.schedules] == ["0 * * * *"]
    for name in ("postmortem/manual", "reintroduce-phase/manual"):
        assert read_deployment(name).parameters["repo"] == str(served.repo.resolve())


def test_serve_without_the_receiver_token_refuses_to_start(sample, test_config):
    env = {k: v for k, v in os.environ.items() if k != "ACTOR_ROLLBACK_RECEIVER_TOKEN"}
    run = subprocess.run([CLI, "serve", "--repo", str(sample.repo), "--config", str(test_config)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "export ACTOR_ROLLBACK_RECEIVER_TOKEN" in " ".join(run.stderr.split())


def test_serve_registers_one_manual_deployment_per_phase_with_a_form(served):
    for phase in ("0", "1", "2a", "2b", "3", "4"):
        deployment = read_deployment(f"rollback-phase-{phase}/manual")
        schema = deployment.parameter_openapi_schema
        assert schema["required"] == ["reason", "repo"], phase
        assert "recorded in every commit" in schema["properties"]["reason"]["description"]
        assert deployment.parameters["repo"] == str(served.repo.resolve())
        assert f"phase:{phase.upper()}" in deployment.tags


def test_a_run_started_on_the_deployment_is_picked_up_and_completes(served):
    from prefect.deployments import run_deployment

    started = time.monotonic()
    run = run_deployment("rollback-phase-1/manual", timeout=0,
                         parameters={"reason": "API trigger", "incident_id": "inc-api", "dry_run": True})
    done = wait_for_run(lambda r: r.id == run.id)
    assert done.state.is_completed(), done.state
    assert done.name == "rollback-phase-1-inc-api"
    assert time.monotonic() - started < 60


def test_prefect_ui_custom_run_with_a_reason_completes_the_rollback(served, prefect_server, tmp_path):
    require(Path(CHROMIUM).exists(), "Chromium (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    ui = prefect_server.removesuffix("/api")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{ui}/deployments")
        page.get_by_role("row").filter(has_text="rollback-phase-1").get_by_role("link", name="manual").click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        reason = page.locator("textarea").first
        reason.wait_for()
        reason.fill("UI: mailbox throughput regressed 15 %")
        page.screenshot(path=str(tmp_path / "form.png"))
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url("**/deployments/deployment/*", timeout=30000)  # back on the deployment, run queued
        run = wait_for_run(lambda r: r.parameters.get("reason") == "UI: mailbox throughput regressed 15 %")
        page.reload()
        page.get_by_text(run.name).first.wait_for(timeout=30000)  # the UI lists the finished run
        page.screenshot(path=str(tmp_path / "deployment-runs.png"))
        browser.close()
    assert run.state.is_completed(), run.state
    assert run.name.startswith("rollback-phase-1-run-")
    assert "remove new-scheduler" in run_git(served.origin, "log", "--format=%s", "-2", "main")


def test_prefect_yaml_registers_every_phase_on_a_process_work_pool(prefect_server, tmp_path):
    prefect = str(Path(sys.executable).parent / "prefect")
    env = {**os.environ, "ACTOR_ROLLBACK_HOME": str(ROOT), "ACTOR_ROLLBACK_TARGET": str(tmp_path)}
    subprocess.run([prefect, "work-pool", "create", "rollback-process", "--type", "process", "--overwrite"],
                   check=True, capture_output=True, env=env, cwd=ROOT)
    deploy = subprocess.run([prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    for phase in ("0", "1", "2a", "2b", "3", "4"):
        deployment = read_deployment(f"rollback-phase-{phase}/manual")
        assert deployment.work_pool_name == "rollback-process"
        assert deployment.entrypoint.endswith(f"flows/phases.py:rollback_phase_{phase}")
