"""#26 §5: the embedded default's one local Prefect server — started on first use, reused, its lifetime said and
kept (idle → it stops itself; a run in progress keeps it), stopped by `actor-rollback server stop`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import config_variant

CLI = str(Path(sys.executable).parent / "actor-rollback")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def local(tmp_path):
    """A fresh shell's environment (no PREFECT_API_URL) with its own PREFECT_HOME; the server stopped after."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), ACTOR_ROLLBACK_LOCAL_SERVER="on")

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([CLI, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env={**env, **extra}, timeout=300)

    yield cli
    stopped = cli("server", "stop", "--json")
    for pid in (json.loads(stopped.stdout).get(key) for key in ("keeper_pid", "server_pid")):
        if pid:
            deadline = time.monotonic() + 30
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)


def test_the_embedded_default_starts_one_local_server_reuses_it_and_stops_it(local, sample, test_config, tmp_path):
    args = ("run", "3", "--repo", str(sample.repo), "--reason", "speed", "--only", "ci-file", "--dry-run",
            "--config", str(test_config), "--json")
    first = local(*args, "--incident", "local-1")
    assert first.returncode == 0, first.stderr
    assert "starting the local Prefect server on 127.0.0.1:" in first.stderr
    status = json.loads(local("server", "status", "--json").stdout)
    assert status["running"] and status["database"] == str(tmp_path / "home" / "prefect.db")
    assert (tmp_path / "home" / "prefect.db").exists(), "the record is in PREFECT_HOME, where the UI reads it"
    second = local(*args, "--incident", "local-2")
    assert second.returncode == 0 and "starting the local Prefect server" not in second.stderr, second.stderr
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: status["url"]}), get_client(sync_client=True) as client:
        for run in (first, second):  # both runs are on the one server, Completed
            assert client.read_flow_run(json.loads(run.stdout)["flow_run_id"]).state.is_completed()
    stopped = json.loads(local("server", "stop", "--json").stdout)
    assert stopped["stopped"] and stopped["url"] == status["url"]
    deadline = time.monotonic() + 30
    while (alive(status["keeper_pid"]) or alive(status["server_pid"])) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(status["keeper_pid"]) and not alive(status["server_pid"]), "nothing it started is left"
    assert json.loads(local("server", "status", "--json").stdout)["running"] is False


def test_an_unused_local_server_stops_itself_but_not_while_a_run_is_in_progress(local, sample, tmp_path):
    slow = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                       'command = "sleep 20"'})
    started = local("server", "start", "--json", ACTOR_ROLLBACK_SERVER_IDLE_MINUTES="0.1")  # 6 s unused
    state = json.loads(started.stdout)
    assert started.returncode == 0 and state["running"] and state["idle_minutes"] == 0.1, started.stderr
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), ACTOR_ROLLBACK_LOCAL_SERVER="on")
    run = subprocess.Popen([CLI, "run", "1", "--repo", str(sample.repo), "--reason", "slow deploy", "--incident",
                            "local-busy", "--only", "deploy", "--config", str(slow), "--json"], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(15)  # past two idle periods since the run's command last used the server, the deploy still going
    assert run.poll() is None, "the run is still in progress"
    assert alive(state["keeper_pid"]), "a run in progress keeps the server"
    out, err = run.communicate(timeout=120)
    deploy = next(step for step in json.loads(out)["steps"] if step["name"] == "deploy")
    assert deploy["status"] == "done", err
    deadline = time.monotonic() + 60
    while alive(state["keeper_pid"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(state["keeper_pid"]) and not alive(state["server_pid"]), "idle: it stopped itself"
    assert json.loads(local("server", "status", "--json").stdout)["running"] is False
