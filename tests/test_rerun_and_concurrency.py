"""Safe reruns after a kill at every step, and one rollback per target at a time (real server, real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import config_variant, other_clone, run_git

from actor_rollback.flows.runner import FAULT_INJECT
from actor_rollback.runbook.phases import phase_steps

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")


def start(repo: Path, incident: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    if "--config" not in extra:
        extra = (*extra, "--config", os.environ["ACTOR_ROLLBACK_TEST_CONFIG"])
    if "--skip" not in extra:
        extra = (*extra, "--skip", "benchmarks")  # a read-only check, and the slowest step
    return subprocess.Popen([CLI, "run", "1", "--repo", str(repo), "--reason", "test", "--incident", incident,
                             "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def finish(process: subprocess.Popen) -> tuple[int, dict | None, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, (json.loads(out) if out.strip() else None), err


def remote_state(sample) -> tuple[str, int, int]:
    """The remote's tree, and how many flag and revert commits it has: what a rerun must converge to."""
    subjects = run_git(sample.origin, "log", "--format=%s", "main").splitlines()
    return (run_git(sample.origin, "rev-parse", "main^{tree}"),
            sum("remove new-scheduler from default features" in s for s in subjects),
            sum(s.startswith('Revert "Merge pull request #12') for s in subjects))


@pytest.fixture(scope="module")
def reference_state(tmp_path_factory, prefect_server, cargo_env, test_config):
    """The remote after one uninterrupted Phase 1 rollback of a fresh sample workspace."""
    from actor_rollback.deployments.sample import create_sample_workspace

    sample = create_sample_workspace(tmp_path_factory.mktemp("reference") / "sample")
    code, report, err = finish(start(sample.repo, "inc-ref"))
    assert code == 3, err
    return remote_state(sample)


@pytest.mark.cargo
@pytest.mark.parametrize("step", [s.name for s in phase_steps("1") if s.name != "benchmarks"])
def test_kill_at_each_phase_1_step_then_rerun_converges(step, sample, reference_state, cargo_env):
    killed = start(sample.repo, "inc-kill", env={FAULT_INJECT: f"kill-before:{step}"})
    code, _, _ = finish(killed)
    assert code == -9, f"the run was not killed before {step}"
    started = time.monotonic()
    code, report, err = finish(start(sample.repo, "inc-kill"))
    assert code == 3, err
    assert time.monotonic() - started < 55, "the dead run's lock was released at once, not after its lease"
    assert remote_state(sample) == reference_state
    assert run_git(sample.repo, "status", "--porcelain") == ""
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses["flag"] in ("done", "already-done") and statuses["push"] in ("done", "already-done")


@pytest.mark.cargo
def test_two_concurrent_phase_1_runs_on_one_target_never_both_push(sample, tmp_path, cargo_env):
    second_clone = other_clone(sample.origin, tmp_path / "second-clone")
    # A deploy that takes a few seconds keeps the first run on the target while the second arrives.
    config = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                      "command = \"bash -c 'sleep 4 && ./scripts/deploy.sh production --version={version}'\""})
    first = start(sample.repo, "inc-a", "--config", str(config))
    second = start(second_clone, "inc-b", "--config", str(config))
    (code_a, report_a, err_a), (code_b, report_b, err_b) = finish(first), finish(second)
    assert {code_a, code_b} == {3}, (err_a, err_b)
    _, flags, reverts = remote_state(sample)
    assert (flags, reverts) == (1, 1)
    pushes = [r for r in (report_a, report_b) if {s["name"]: s["status"] for s in r["steps"]}["push"] == "done"]
    assert len(pushes) == 1
    assert "waiting for the rollback already running on this target" in err_a + err_b


def test_two_rollbacks_of_one_target_on_different_prefect_servers_never_overlap(sample, tmp_path, prefect_server):
    """One run on the embedded (ephemeral) server of its own process, one on the session's server, on the same
    clone: the host lock makes the second wait, so their deploys never run at the same time."""
    from actor_rollback.tasks.host_lock import HostLock, target_key
    from actor_rollback.runbook.config import load_config

    deploys = tmp_path / "deploys"
    config = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                         f'command = "sh -c \'echo start $(date +%s.%N) >> {deploys}; sleep 6; '
                                         f'echo end $(date +%s.%N) >> {deploys}\'"'})
    cfg = load_config(config)
    lock = HostLock(Path(cfg.concurrency.host_lock_dir), target_key(sample.repo, cfg))
    embedded = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    embedded["PREFECT_HOME"] = str(tmp_path / "embedded-home")
    alone = subprocess.Popen([CLI, "run", "1", "--repo", str(sample.repo), "--reason", "test", "--incident",
                              "inc-embedded-a", "--json", "--config", str(config), "--skip", "ci,benchmarks"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                             env=embedded)
    deadline = time.monotonic() + 120
    while lock.holder().get("incident") != "inc-embedded-a":  # the embedded run holds the target
        assert time.monotonic() < deadline and alone.poll() is None, "the embedded run never took the host lock"
        time.sleep(0.1)
    served = start(sample.repo, "inc-server-b", "--config", str(config), "--skip", "ci,benchmarks")
    (_, report_a, err_a), (_, report_b, err_b) = finish(alone), finish(served)
    assert report_a and report_b, (err_a, err_b)
    assert lock.holder() == {}  # released: the file names no one
    times = [(line.split()[0], float(line.split()[1])) for line in deploys.read_text().splitlines()]
    assert [what for what, _ in times] == ["start", "end", "start", "end"], times  # one deploy, then the other
    assert "waiting for the rollback already running on this target on this host: inc-embedded-a" in err_b
    assert "the embedded server" in err_b  # the holder is named with where it runs
    assert {s["name"]: s["status"] for s in report_b["steps"]}["flag"] == "already-done"


def wait_until_held(repo: Path, config: Path, incident: str, timeout: float = 120) -> None:
    """Until `incident`'s run holds the target (its lock record is written): no guess at how long a start takes."""
    from prefect.variables import Variable

    from actor_rollback.tasks.host_lock import target_key
    from actor_rollback.runbook.config import load_config

    record = f"rollback_lock_{target_key(repo, load_config(config))}"
    deadline = time.monotonic() + timeout
    while (Variable.get(record, default=None) or {}).get("incident") != incident:
        assert time.monotonic() < deadline, f"{incident} never took the target's lock"
        time.sleep(0.2)


def test_a_busy_target_stops_the_second_run_after_its_wait(sample, tmp_path, prefect_server):
    config = config_variant(tmp_path, **{"wait_seconds = 120": "wait_seconds = 1",
                                      'command = "./scripts/deploy.sh production --version={version}"':
                                      'command = "sleep 8"'})
    first = start(sample.repo, "inc-slow", "--config", str(config), "--skip", "ci,benchmarks")
    wait_until_held(sample.repo, config, "inc-slow")  # it then spends 8 s in its deploy
    code, report, _ = finish(start(sample.repo, "inc-late", "--config", str(config), "--skip", "ci,benchmarks"))
    assert code == 4 and report["outcome"] == "busy", "locked out is busy, not bad input"
    assert report["steps"][0]["name"] == "target-lock"
    assert "another rollback holds" in report["steps"][0]["evidence"][0]
    assert "inc-slow" in report["steps"][0]["evidence"][0]
    assert all(s["status"] == "skipped" for s in report["steps"][1:])
    assert finish(first)[0] == 3
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # the run's state says it too: nothing done, who holds it
        run = client.read_flow_run(report["flow_run_id"])
    assert run.state.is_cancelled() and run.state.message.startswith("phase 1 rollback inc-late: BUSY")
    assert "inc-slow" in run.state.message and "outcome:busy" in run.tags


def test_lock_records_survive_concurrent_writers_and_a_deleter(prefect_server):
    """The race that made a second run crash with 404: its record written while the first deleted its own."""
    import threading

    from prefect.variables import Variable

    from actor_rollback.flows.variables import put_variable

    errors, stop = [], threading.Event()

    def deleter():
        while not stop.is_set():
            Variable.unset("race_record_test")

    def writer(n):
        try:
            for i in range(15):
                put_variable("race_record_test", {"writer": n, "i": i})
        except Exception as exc:  # noqa: BLE001 — any failure is the finding
            errors.append(exc)

    import contextvars

    def thread(fn, *args):  # the session's Prefect settings (server URL) in each thread
        return threading.Thread(target=contextvars.copy_context().run, args=(fn, *args))

    threads = [thread(deleter)] + [thread(writer, n) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert errors == []
    put_variable("race_record_test", {"final": True})
    assert Variable.get("race_record_test") == {"final": True}


def test_a_prefect_server_restart_mid_rollback_never_locks_the_target_forever(sample, tmp_path, prefect_server):
    """Leases live in the server's memory: after a restart the first run's slot stays counted with no lease. Its
    release frees it by name, so the next rollback of the target starts at once and converges."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.variables import Variable

    from conftest import start_prefect_server, stop_process_group
    from actor_rollback.tasks.host_lock import target_key
    from actor_rollback.runbook.config import load_config

    home = tmp_path / "restart-home"
    server, url = start_prefect_server(home, tmp_path / "restart-1.log", TMPDIR=str(tmp_path))
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    config = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                         'command = "sleep 6"'})
    env = {"PREFECT_API_URL": url}
    record = f"rollback_lock_{target_key(sample.repo, load_config(config))}"
    try:
        first = start(sample.repo, "inc-restart-1", "--config", str(config), "--skip", "ci,benchmarks", env=env)
        deadline = time.monotonic() + 120
        with temporary_settings(updates={PREFECT_API_URL: url}):
            while (Variable.get(record, default=None) or {}).get("incident") != "inc-restart-1":
                assert time.monotonic() < deadline and first.poll() is None, finish(first)
                time.sleep(0.2)
        while remote_state(sample)[1] < 1 or remote_state(sample)[2] < 1:  # flag and revert pushed: now deploying
            assert time.monotonic() < deadline and first.poll() is None, finish(first)
            time.sleep(0.2)
        stop_process_group(server)  # mid-rollback: the first run is in its 6 s deploy
        server, url = start_prefect_server(home, tmp_path / "restart-2.log", TMPDIR=str(tmp_path), port=port)
        code_1, report_1, err_1 = finish(first)
        assert report_1 is not None and report_1["outcome"] != "busy", err_1
        started = time.monotonic()
        code_2, report_2, err_2 = finish(start(sample.repo, "inc-restart-2", "--config", str(config), "--skip",
                                               "ci,benchmarks", env=env))
        assert report_2["outcome"] != "busy" and code_2 != 4, err_2
        assert time.monotonic() - started < 60, "the second rollback waited for a slot nobody held"
        statuses = {s["name"]: s["status"] for s in report_2["steps"]}
        assert statuses["flag"] == "already-done" and statuses["push"] == "already-done"
    finally:
        stop_process_group(server)
