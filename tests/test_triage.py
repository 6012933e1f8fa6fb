"""Triage F.1–F.4 as real flow runs on the session's Prefect server, against sample workspaces with
bare remotes; notifications and the issue tracker are real HTTP servers on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from actor_rollback.flows.outcome import STATE_NAMES, data_of
from helpers import HttpSink, config_variant, paged_config_text, pager_block, run_git

from actor_rollback.runbook.model import Incident, TriageReport

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")
DATA = Path(__file__).resolve().parent / "data"  # real Alertmanager bodies, from ../shared/reference/samples
ROLES = ("tech-lead", "sre-oncall", "project-manager", "architect", "development-team")


@pytest.fixture(scope="module")
def pager(prefect_server):
    sink = pager_block("test-triage-pager")
    yield sink
    sink.server.shutdown()


def triage_config(tmp_path: Path, **replacements: str) -> Path:
    """The session's test config, every role paged through the test pager, with replacements."""
    return config_variant(tmp_path, paged_config_text("custom-webhook/test-triage-pager", ROLES), **replacements)


def run_triage(sample, config: Path, **incident) -> TriageReport:
    from actor_rollback.flows.triage import triage
    from prefect.client.orchestration import get_client

    skip = incident.pop("skip", None)
    answer = incident.pop("owner_decision", None)
    state = triage(incident=Incident(phase="1", **incident), repo=str(sample.repo), config=str(config), skip=skip,
                   owner_decision=answer, return_state=True)
    report = TriageReport.model_validate(data_of(state))
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.name == STATE_NAMES[report.outcome] and run.state.message == report.summary()  # one truth
    assert f"outcome:{report.outcome}" in run.tags
    return report


def remote_file(sample, rel: str) -> str:
    return run_git(sample.origin, "show", f"main:{rel}")


def messages_for(pager: HttpSink, incident: str) -> list[dict]:
    return [b for b in pager.bodies if incident in b["subject"]]


def artifact(key: str) -> str:
    from prefect.artifacts import Artifact

    found = Artifact.get(key)
    assert found is not None, key
    return found.data


def test_f1_critical_turns_the_flag_off_pushes_deploys_and_pages_on_call(sample, test_config, pager, tmp_path):
    config = triage_config(tmp_path)
    before = run_git(sample.origin, "rev-parse", "main")
    alert_start = datetime.now(timezone.utc) - timedelta(seconds=5)
    report = run_triage(sample, config, id="inc-crit", kind="service-down", summary="actor-system is down",
                        started_at=alert_start)
    d = report.decision
    assert (d.severity, d.action, d.owner, d.rule) == ("critical", "flag-off", "sre-oncall", "S.C/F.1")
    ran = {s.name: s.status for s in report.rollback.steps if s.status != "skipped"}
    assert ran == {"flag": "done", "push": "done", "deploy": "done"}, report.rollback.steps  # no revert, no benchmarks
    assert run_git(sample.origin, "rev-list", "--count", f"{before}..main") == "1"  # the flag commit only
    assert "Runbook-Step: P1.1" in run_git(sample.origin, "log", "-1", "--format=%B", "main")
    changed = run_git(sample.origin, "diff", "--name-only", f"{before}..main").split()
    assert changed and all(path.endswith("Cargo.toml") for path in changed)
    for path in changed:
        default = next(line for line in remote_file(sample, path).splitlines() if line.startswith("default"))
        assert "new-scheduler" not in default, (path, default)
    paged = messages_for(pager, "inc-crit")
    assert [m["subject"] for m in paged][:1] == ["[actor-rollback] CRITICAL phase 1 inc-crit: flag-off started"]
    assert any("flag-off needs-human" in m["subject"] or "flag-off done" in m["subject"] for m in paged)
    assert all("grafana: https://grafana.example.com/d/actor-scheduler" in m["text"] for m in paged)  # X.2 links
    record = artifact("triage-inc-crit")
    assert "**critical** by S.C/F.1" in record and "owner: sre-oncall" in record and "decided by policy" in record
    assert pager.url not in record  # the block's address is a secret: never in the record


def test_the_time_to_mitigation_recorded_by_the_run_matches_its_own_state_timestamps(test_config):
    """The F.1 run above: its `-ttm` artifact against the push and deploy task runs' end times."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    rows = {r["milestone"]: r for r in json.loads(artifact("rollback-phase-1-inc-crit-ttm"))}
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["rollback-phase-1-inc-crit"])))
        tasks = {t.name: t for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))}
    origin = datetime.fromisoformat(rows["incident started"]["at"])
    for milestone, task in (("pushed", "P1.2b push_rollback"), ("deploy done", "P1.3a deploy_with_command")):
        at = datetime.fromisoformat(rows[milestone]["at"])
        assert abs((at - tasks[task].end_time).total_seconds()) < 0.5, (milestone, at, tasks[task].end_time)
        assert rows[milestone]["seconds"] == pytest.approx((at - origin).total_seconds(), abs=0.01)
    assert rows["pushed"]["seconds"] > 5  # counted from the alert's start, 5 s before the triage
    assert rows["incident started"]["seconds"] == 0 and rows["run started"]["seconds"] > 5


def test_f2_high_rolls_the_phase_back_and_tells_the_tech_lead(sample, test_config, pager, tmp_path):
    config = triage_config(tmp_path)
    report = run_triage(sample, config, id="inc-high", kind="perf-regression", regression_pct=25.0,
                        skip=["ci", "benchmarks"])
    assert (report.decision.severity, report.decision.owner) == ("high", "tech-lead")
    steps = {s.name: s.status for s in report.rollback.steps}
    assert steps["revert"] == "done" and steps["push"] == "done" and steps["benchmarks"] == "skipped"
    revert = next(s for s in report.rollback.steps if s.name == "revert").data["revert"]
    assert run_git(sample.origin, "merge-base", "--is-ancestor", revert, "main") == ""  # the revert is on the remote
    assert any(m["subject"].endswith("rollback started") for m in messages_for(pager, "inc-high"))
    assert report.exit_code == 3  # benchmarks skipped on request: P1.C3 stays unverified, never a pass


def test_f3_medium_reminds_the_owner_then_escalates_when_nobody_decides(sample, test_config, pager, tmp_path):
    config = triage_config(tmp_path, **{'medium = "24h"': 'medium = "6s"', 'reminder_before = "2h"': 'reminder_before = "3s"'})
    before = run_git(sample.origin, "rev-parse", "main")
    report = run_triage(sample, config, id="inc-med-quiet", kind="perf-regression", regression_pct=7.0)
    assert report.decision.severity == "medium" and report.rollback is None
    subjects = [m["subject"] for m in messages_for(pager, "inc-med-quiet")]
    assert subjects[0].endswith("your decision is needed")
    assert any("REMINDER" in s for s in subjects) and any("ESCALATION" in s for s in subjects), subjects
    assert subjects.index(next(s for s in subjects if "REMINDER" in s)) < subjects.index(
        next(s for s in subjects if "ESCALATION" in s))
    ask = next(s for s in report.steps if s.name == "ask-owner")
    assert ask.status == "failed" and "escalated to project-manager, tech-lead" in ask.evidence[0]
    assert run_git(sample.origin, "rev-parse", "main") == before  # nothing changed without a decision


def test_f3_medium_approved_by_the_owner_with_the_approve_command_rolls_back(sample, test_config, pager, tmp_path):
    from test_approval import wait_until_paused

    config = triage_config(tmp_path)
    process = subprocess.Popen([CLI, "triage", "--repo", str(sample.repo), "--config", str(config), "--kind",
                                "perf-regression", "--regression-pct", "6.5", "--incident", "inc-med-yes",
                                "--skip", "ci,benchmarks", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL)
    run_id = wait_until_paused("triage-inc-med-yes")
    asked = pager.wait_for(lambda b: "inc-med-yes" in b["subject"] and "decision is needed" in b["subject"])
    assert f"actor-rollback approve {run_id}" in asked["text"]
    answer = subprocess.run([CLI, "approve", run_id, "--approver", "Mia (PM)", "--comment", "users notice it"],
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    out, err = process.communicate(timeout=240)
    result = json.loads(out)
    assert result["severity"] == "medium" and result["decided_by"] == "Mia (PM)", err
    assert {s["name"]: s["status"] for s in result["rollback"]["steps"]}["revert"] == "done"
    assert "Mia (PM): roll back — users notice it" in artifact("triage-inc-med-yes")
    audit = subprocess.run([CLI, "audit", "--json"], capture_output=True, text=True, timeout=60)
    row = next(r for r in json.loads(audit.stdout)["runs"] if r["run"] == "triage-inc-med-yes")
    assert (row["severity"], row["rule"], row["decided_by"]) == ("medium", "S.M/F.3", "Mia (PM)")


def test_f3_medium_rejected_registers_an_issue_instead(sample, test_config, pager, tmp_path):
    config = triage_config(tmp_path)
    report = run_triage(sample, config, id="inc-med-no", kind="crash", crashes_per_hour=0.5,
                        owner_decision={"approved": False, "approver": "Mia (PM)"})
    assert report.decision.severity == "medium" and report.decision.decided_by == "Mia (PM)"
    assert report.rollback is None
    assert "Mia (PM)" in remote_file(sample, "docs/issues/inc-med-no.md")


def test_f4_low_registers_the_issue_on_the_remote_once(sample, test_config, pager, tmp_path):
    config = triage_config(tmp_path)
    first = run_triage(sample, config, id="inc-low", kind="docs", summary="features.md misses new-scheduler")
    assert first.decision.severity == "low" and first.exit_code == 0, first.steps
    text = remote_file(sample, "docs/issues/inc-low.md")
    assert text.startswith("# features.md misses new-scheduler (phase 1) — inc-low")
    assert "severity: **low** (S.L/F.4" in text
    head = run_git(sample.origin, "rev-parse", "main")
    again = run_triage(sample, config, id="inc-low", kind="docs", summary="features.md misses new-scheduler")
    assert next(s for s in again.steps if s.name == "register-issue").status == "already-done"
    assert run_git(sample.origin, "rev-parse", "main") == head
    assert run_git(sample.repo, "status", "--porcelain") == ""


def test_f4_a_refused_commit_is_the_steps_failure_with_its_report_state_and_notification(sample, test_config, pager,
                                                                                       tmp_path):
    run_git(sample.repo, "config", "commit.gpgsign", "true")
    run_git(sample.repo, "config", "gpg.program", "false")  # every commit refused, as with a broken signing setup
    head = run_git(sample.origin, "rev-parse", "main")
    report = run_triage(sample, triage_config(tmp_path), id="inc-low-refused", kind="docs", summary="a typo")
    filed = next(s for s in report.steps if s.name == "register-issue")
    assert filed.status == "failed" and report.outcome == "failed" and report.exit_code == 1, report.steps
    assert any("commit" in line for line in filed.evidence), filed.evidence
    told = messages_for(pager, "inc-low-refused")
    assert told and "issue NOT registered (failed)" in told[-1]["subject"], told
    assert run_git(sample.origin, "rev-parse", "main") == head
    assert run_git(sample.repo, "status", "--porcelain") == ""


def test_f4_http_issue_sink_sends_the_token_but_never_records_it(sample, test_config, pager, tmp_path, monkeypatch):
    tracker = HttpSink(status=201)
    monkeypatch.setenv("TEST_TRACKER_TOKEN", "s3cret-tracker-token")
    config = triage_config(tmp_path, **{'issue_sink = "file"': 'issue_sink = "http"',
                                        'issue_url = ""': f'issue_url = "{tracker.url}"',
                                        'issue_token_env = ""': 'issue_token_env = "TEST_TRACKER_TOKEN"'})
    report = run_triage(sample, config, id="inc-low-http", kind="incompatibility")
    assert report.exit_code == 0, report.steps
    assert tracker.bodies[0]["incident"] == "inc-low-http" and tracker.bodies[0]["labels"] == ["actor-rollback", "phase:1"]
    assert tracker.headers[0]["Authorization"] == "Bearer s3cret-tracker-token"
    assert tracker.headers[0]["Idempotency-Key"] == "inc-low-http"
    assert "s3cret-tracker-token" not in artifact("triage-inc-low-http")
    assert "s3cret-tracker-token" not in json.dumps(report.model_dump(mode="json"))
    tracker.server.shutdown()


def test_cli_dry_run_decides_and_acts_on_nothing(sample, test_config):
    before = run_git(sample.origin, "rev-parse", "main")
    run = subprocess.run([CLI, "triage", "--kind", "perf-regression", "--regression-pct", "12", "--phase", "2a",
                          "--repo", str(sample.repo), "--dry-run", "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert {k: result[k] for k in ("severity", "action", "owner", "notify", "phase")} == {
        "severity": "high", "action": "rollback", "owner": "tech-lead", "notify": ["tech-lead"], "phase": "2A"}
    deadline = result["deadline"]
    assert time.strptime(deadline[:19], "%Y-%m-%dT%H:%M:%S") and deadline.endswith("+00:00")
    assert run_git(sample.origin, "rev-parse", "main") == before


@pytest.mark.parametrize("args,message", [
    (["--kind", "perf-regression"], "needs its size; give --regression-pct N"),
    (["--kind", "outage"], "--kind 'outage': expected one of service-down"),
    (["--kind", "docs", "--phase", "7"], "unknown phase '7'"),
    ([], "give either --alert FILE or --kind KIND"),
    (["--alert", "{data}/alertmanager-v4-firing.json"], "no 'phase' label"),
    (["--alert", "{data}/alertmanager-v4-resolved.json"], "no 'phase' label"),
    (["--kind", "docs"], "--repo is needed to act"),
])
def test_cli_bad_input_exits_2_naming_the_fix(args, message):
    args = [a.format(data=DATA) for a in args]
    run = subprocess.run([CLI, "triage", *args, "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in json.loads(run.stdout)["error"], run.stdout + run.stderr


def test_f3_medium_on_the_embedded_server_hands_the_decision_to_its_owner_and_changes_nothing(sample, test_config,
                                                                                               tmp_path):
    """Without PREFECT_API_URL the run lives on Prefect's in-process server: nobody else can answer a
    pause there, so the run does not wait for one — it says who decides by when, and touches nothing."""
    before = run_git(sample.origin, "rev-parse", "main")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "embedded-home")
    done = subprocess.run([CLI, "triage", "--repo", str(sample.repo), "--config", str(test_config), "--kind",
                           "perf-regression", "--regression-pct", "7", "--incident", "inc-med-embedded", "--json"],
                          capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    result = json.loads(done.stdout)
    assert done.returncode == 3, done.stderr[-2000:]
    assert (result["severity"], result["owner"]) == ("medium", "project-manager")
    ask = next(s for s in result["steps"] if s["name"] == "ask-owner")
    assert ask["status"] == "needs-human"
    assert "on the embedded server nobody can answer this run; project-manager decides by " + result["deadline"] \
        in ask["evidence"][0]
    assert result.get("rollback") is None
    assert run_git(sample.origin, "rev-parse", "main") == before


def test_f1_a_critical_incident_on_a_busy_target_tells_the_on_call_at_once_that_mitigation_is_blocked(
        sample, test_config, pager, tmp_path):
    from test_rerun_and_concurrency import finish, start, wait_until_held

    config = triage_config(tmp_path, **{"wait_seconds = 120": "wait_seconds = 1",
                                        'command = "./scripts/deploy.sh production --version={version}"':
                                        'command = "sleep 8"'})
    holder = start(sample.repo, "inc-holder", "--config", str(config), "--skip", "ci,benchmarks")
    try:
        wait_until_held(sample.repo, config, "inc-holder")
        report = run_triage(sample, config, id="inc-blocked", kind="service-down", summary="down again")
    finally:
        finish(holder)
    assert report.rollback.outcome == "busy" and report.outcome == "busy" and report.exit_code == 4
    blocked = [m for m in messages_for(pager, "inc-blocked") if "MITIGATION BLOCKED" in m["subject"]]
    assert blocked and "inc-holder" in blocked[0]["text"] and "The flag is NOT off yet" in blocked[0]["text"]


def test_f4_low_incidents_at_once_each_file_their_issue_in_a_commit_of_its_own_under_the_target_lock(
        sample, test_config, pager, tmp_path):
    """Six Low incidents on one target at the same moment (an alert storm of minor findings): the issue files are
    written under the target's lock, so no commit holds two incidents' files, none fails for a race, and the
    clone is left clean with nothing unpushed — the next Critical finds the target as it should."""
    config = triage_config(tmp_path)
    ids = [f"inc-low-{n}" for n in range(6)]
    runs = [subprocess.Popen([CLI, "triage", "--repo", str(sample.repo), "--config", str(config), "--kind", "docs",
                              "--incident", ident, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, stdin=subprocess.DEVNULL) for ident in ids]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in runs]
    assert [code for code, _, _ in results] == [0] * 6, [err[-1500:] for code, _, err in results if code]
    for ident in ids:
        files = run_git(sample.origin, "log", "--format=", "--name-only", f"--grep=register issue {ident} ", "main")
        assert files.split() == [f"docs/issues/{ident}.md"], (ident, files)
    assert run_git(sample.repo, "status", "--porcelain") == ""
    assert run_git(sample.repo, "rev-list", "origin/main..main") == ""
    critical = run_triage(sample, config, id="inc-crit-after-lows", kind="service-down", skip=["benchmarks"])
    assert {s.name: s.status for s in critical.rollback.steps}["flag"] == "done", critical.rollback.steps


def _receiver_with_flag_off_first(sample, config: Path, monkeypatch, tmp_path):
    from actor_rollback.deployments.receiver import AlertReceiver, WarmTriage, deployment_starter
    from actor_rollback.runbook.config import load_config

    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", "flag-off-first-token-0123456789")
    full = load_config(str(config))
    warm = WarmTriage(str(sample.repo), str(config), flag_off_first=True)
    return AlertReceiver(full.receiver, deployment_starter("triage/not-served", {}), port=0,
                         spool_dir=tmp_path / "spool", critical_starter=warm, severity=full.severity).start()


def _post_incident(receiver, **incident) -> dict:
    import httpx

    answer = httpx.post(f"{receiver.url}/incidents", json={"phase": "1", **incident},
                        headers={"Authorization": "Bearer flag-off-first-token-0123456789"}, timeout=10)
    assert answer.status_code == 202, answer.text
    return answer.json()


def test_f1_a_critical_alerts_flag_goes_off_on_the_remote_while_prefect_is_down(sample, test_config, tmp_path,
                                                                                monkeypatch):
    """F.1 first: the receiver pushes the flag-off the moment the alert is stored, before any Prefect call — so a
    Prefect server that is down (or slow) does not hold the mitigation; the triage waits in the spool for it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    before = run_git(sample.origin, "rev-parse", "main")
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens there
        receiver = _receiver_with_flag_off_first(sample, test_config, monkeypatch, tmp_path)
    try:
        posted = time.monotonic()
        assert _post_incident(receiver, id="inc-first-down", kind="service-down")["accepted"] == ["inc-first-down"]
        while run_git(sample.origin, "rev-parse", "main") == before:
            assert time.monotonic() - posted < 20, "the flag-off never reached the remote while Prefect was down"
            time.sleep(0.05)
        message = run_git(sample.origin, "log", "-1", "--format=%B", "main")
        assert "Runbook-Step: P1.1" in message and "Rollback-Incident: inc-first-down" in message
        assert run_git(sample.origin, "rev-list", "--count", f"{before}..main") == "1"
        health = receiver.health()
        assert health["backlog"] == 1 and health["started"] == 0  # its triage waits for Prefect, not dropped
    finally:
        receiver.stop(timeout=2, grace=1)
    assert run_git(sample.repo, "worktree", "list").count("\n") == 0  # the mitigation's own tree is gone


def test_f1_the_triage_run_records_the_receivers_flag_off_first_as_done_then(sample, test_config, pager, tmp_path,
                                                                             monkeypatch):
    """With Prefect up: one flag-off commit; the rollback's record says P1.1 and the push were done by the receiver
    before the run (checked again by it), and its time to mitigation counts the push when it happened."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    config = triage_config(tmp_path)
    before = run_git(sample.origin, "rev-parse", "main")
    receiver = _receiver_with_flag_off_first(sample, config, monkeypatch, tmp_path)
    try:
        _post_incident(receiver, id="inc-first-up", kind="service-down", summary="actor-system is down")
        deadline = time.monotonic() + 120
        while not (pushed := _ttm_row("rollback-phase-1-inc-first-up-ttm", "deploy done")):
            assert time.monotonic() < deadline, "the Critical's rollback never finished"
            time.sleep(0.5)
    finally:
        receiver.stop(timeout=5, grace=30)
    assert run_git(sample.origin, "rev-list", "--count", f"{before}..main") == "1"  # done once, not twice
    with get_client(sync_client=True) as client:
        [run] = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["rollback-phase-1-inc-first-up"])))
    table = artifact("rollback-phase-1-inc-first-up-steps")
    steps = {s["step"]: s for s in (json.loads(table) if isinstance(table, str) else table)}
    assert steps["flag"]["status"] == "done" and steps["push"]["status"] == "done", steps
    assert steps["flag"]["evidence"].startswith("done by the alert receiver before this run")
    assert "checked again by this run" in steps["flag"]["evidence"]
    pushed = datetime.fromisoformat(_ttm_row("rollback-phase-1-inc-first-up-ttm", "pushed")["at"])
    assert pushed < run.start_time, (pushed, run.start_time)  # the milestone is the receiver's push, not the check


def _ttm_row(key: str, milestone: str) -> dict | None:
    from prefect.artifacts import Artifact

    found = Artifact.get(key)
    if found is None:
        return None
    rows = json.loads(found.data) if isinstance(found.data, str) else found.data
    return next((r for r in rows if r["milestone"] == milestone), None)


def test_f1_flag_off_first_waits_out_a_moments_hold_of_the_target_and_then_pushes(sample, test_config, tmp_path,
                                                                                 monkeypatch):
    """A Low incident's issue commit holds the target's host lock for a moment (seen on the incident day: the
    Critical's flag-off was left to its run, 14 s later): the receiver waits that moment out, then pushes."""
    import threading

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from actor_rollback.tasks.host_lock import HostLock, target_key
    from actor_rollback.runbook.config import load_config

    cfg = load_config(str(test_config))
    held = HostLock(Path(cfg.concurrency.host_lock_dir), target_key(sample.repo, cfg))
    assert held.try_acquire({"incident": "inc-low-moment", "pid": os.getpid()})
    threading.Timer(1.5, held.release).start()
    before = run_git(sample.origin, "rev-parse", "main")
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        receiver = _receiver_with_flag_off_first(sample, test_config, monkeypatch, tmp_path)
    try:
        posted = time.monotonic()
        _post_incident(receiver, id="inc-first-after-low", kind="service-down")
        while run_git(sample.origin, "rev-parse", "main") == before:
            assert time.monotonic() - posted < 8, "the flag-off was not pushed once the moment's hold ended"
            time.sleep(0.05)
        assert time.monotonic() - posted >= 1.4  # not before the holder let go
    finally:
        receiver.stop(timeout=2, grace=1)


def _hold_target(sample, config: Path, incident: str):
    from actor_rollback.tasks.host_lock import HostLock, target_key
    from actor_rollback.runbook.config import load_config

    cfg = load_config(str(config))
    held = HostLock(Path(cfg.concurrency.host_lock_dir), target_key(sample.repo, cfg))
    assert held.try_acquire({"incident": incident, "pid": os.getpid()})
    return held


def _first_while_held(sample, config: Path, holder: str, incident: str) -> list:
    """The receiver's flag-off first for `incident` while `holder`'s rollback holds the target."""
    import actor_rollback.tasks.flag_off_first as first_module

    held = _hold_target(sample, config, holder)
    try:
        return first_module.flag_off_first(Incident(id=incident, phase="1", kind="service-down"), str(sample.repo),
                                           str(config))
    finally:
        held.release()


def test_f1_a_critical_on_a_target_another_rollback_holds_finds_the_flag_already_off_on_the_remote_at_once(
        sample, test_config, monkeypatch):
    """A second Critical on a target whose first Critical's rollback still holds it (its deploy): the flag is
    already off on the remote, so the receiver says so at once from the remote's commit — no wait for the lock
    (seen on the incident day: 1.5 s and 3.4 s), no write to the clone."""
    import actor_rollback.tasks.flag_off_first as first_module
    from conftest import tree_digest

    first = first_module.flag_off_first(Incident(id="inc-crit-one", phase="1", kind="service-down"),
                                         str(sample.repo), str(test_config))
    assert [(r.name, r.status) for r in first] == [("flag", "done"), ("push", "done")], first
    pushed = run_git(sample.origin, "rev-parse", "main")
    monkeypatch.setattr(first_module, "FIRST_LOCK_WAIT_SECONDS", 60.0)  # were it to wait, the test would show it
    held = _hold_target(sample, test_config, "inc-crit-one")
    clone_before = tree_digest(sample.repo)
    try:
        started = time.monotonic()
        second = first_module.flag_off_first(Incident(id="inc-crit-two", phase="1", kind="service-down"),
                                              str(sample.repo), str(test_config))
        took = time.monotonic() - started
    finally:
        held.release()
    assert [(r.name, r.status) for r in second] == [("flag", "already-done"), ("push", "already-done")], second
    assert took < 30, f"it waited for the lock's holder ({took:.1f} s)"
    flag, push = second
    assert "inc-crit-one" in flag.evidence[0] and pushed[:10] in flag.evidence[1], flag.evidence
    assert push.data["pushed"] == pushed and flag.finished_at is not None
    assert run_git(sample.origin, "rev-parse", "main") == pushed  # nothing pushed
    record = sample.repo / ".git" / "actor-rollback" / "first" / "inc-crit-two.json"
    assert json.loads(record.read_text())[0]["status"] == "already-done"  # the tool's own record of the finding
    record.unlink()
    assert tree_digest(sample.repo) == clone_before  # nothing else written: refs, index, work tree as they were


def test_f1_a_critical_on_a_held_target_whose_flag_is_still_on_remotely_leaves_it_to_its_run(sample, test_config,
                                                                                          monkeypatch):
    """The holder has not pushed the flag off (a High's rollback mid-revert): nothing is claimed from the remote;
    after the short wait the receiver leaves the flag-off to the Critical's run, which waits for the target."""
    import actor_rollback.tasks.flag_off_first as first_module

    before = run_git(sample.origin, "rev-parse", "main")
    monkeypatch.setattr(first_module, "FIRST_LOCK_WAIT_SECONDS", 0.5)
    assert _first_while_held(sample, test_config, "inc-high-mid-revert", "inc-crit-held") == []
    assert run_git(sample.origin, "rev-parse", "main") == before


def test_f1_the_run_records_a_flag_the_receiver_found_off_on_the_remote_at_the_time_it_found_it(sample, pager,
                                                                                                 tmp_path):
    """The Critical's run (the target free again) finds flag and push done; its record says the receiver found them
    done on the remote before the run, and the time to mitigation counts that moment, not the run's check."""
    import actor_rollback.tasks.flag_off_first as first_module

    config = triage_config(tmp_path)
    first_module.flag_off_first(Incident(id="inc-crit-a", phase="1", kind="service-down"), str(sample.repo),
                                 str(config))
    found = _first_while_held(sample, config, "inc-crit-a", "inc-crit-b")
    assert [r.status for r in found] == ["already-done", "already-done"], found
    from actor_rollback.flows.triage import triage

    state = triage(incident=Incident(id="inc-crit-b", phase="1", kind="service-down"),
                                 repo=str(sample.repo), config=str(config), skip=["benchmarks"], done_first=found,
                                 return_state=True)
    report = TriageReport.model_validate(data_of(state))
    steps = {s.name: s for s in report.rollback.steps}
    assert steps["flag"].status == "already-done", steps["flag"]
    assert steps["flag"].evidence[0].startswith("found done on the remote by the alert receiver before this run")
    assert "checked again by this run" in steps["flag"].evidence[-1]
    pushed = datetime.fromisoformat(_ttm_row("rollback-phase-1-inc-crit-b-ttm", "pushed")["at"])
    assert pushed == found[1].finished_at, (pushed, found[1].finished_at)


def test_f1_a_triage_run_in_another_process_still_records_when_the_receiver_pushed_the_flag_off(sample, pager,
                                                                                                 tmp_path):
    """A restart takes serve down after its receiver pushed a Critical's flag off but before it started the run; the
    next serve starts it with nothing in hand. The record kept beside the clone still gives the push's time."""
    import actor_rollback.tasks.flag_off_first as first_module
    from actor_rollback.flows.triage import triage

    config = triage_config(tmp_path)
    incident = Incident(id="inc-crit-restarted", phase="1", kind="service-down")
    first = first_module.flag_off_first(incident, str(sample.repo), str(config))
    assert [r.status for r in first] == ["done", "done"], first
    state = triage(incident=incident, repo=str(sample.repo), config=str(config), skip=["benchmarks"],
                   return_state=True)  # no done_first: as from the next serve
    report = TriageReport.model_validate(data_of(state))
    steps = {s.name: s for s in report.rollback.steps}
    assert steps["push"].evidence[0].startswith("done by the alert receiver before this run"), steps["push"]
    pushed = datetime.fromisoformat(_ttm_row("rollback-phase-1-inc-crit-restarted-ttm", "pushed")["at"])
    assert pushed == first[1].finished_at, (pushed, first[1].finished_at)
