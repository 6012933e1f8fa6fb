"""SIGTERM to `actor-rollback serve` (as Kubernetes sends, with 30 s of grace): it stops accepting, hands
back what it holds, and exits within 10 s; what it handed back is started again by the next serve."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from helpers import config_variant

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")
TOKEN = "shutdown-token-0123456789abcdef"


def start_serve(sample, config: Path, port: int, env: dict, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([CLI, "serve", "--repo", str(sample.repo), "--config", str(config),
                                "--receiver-port", str(port)], env=env, stdout=open(log, "a"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def stop_serve(serve: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL to its group when it outlives 15 s: no serve left behind by a failed test."""
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(serve.pid, 9)


def deploys_running() -> list[int]:
    """The `sleep 120` deploys of this module's config still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == b"sleep\x00120\x00":
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def triage_runs(incident: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"triage-{incident}"])))


def test_sigterm_hands_back_a_running_warm_triage_ends_a_deployment_run_exits_within_10_s_and_resumes(
        sample, test_config, tmp_path, prefect_server):
    from prefect.deployments import run_deployment

    from actor_rollback.deployments.sample import create_sample_workspace

    config = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                         'command = "sleep 120"'})  # a deploy that outlasts the grace
    port, state = free_port(), tmp_path / "state"
    env = {**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "XDG_STATE_HOME": str(state),
           "PREFECT_LOGGING_LEVEL": "INFO"}
    log = tmp_path / "serve.log"
    serve = start_serve(sample, config, port, env, log)
    incident = {"id": "inc-sigterm", "phase": "1", "kind": "service-down"}  # Critical: the warm path
    assert httpx.post(f"http://127.0.0.1:{port}/incidents", json=incident,
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 202
    other = create_sample_workspace(tmp_path / "other")  # a second target, rolled back by a deployment run
    deadline = time.monotonic() + 60
    while "being served" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    manual = run_deployment("rollback-phase-1/manual", timeout=0, parameters={
        "reason": "SIGTERM test", "incident_id": "inc-sigterm-manual", "repo": str(other.repo), "skip": ["ci"]})
    deadline = time.monotonic() + 90
    while log.read_text().count("P1.2b push: done") < 2:  # both pushed; both deploys (sleep 120) are going
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    time.sleep(0.5)
    sent = time.monotonic()
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(serve.pid, 9)
        pytest.fail(f"serve outlived SIGTERM by 10 s: {log.read_text()[-3000:]}")
    assert time.monotonic() - sent < 10
    deadline = time.monotonic() + 3
    while (left := deploys_running()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, "a deploy serve started (the warm one, or its deployment run's) outlived it"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        ended = client.read_flow_run(manual.id).state
    assert ended.is_final() and not ended.is_completed(), ended  # never left Running, never a false Completed
    [crashed] = triage_runs("inc-sigterm")
    assert crashed.state.is_crashed() and "intake spool" in crashed.state.message
    spool = sqlite3.connect(state / "actor-rollback" / "receiver" / "intake.sqlite3")
    assert spool.execute("SELECT done_at FROM intake WHERE key = 'in-inc-sigterm'").fetchone() == (None,)
    spool.close()
    again = start_serve(sample, config, port, env, log)  # the next serve starts the handed-back incident
    try:
        deadline = time.monotonic() + 60
        while len(runs := triage_runs("inc-sigterm")) < 2:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert sum(1 for r in runs if r.state.is_crashed()) == 1
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=30)


def test_a_runner_killed_with_its_run_leaves_the_run_crashed_not_running(sample, test_config, tmp_path, prefect_server):
    """SIGKILL to serve and its run: nothing is left to report the end. The run's heartbeats stop and the
    automation serve ships marks it Crashed (here after 35 s without one; 90 s by default)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from actor_rollback.deployments.automations import ZOMBIE_AUTOMATION

    config = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                         'command = "sleep 300"', "crashed_after_seconds = 90":
                                         "crashed_after_seconds = 35"})
    port, log = free_port(), tmp_path / "serve.log"
    env = {**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "PREFECT_LOGGING_LEVEL": "INFO"}
    serve = start_serve(sample, config, port, env, log)
    try:
        deadline = time.monotonic() + 60
        while "being served" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        run = run_deployment("rollback-phase-1/manual", timeout=0, parameters={
            "reason": "zombie test", "incident_id": "inc-zombie", "skip": ["ci"]})
        while "P1.2b push: done" not in log.read_text():  # the run is in its deploy, heartbeating
            assert time.monotonic() < deadline + 60, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        os.killpg(serve.pid, signal.SIGKILL)  # the runner and the run's process with it
        serve.wait()
    killed = time.monotonic()
    with get_client(sync_client=True) as client:
        automation = client.read_automations_by_name(ZOMBIE_AUTOMATION)
        assert automation and automation[0].enabled
        while not (state := client.read_flow_run(run.id).state).is_crashed():
            assert state.is_running(), state
            assert time.monotonic() - killed < 150, f"still {state.name} {time.monotonic() - killed:.0f} s after the kill"
            time.sleep(2)
    assert "no heartbeat" in state.message


def test_serve_started_while_prefect_is_down_takes_alerts_and_sets_itself_up_when_prefect_returns(
        sample, test_config, tmp_path):
    """#25.2: it used to exit after ~4 s (ConnectError setting up its automation)."""
    from conftest import start_prefect_server, stop_process_group
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from actor_rollback.deployments.automations import ZOMBIE_AUTOMATION

    api_port, port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}/api"
    env = {**os.environ, "PREFECT_API_URL": url, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN,
           "XDG_STATE_HOME": str(tmp_path / "state"), "PREFECT_LOGGING_LEVEL": "INFO"}
    log = tmp_path / "serve.log"
    serve = start_serve(sample, test_config, port, env, log)
    server = None
    try:
        incident = {"id": "inc-prefect-down", "phase": "1", "kind": "docs", "summary": "a typo"}  # Low: a deployment run
        answer = httpx.post(f"http://127.0.0.1:{port}/incidents", json=incident,
                            headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 202, answer.text
        time.sleep(6)
        assert serve.poll() is None, log.read_text()[-3000:]
        assert "does not answer" in log.read_text() and "kept in the intake spool" in log.read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["backlog"] == 1
        server, _ = start_prefect_server(tmp_path / "prefect-home", tmp_path / "prefect.log", port=api_port,
                                         TMPDIR=str(tmp_path))
        deadline = time.monotonic() + 120
        while not (httpx.get(f"http://127.0.0.1:{port}/healthz").json()["backlog"] == 0
                   and "being served" in log.read_text()):
            assert time.monotonic() < deadline and serve.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            while not triage_runs("inc-prefect-down"):  # named when the runner starts it (its name template)
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            with get_client(sync_client=True) as client:
                assert client.read_automations_by_name(ZOMBIE_AUTOMATION)
    finally:
        stop_serve(serve)
        if server is not None:
            stop_process_group(server)


def test_a_ui_cancel_of_a_running_rollback_ends_the_command_it_runs(sample, test_config, tmp_path, prefect_server):
    """#25.1: Cancel in the UI while the deploy runs — the run ends Cancelled and its deploy with it (a cancelled
    `cargo bench` used to run on)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    config = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                         'command = "sleep 120"'})
    port = free_port()
    env = {**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "XDG_STATE_HOME": str(tmp_path / "state"),
           "PREFECT_LOGGING_LEVEL": "INFO"}
    log = tmp_path / "serve.log"
    serve = start_serve(sample, config, port, env, log)
    try:
        deadline = time.monotonic() + 60
        while "being served" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        run = run_deployment("rollback-phase-1/manual", timeout=0, parameters={
            "reason": "cancel test", "incident_id": "inc-ui-cancel", "repo": str(sample.repo), "skip": ["ci"]})
        deadline = time.monotonic() + 90
        while not deploys_running():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(message="cancelled from the UI"))
            deadline = time.monotonic() + 60
            while not (state := client.read_flow_run(run.id).state).is_final():
                assert time.monotonic() < deadline, (state, log.read_text()[-3000:])
                time.sleep(0.5)
        assert state.is_cancelled(), state
        deadline = time.monotonic() + 5
        while (left := deploys_running()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, "the cancelled run's deploy runs on"
    finally:
        stop_serve(serve)


def test_f1_a_serve_just_started_takes_a_critical_and_turns_its_flag_off_before_loading_prefect(
        sample, test_config, tmp_path):
    """After a restart the receiver listens first — before Prefect's flows are loaded (1.2 s of a 1.7 s start) — and
    a Critical's flag-off needs none of Prefect: an alert in that moment is taken and its flag pushed off, here with
    the Prefect server down for good measure."""
    from helpers import run_git

    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api", "XDG_STATE_HOME": str(tmp_path / "state"),
           "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "PREFECT_LOGGING_LEVEL": "INFO"}
    log = tmp_path / "serve.log"
    before = run_git(sample.origin, "rev-parse", "main")
    serve = subprocess.Popen([CLI, "serve", "--repo", str(sample.repo), "--config", str(test_config),
                              "--receiver-port", str(port)], env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                break
            except httpx.HTTPError:
                assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.02)
        assert any(reason.startswith("starting") for reason in first["reasons"]), first  # flows not loaded yet
        answer = httpx.post(f"http://127.0.0.1:{port}/incidents", headers={"Authorization": f"Bearer {TOKEN}"},
                            json={"id": "inc-just-started", "phase": "1", "kind": "service-down"})
        assert answer.status_code == 202, answer.text
        while run_git(sample.origin, "rev-parse", "main") == before:
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        assert "Rollback-Incident: inc-just-started" in run_git(sample.origin, "log", "-1", "--format=%B", "main")
    finally:
        stop_serve(serve)


def test_f1_the_flag_off_first_loads_no_prefect_and_no_pandas():
    """What the receiver runs before serve has loaded its flows imports neither (1.2 s and 0.3 s of start-up)."""
    code = ("import sys, actor_rollback.tasks.flag_off_first, actor_rollback.deployments.receiver; "
            "print(sorted(m for m in ('prefect', 'pandas', 'numpy') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", loaded
