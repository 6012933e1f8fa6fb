"""An incident day through `actor-rollback serve`'s receiver, for real: a Medium incident's owner decision (F.3)
waits suspended — no process, no runner slot — so a High incident behind two of them starts at once even with
`--limit 1`; the waits survive serve's SIGTERM and restart; an answer proceeds, and an unanswered one is reminded
once and escalated at its deadline by serve's watch. Alert-style incident ids (upper case) included."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from helpers import config_variant, paged_config_text, pager_block, run_git

from flows.outcome import has_ended

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")
DATA = Path(__file__).resolve().parent / "data"
TOKEN = "people-wait-token-0123456789abcdef"
ROLES = ("tech-lead", "sre-oncall", "project-manager", "architect", "development-team")


def alert(fingerprint: str, phase: str, regression_pct: float) -> dict:
    body = copy.deepcopy(json.loads((DATA / "alertmanager-v4-firing.json").read_text()))
    for item in body["alerts"]:
        item["fingerprint"] = fingerprint
        item["labels"]["phase"] = phase
        item["annotations"]["regression_pct"] = str(regression_pct)
        item["startsAt"] = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return body


def start_serve(repo: Path, config: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "PREFECT_LOGGING_LEVEL": "INFO"}
    process = subprocess.Popen([CLI, "serve", "--repo", str(repo), "--config", str(config), "--receiver-port",
                                str(port), "--limit", "1"], env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 90
    while log.read_text().count("being served") < 1 + log.read_text().count("== restart =="):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return process


def stop(process: subprocess.Popen) -> float:
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        raise
    return time.monotonic() - sent


def triage_run(prefix: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"triage-{prefix}")))
    return runs[0] if runs else None


def wait_for(check, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s\n{log.read_text()[-4000:]}")


def suspended(prefix: str):
    run = triage_run(prefix)
    return run if run and run.state and run.state.name == "Suspended" else None


def test_f3_owner_decisions_wait_suspended_a_high_incident_starts_past_them_and_serve_restarts_lose_nothing(
        sample, test_config, tmp_path, prefect_server):
    pager = pager_block("test-people-pager")
    config = config_variant(tmp_path, paged_config_text("custom-webhook/test-people-pager", ROLES), **{
        'medium = "24h"': 'medium = "150s"', 'reminder_before = "2h"': 'reminder_before = "130s"',
        "watch_seconds = 10 ": "watch_seconds = 1 "})
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}/alerts/alertmanager"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    serve = start_serve(sample.repo, config, port, log)
    try:
        for fingerprint in ("medium1", "medium2"):  # 7 %: Medium, the PM decides
            assert httpx.post(url, json=alert(fingerprint, "1", 7.0), headers=headers).status_code == 202
        first = wait_for(lambda: suspended("am-medium1-"), 90, "medium 1 suspended", log)
        second = wait_for(lambda: suspended("am-medium2-"), 90, "medium 2 suspended", log)
        assert "T" in first.name and "awaiting:owner-decision" in first.tags  # an alert-style id, upper case
        posted = time.monotonic()
        assert httpx.post(url, json=alert("high1", "0", 15.0), headers=headers).status_code == 202
        # --limit 1 and two Mediums waiting: the High one runs at once, since no wait holds a slot
        wait_for(lambda: (r := triage_run("am-high1-")) and r.state.type.value in ("RUNNING", "COMPLETED", "PAUSED")
                 and r, 30, "the High triage started", log)
        assert time.monotonic() - posted < 30
        high = wait_for(lambda: (r := triage_run("am-high1-")) and has_ended(r) and r, 120, "High ended", log)
        assert "severity:high" in high.tags, high.tags
        answer = subprocess.run([CLI, "approve", first.name, "--approver", "Mia (PM)", "--reject", "--comment",
                                 "next release"], capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0, answer.stderr
        done = wait_for(lambda: (r := triage_run("am-medium1-")) and r.state.is_final() and r, 90, "medium 1", log)
        assert done.state.is_completed(), done.state
        assert "Mia (PM)" in run_git(sample.origin, "show", f"main:docs/issues/{first.name.removeprefix('triage-')}.md")
        assert stop(serve) < 10
        serve = None
        assert suspended("am-medium2-") is not None  # SIGTERM took nothing from the wait
        with open(log, "a") as out:
            out.write("== restart ==\n")
        serve = start_serve(sample.repo, config, port, log)
        escalated = wait_for(lambda: (r := triage_run("am-medium2-")) and r.state.is_final() and r, 200,
                             "medium 2 escalated at its deadline", log)
        assert escalated.state.is_failed() and "ask-owner failed" in escalated.state.message
        about_second = [b["subject"] for b in pager.bodies if second.name.removeprefix("triage-") in b["subject"]]
        assert sum("REMINDER" in s for s in about_second) == 1, about_second  # once, across the restart
        assert any("ESCALATION" in s for s in about_second), about_second
    finally:
        if serve is not None:
            stop(serve)
        pager.server.shutdown()
