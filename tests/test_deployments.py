"""Manual triggers: served deployments (one per phase) with a form, started from the API and from
the real Prefect UI in headless Chromium; and prefect.yaml registering on a process work pool."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, require
from helpers import MetricsEndpoint, config_variant, run_git
from playwright.sync_api import expect

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def read_deployment(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def read_run(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def read_progress_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1)
    return found[0] if found else None


def wait_for_run(predicate, timeout: float = 120):
    from actor_rollback.flows.outcome import has_ended
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    # the newest runs that are not merely scheduled: other tests (a storm) may have made hundreds, and serve's
    # schedules (verify every 6 h, the weekly drill, …) put runs in the future, newest by expected start
    started = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=[StateType.SCHEDULED])))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(flow_run_filter=started, limit=50,
                                             sort=FlowRunSort.EXPECTED_START_TIME_DESC):
                if predicate(run) and has_ended(run):
                    return run
            time.sleep(0.5)
    raise AssertionError("no matching flow run finished in time")


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_server, cargo_env, test_config):
    """`actor-rollback serve` against the session's server, for a sample workspace."""
    from actor_rollback.deployments.sample import create_sample_workspace

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


@contextmanager
def browser_page(tmp_path: Path):
    """Headless Chromium on a wide page; on a failure, the page's screenshot and text land in tmp_path."""
    require(Path(CHROMIUM).exists(), "Chromium (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30000)
        try:
            yield page
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            (tmp_path / "failure.txt").write_text(page.url + "\n" + page.inner_text("body"))
            raise
        finally:
            browser.close()


def test_prefect_ui_custom_run_with_a_reason_runs_the_rollback_and_lists_it_waiting_for_a_person(
        served, prefect_server, tmp_path):
    ui = prefect_server.removesuffix("/api")
    reason = "UI: mailbox throughput regressed 15 %"
    with browser_page(tmp_path) as page:
        page.goto(f"{ui}/deployments")
        page.get_by_role("row").filter(has_text="rollback-phase-1").get_by_role("link", name="manual").click()
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        page.wait_for_load_state("networkidle")  # the form re-renders once the schema is in: fill after that
        field = page.locator("textarea").first
        field.fill(reason)
        expect(field).to_have_value(reason)
        page.screenshot(path=str(tmp_path / "form.png"))
        page.get_by_role("button", name="Submit").click()
        # the API is the truth, not a redirect; a whole Phase 1 (CI, deploy, watch, benchmark rounds) takes a while
        run = wait_for_run(lambda r: r.parameters.get("reason") == reason, timeout=300)
        page.goto(f"{ui}/deployments/deployment/{run.deployment_id}?tab=Runs")
        page.get_by_text(run.name).first.wait_for()  # listed: a Paused run is in the UI's default view
        page.screenshot(path=str(tmp_path / "deployment-runs.png"))
    # the rollback did its work; the benchmark check (one round in tests) is a person's: the run waits for them
    assert run.state.is_paused() and "A PERSON MUST" in run.state.message and "P1.C3" in run.state.message, run.state
    assert "outcome:needs-human" in run.tags and run.name.startswith("rollback-phase-1-run-")
    assert "remove new-scheduler" in run_git(served.origin, "log", "--format=%s", "-2", "main")


def test_prefect_ui_shows_a_failed_rollback_as_failed_with_its_message(served, prefect_server, tmp_path):
    from prefect.deployments import run_deployment

    failing_ci = config_variant(tmp_path, **{'command = "cargo test --workspace"': 'command = "false"'})
    started = run_deployment("rollback-phase-1/manual", timeout=0, parameters={
        "reason": "CI is red", "incident_id": "ui-failed", "only": ["ci"], "config": str(failing_ci)})
    run = wait_for_run(lambda r: r.id == started.id)
    assert run.state.is_failed() and run.state.message.startswith("phase 1 rollback ui-failed: FAILED — P1.2c ci failed")
    ui = prefect_server.removesuffix("/api")
    with browser_page(tmp_path) as page:
        page.goto(f"{ui}/runs")
        row = page.get_by_text("rollback-phase-1-ui-failed").first
        row.wait_for()
        page.screenshot(path=str(tmp_path / "runs-list.png"))
        page.goto(f"{ui}/runs/flow-run/{run.id}")
        page.get_by_text("P1.2c ci failed").first.wait_for()  # the state's message on the run's page
        page.screenshot(path=str(tmp_path / "failed-run.png"))
        listed = page.inner_text("body")
    assert "Failed" in listed


def test_prefect_ui_shows_the_progress_of_a_running_metrics_watch(served, prefect_server, tmp_path):
    from prefect.deployments import run_deployment

    metrics = MetricsEndpoint()
    watch = metrics.config(tmp_path, window_seconds=40)
    started = run_deployment("rollback-phase-1/manual", timeout=0, parameters={
        "reason": "watch it", "incident_id": "ui-progress", "only": ["monitor"], "config": str(watch)})
    deadline = time.monotonic() + 60
    while (progress := read_progress_artifact("progress-monitor-1-ui-progress")) is None:
        assert time.monotonic() < deadline, "the metrics watch published no progress artifact"
        time.sleep(0.5)
    ui = prefect_server.removesuffix("/api")
    with browser_page(tmp_path) as page:
        page.goto(f"{ui}/runs/flow-run/{started.id}")
        page.get_by_text("Artifacts", exact=True).first.click()
        readings = []
        while len(set(readings)) < 2:  # it moves: two different readings, seconds apart
            page.get_by_text("P1.3b monitor: watching").first.wait_for()
            readings.append(re.search(r"(\d+) of 40 s", page.inner_text("body")).group(1))
            page.screenshot(path=str(tmp_path / f"progress-{len(readings)}.png"))
            assert len(readings) < 20, readings
            time.sleep(2)
            page.reload()
            page.get_by_text("Artifacts", exact=True).first.click()
        running = read_run(started.id)
    assert running.state.is_running(), running.state  # seen while the rollback runs, not after
    assert int(readings[-1]) > int(readings[0]), readings
    assert progress.type == "progress" and 0 <= float(progress.data) <= 100
    wait_for_run(lambda r: r.id == started.id)
    metrics.close()


def test_prefect_ui_resume_on_a_run_needing_a_person_asks_what_they_did_and_closes_it_completed(
        served, prefect_server, tmp_path):
    """The real UI: a rollback that ended needing a person shows Resume; its form asks who, what they did and the
    result; the run then ends Completed with that record (serve's watch closes it: no process runs it)."""
    from prefect.deployments import run_deployment

    started = run_deployment("rollback-phase-0/manual", timeout=0, parameters={
        "reason": "PoC abandoned", "incident_id": "ui-ack", "repo": str(served.repo)})
    run = wait_for_run(lambda r: r.id == started.id)
    assert run.state.is_paused() and "A PERSON MUST" in run.state.message
    ui = prefect_server.removesuffix("/api")
    with browser_page(tmp_path) as page:
        page.goto(f"{ui}/runs/flow-run/{run.id}")
        page.get_by_role("button", name="Resume").first.click()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(tmp_path / "resume-form.png"))
        form = page.get_by_role("dialog")
        form.get_by_text("Your name: recorded in the audit trail").wait_for()  # the acknowledgement's own fields
        form.locator("textarea").nth(0).fill("Aiko (UI)")
        form.locator("textarea").nth(1).fill("reviewed the design docs; ADR filed")
        choose = form.locator("button.p-select-button__control")  # the UI's own select: a button opening a list
        choose.focus()
        page.keyboard.press("ArrowDown")  # a mouse click does not open it headless; the keyboard does
        page.get_by_role("option", name="resolved", exact=True).click()
        page.screenshot(path=str(tmp_path / "resume-filled.png"))
        for _ in range(3):  # the select's list may still hold the first click (seen once in a full run): as a person would, again
            page.get_by_role("button", name="Submit").click()
            try:
                form.wait_for(state="hidden", timeout=10_000)
                break
            except Exception:  # noqa: BLE001 — still open
                page.screenshot(path=str(tmp_path / "submit-still-open.png"))
        deadline = time.monotonic() + 60
        while not (closed := read_run(run.id)).state.is_completed():
            assert time.monotonic() < deadline, closed.state
            time.sleep(0.5)
        page.reload()
        page.get_by_text("Completed", exact=True).first.wait_for()  # the run's state badge
        page.get_by_text("ACKNOWLEDGED by Aiko (UI) (resolved)").first.wait_for()  # and the record in its log
        page.screenshot(path=str(tmp_path / "acknowledged.png"))
    assert closed.state.message.startswith("ACKNOWLEDGED by Aiko (UI) (resolved): reviewed the design docs; ADR filed")
    assert "closed:resolved" in closed.tags


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
