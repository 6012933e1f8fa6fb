"""P4.3: the last resort needs a person. Approve → backup ref, then force-with-lease; reject or
timeout → nothing force-pushed. Real server, real paused flow run, the real `approve` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import config_variant, paged_config_text, pager_block, run_git

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")


@pytest.fixture(scope="module")
def pager(prefect_server):
    sink = pager_block("test-oncall-pager")
    yield sink
    sink.server.shutdown()


def config_with(tmp_path: Path, timeout: int = 120) -> Path:
    return config_variant(tmp_path, paged_config_text("custom-webhook/test-oncall-pager", ("sre-oncall",)), **{
        "timeout_seconds = 5          # no answer": f"timeout_seconds = {timeout}  # no answer"})


def start_last_resort(sample, incident: str, config: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([CLI, "run", "4", "--repo", str(sample.repo), "--reason", "phase 4 broke everything",
                             "--incident", incident, "--only", "reset", "--config", str(config), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})


def wait_until_paused(name: str, timeout: float = 90) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
            if runs and runs[0].state and runs[0].state.is_paused():
                return str(runs[0].id)
            time.sleep(0.5)
    raise AssertionError(f"{name} never paused for its approval")


def approve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "approve", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=120)


def test_p4_3_approved_in_another_process_pushes_backup_then_force_with_lease(sample, tmp_path, pager):
    old_head = run_git(sample.origin, "rev-parse", "main")
    baseline = run_git(sample.repo, "log", "--format=%H", "--grep=Phase 0 start", "main")
    run = start_last_resort(sample, "inc-lr-yes", config_with(tmp_path))
    wait_until_paused("rollback-phase-4-inc-lr-yes")
    assert run_git(sample.origin, "rev-parse", "main") == old_head, "nothing happens before the approval"
    wrong = approve("rollback-phase-4-inc-lr-yes", "--approver", "aiko")
    assert wrong.returncode == 2 and "--branch is required" in wrong.stderr
    answer = approve("rollback-phase-4-inc-lr-yes", "--approver", "aiko", "--branch", "main", "--comment", "go")
    assert answer.returncode == 0, answer.stderr
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    reset = json.loads(out)["steps"][-1]
    assert reset["id"] == "P4.3" and reset["status"] == "done"
    assert "approved by aiko: go" in reset["evidence"]
    assert run_git(sample.origin, "rev-parse", "main") == baseline
    assert run_git(sample.origin, "rev-parse", "refs/backup/inc-lr-yes") == old_head
    paged = [b for b in pager.bodies if "inc-lr-yes" in b["subject"]]
    assert paged and "LAST RESORT" in paged[0]["subject"]
    assert "grafana: https://grafana.example.com/d/actor-scheduler" in paged[0]["text"]


def test_p4_3_rejected_changes_nothing(sample, tmp_path, pager):
    before = run_git(sample.origin, "for-each-ref")
    run = start_last_resort(sample, "inc-lr-no", config_with(tmp_path))
    run_id = wait_until_paused("rollback-phase-4-inc-lr-no")
    answer = approve(run_id, "--approver", "lead", "--reject", "--comment", "revert phase by phase instead")
    assert answer.returncode == 0, answer.stderr
    out, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    reset = json.loads(out)["steps"][-1]
    assert reset["status"] == "needs-human"
    assert any("rejected by lead: revert phase by phase instead" in line for line in reset["evidence"])
    assert run_git(sample.origin, "for-each-ref") == before


def test_p4_3_no_answer_before_the_timeout_changes_nothing(sample, tmp_path, pager):
    before = run_git(sample.origin, "for-each-ref")
    run = start_last_resort(sample, "inc-lr-late", config_with(tmp_path, timeout=3))
    out, err = run.communicate(timeout=120)
    assert run.returncode == 3, err
    reset = json.loads(out)["steps"][-1]
    assert any("no approval within 3 s" in line for line in reset["evidence"])
    assert run_git(sample.origin, "for-each-ref") == before


def test_p4_3_on_the_embedded_server_without_a_terminal_is_refused(sample, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "home")
    before = run_git(sample.origin, "for-each-ref")
    run = subprocess.run([CLI, "run", "4", "--repo", str(sample.repo), "--reason", "x", "--only", "reset",
                          "--json"], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=300)
    assert run.returncode == 3, run.stderr
    reset = json.loads(run.stdout)["steps"][-1]
    assert any("nobody else can answer" in line for line in reset["evidence"])
    assert run_git(sample.origin, "for-each-ref") == before


def test_approve_a_run_that_is_not_waiting_is_bad_input(prefect_server):
    answer = approve("no-such-run", "--approver", "x", "--branch", "main")
    assert answer.returncode == 2 and "no flow run with id or name 'no-such-run'" in answer.stderr
