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
from prefect.input import read_flow_run_input
from conftest import free_port
from helpers import config_variant, paged_config_text, pager_block, run_git, wait_until

from actor_rollback.deployments.person_waits import PersonWaits
from actor_rollback.flows.outcome import has_ended, pause_key
from actor_rollback.runbook.config import load_config

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
    return wait_until(check, timeout, what, lambda: log.read_text()[-4000:])


def suspended(prefix: str):
    run = triage_run(prefix)
    return run if run and run.state and run.state.name == "Suspended" else None


def test_f3_owner_decisions_wait_suspended_a_high_incident_starts_past_them_and_serve_restarts_lose_nothing(
        sample, test_config, tmp_path, prefect_server):
    pager = pager_block("test-people-pager")
    config = config_variant(tmp_path, paged_config_text("custom-webhook/test-people-pager", ROLES), **{
        'medium = "24h"': 'medium = "150s"', 'reminder_before = "2h"': 'reminder_before = "130s"',
        "watch_seconds = 10 ": "watch_seconds = 1 ",
        "high_in_process = true ": "high_in_process = false "})  # the High through the runner's one slot: the proof
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
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with get_client(sync_client=True) as client:  # what serve's runner does to a run it holds when SIGTERMed
            client.set_flow_run_state(first.id, Cancelled(message="Runner is shutting down."), force=True)
        # put back by serve, it runs from the top and waits again — under a fresh pause key, not asked twice
        first = wait_for(lambda: (r := suspended("am-medium1-")) and r.state.timestamp > first.state.timestamp and r,
                         90, "medium 1 waiting again after its runner's shutdown", log)
        asked = [b for b in pager.bodies if first.name.removeprefix("triage-") in b["subject"]
                 and "decision is needed" in b["subject"]]
        assert len(asked) == 1, asked
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
        wait_for(lambda: any(second.name.removeprefix("triage-") in b["subject"] and "REMINDER" in b["subject"]
                             for b in pager.bodies), 90, "the reminder, 130 s before the deadline", log)
        # the deadline itself is 150 s away: the watch's check at that moment is what serve's thread runs then
        deadline = datetime.fromisoformat(read_flow_run_input(
            f"{pause_key('owner-decision', second.parameters['incident']['id'])}-deadline", flow_run_id=second.id))
        assert PersonWaits(load_config(config)).check(now=deadline)[second.name] == "escalated"
        escalated = wait_for(lambda: (r := triage_run("am-medium2-")) and r.state.is_final() and r, 120,
                             "medium 2 escalated at its deadline", log)
        assert escalated.state.is_failed() and "ask-owner failed" in escalated.state.message
        about_second = [b["subject"] for b in pager.bodies if second.name.removeprefix("triage-") in b["subject"]]
        assert sum("REMINDER" in s for s in about_second) == 1, about_second  # once, across the restart
        assert any("ESCALATION" in s for s in about_second), about_second
    finally:
        if serve is not None:
            stop(serve)
        pager.server.shutdown()


def read_run(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def needs_human_run(sample, test_config, incident: str):
    """A Phase 0 rollback: it ends needing a person (P0.2 review, P0.4 redesign), Paused with no process."""
    from actor_rollback.deployments.cli import run_phase_flow

    report = run_phase_flow("0", sample.repo, "PoC abandoned", incident, False, [], [], "", test_config,
                            triggered_by="test")
    assert report.outcome == "needs-human", report.steps
    return read_run(report.flow_run_id)


def test_a_needs_human_run_asks_for_an_acknowledgement_and_the_uis_resume_closes_it_with_the_record(
        sample, test_config, prefect_server):
    from prefect.flow_runs import resume_flow_run
    from prefect.input import read_flow_run_input

    from actor_rollback.flows.outcome import ACK_KEYSET

    run = needs_human_run(sample, test_config, "ack-ui")
    assert run.state.is_paused() and run.state.state_details.run_input_keyset == ACK_KEYSET  # Resume shows a form
    schema = read_flow_run_input(ACK_KEYSET["schema"], flow_run_id=run.id)
    assert {"person", "did", "result"} <= set(schema["properties"])
    resume_flow_run(run.id, run_input={"person": "Aiko", "did": "reviewed the design docs; ADR-7 filed",
                                       "result": "resolved"})  # what the UI's form sends
    assert read_run(run.id).state.is_running()  # Prefect alone would leave it Running for ever, with no process
    assert PersonWaits(load_config(test_config)).check()[run.name] == "acknowledged: Completed"
    closed = read_run(run.id)
    assert closed.state.is_completed(), closed.state
    assert closed.state.message.startswith("ACKNOWLEDGED by Aiko (resolved): reviewed the design docs; ADR-7 filed")
    assert "P0.2" in closed.state.message  # what the person was asked, kept beside what they did
    assert {"acknowledged", "closed:resolved", "outcome:needs-human"} <= set(closed.tags)


def test_ack_closes_a_needs_human_run_as_failed_and_refuses_a_run_that_waits_for_nothing(
        sample, test_config, prefect_server):
    run = needs_human_run(sample, test_config, "ack-cli")
    closed = subprocess.run([CLI, "ack", run.name, "--person", "Ken", "--did", "the redesign is blocked",
                             "--result", "failed"], capture_output=True, text=True, timeout=120)
    assert closed.returncode == 0, closed.stderr
    state = read_run(run.id).state
    assert state.is_failed() and state.message.startswith("ACKNOWLEDGED by Ken (failed): the redesign is blocked")
    again = subprocess.run([CLI, "ack", run.name, "--person", "Ken", "--did", "x", "--result", "resolved"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "not waiting for a person's acknowledgement" in " ".join(again.stderr.split())
    assert read_run(run.id).state.is_failed()  # nothing changed


def test_an_operators_cancel_of_a_waiting_run_ends_it_at_once_told_apart_from_busy(sample, test_config, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    run = needs_human_run(sample, test_config, "cancel-ui")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(message="cancelled from the UI"))  # the UI's Cancel
    assert PersonWaits(load_config(test_config)).check()[run.name] == "cancelled"
    cancelled = read_run(run.id)
    assert cancelled.state.is_cancelled() and cancelled.state.message.startswith("cancelled by an operator")
    assert "outcome:cancelled" in cancelled.tags and "outcome:needs-human" not in cancelled.tags
    assert not cancelled.state.message.startswith("phase 0 rollback cancel-ui: BUSY")
