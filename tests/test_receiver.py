"""The alert receiver over real HTTP, creating real triage runs on the session's Prefect server.

The triage deployment here is registered but not served, so the runs it gets stay scheduled: the
tests count exactly what the receiver started, and start nothing else.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import config

from actor_rollback.deployments.receiver import AlertReceiver, ReceiverSetupError, deployment_starter

pytestmark = pytest.mark.prefect
DATA = Path(__file__).resolve().parent / "data"
TOKEN = "test-receiver-token-0123456789"
DEPLOYMENT = "triage/receiver-test"


@pytest.fixture(scope="module")
def deployment(prefect_server):
    from actor_rollback.flows.triage import triage

    triage.to_deployment(name="receiver-test", parameters={"repo": "/nonexistent", "config": ""}).apply()
    return DEPLOYMENT


def make_receiver(monkeypatch, spool: Path, **changes) -> AlertReceiver:
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    cfg = config(**{"receiver.deployment": DEPLOYMENT, **changes}).receiver
    return AlertReceiver(cfg, deployment_starter(cfg.deployment, {}), port=0, spool_dir=spool).start()


@pytest.fixture
def receiver(deployment, monkeypatch, tmp_path):
    receiver = make_receiver(monkeypatch, tmp_path / "spool")
    yield receiver
    receiver.stop()


def runs_for(prefix: str) -> list:
    """Triage runs of the test deployment whose incident id starts with `prefix`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    runs = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["receiver-test"])),
                                         limit=200, offset=len(runs))
            runs += page
            if len(page) < 200:
                break
    return [r for r in runs if r.parameters["incident"]["id"].startswith(prefix)]


def alertmanager_body(fingerprint: str, status: str = "firing", **labels) -> dict:
    body = json.loads((DATA / f"alertmanager-v4-{status}.json").read_text())
    alert = body["alerts"][0]
    alert["fingerprint"] = fingerprint
    alert["labels"].update({"phase": "1", **labels})
    alert["annotations"]["regression_pct"] = "15"
    return body


def post(receiver: AlertReceiver, path: str, body, token: str | None = TOKEN, headers: dict | None = None,
         client: httpx.Client | None = None) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    return (client or httpx).post(f"{receiver.url}{path}", content=data, headers=sent, timeout=10)


def test_a_firing_alertmanager_alert_starts_one_triage_run_carrying_the_incident(receiver):
    answer = post(receiver, "/alerts/alertmanager", alertmanager_body("aa01"))
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == ["am-aa01-20261129T082513"]
    receiver.drain()
    [run] = runs_for("am-aa01-")
    incident = run.parameters["incident"]
    assert (incident["phase"], incident["kind"], incident["regression_pct"], incident["source"]) == (
        "1", "perf-regression", 15.0, "alertmanager")
    assert "labels: alertname=ActorThroughputRegression" in incident["evidence"][1]
    assert {"triage", "incident:am-aa01-20261129T082513", "source:alertmanager"} <= set(run.tags)


def test_a_repeated_alert_maps_to_the_same_run_even_after_a_receiver_restart(deployment, monkeypatch, tmp_path):
    receiver = make_receiver(monkeypatch, tmp_path / "spool")
    for _ in range(3):
        assert post(receiver, "/alerts/alertmanager", alertmanager_body("aa02")).status_code == 202
    receiver.drain()
    assert receiver.counters["duplicates"] == 2
    receiver.stop()
    restarted = make_receiver(monkeypatch, tmp_path / "spool")  # the spool remembers what it accepted
    elsewhere = make_receiver(monkeypatch, tmp_path / "other-spool")  # a lost spool: Prefect's idempotency key
    try:
        assert post(restarted, "/alerts/alertmanager", alertmanager_body("aa02")).json()["duplicates"]
        assert post(elsewhere, "/alerts/alertmanager", alertmanager_body("aa02")).json()["accepted"]
        elsewhere.drain()
    finally:
        restarted.stop()
        elsewhere.stop()
    assert len(runs_for("am-aa02-")) == 1


def test_a_resolved_alert_is_recorded_not_acted_on(receiver):
    answer = post(receiver, "/alerts/alertmanager", alertmanager_body("aa03", status="resolved"))
    assert answer.status_code == 202 and answer.json()["resolved"] == ["am-aa03-20261129T082513"]
    receiver.drain()
    assert runs_for("am-aa03-") == [] and receiver.counters["resolved"] == 1
    health = httpx.get(f"{receiver.url}/healthz").json()
    assert health["status"] == "ok" and health["resolved"] == 1


def test_a_grafana_alert_and_a_generic_incident_are_accepted(receiver):
    grafana = {**alertmanager_body("ab04"), "orgId": 1, "version": "1", "title": "[FIRING:1]", "state": "alerting"}
    assert post(receiver, "/alerts/grafana", grafana).json()["accepted"] == ["gf-ab04-20261129T082513"]
    generic = {"id": "gen-05", "phase": "2a", "kind": "crash", "crashes_per_hour": 12, "summary": "worker panics"}
    assert post(receiver, "/incidents", generic).json()["accepted"] == ["gen-05"]
    receiver.drain()
    assert len(runs_for("gf-ab04-")) == 1
    [run] = runs_for("gen-05")
    assert run.parameters["incident"]["phase"] == "2A" and run.parameters["incident"]["source"] == "generic"


def _oversized(receiver):
    body = alertmanager_body("bad7")
    body["alerts"][0]["annotations"]["description"] = "x" * 1_100_000
    return post(receiver, "/alerts/alertmanager", body)


@pytest.mark.parametrize("name,send,status,message", [
    ("no token", lambda r: post(r, "/alerts/alertmanager", alertmanager_body("bad1"), token=None), 401,
     "missing bearer token"),
    ("wrong token", lambda r: post(r, "/alerts/alertmanager", alertmanager_body("bad2"), token="guess"), 401,
     "wrong bearer token"),
    ("malformed JSON", lambda r: post(r, "/alerts/alertmanager", b'{"alerts": [', ), 400, "malformed JSON"),
    ("unknown phase", lambda r: post(r, "/alerts/alertmanager", alertmanager_body("bad4", phase="9")), 422,
     "unknown phase '9'"),
    ("no kind", lambda r: post(r, "/alerts/alertmanager", alertmanager_body("bad5", alertname="Mystery")), 422,
     "add a 'kind' label or map the alertname"),
    ("wrong version", lambda r: post(r, "/alerts/alertmanager", {**alertmanager_body("bad6"), "version": "3"}), 400,
     "reads version '4'"),
    ("oversized body", _oversized, 413, "over the limit of 1048576"),
    ("not an incident", lambda r: post(r, "/incidents", {"id": "bad8", "phase": "1", "kind": "meteor"}), 422,
     "kind: Input should be"),
    ("unknown endpoint", lambda r: post(r, "/alerts/nagios", {}), 404, "no endpoint /alerts/nagios"),
])
def test_bad_input_gets_a_clear_4xx_and_starts_nothing(receiver, name, send, status, message):
    answer = send(receiver)
    assert answer.status_code == status, (name, answer.text)
    assert message in answer.json()["error"], answer.text
    receiver.drain()
    assert runs_for("am-bad") == [] and runs_for("bad8") == [] and receiver.counters["started"] == 0


def test_with_a_signing_secret_an_unsigned_or_badly_signed_body_is_refused(deployment, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_RECEIVER_HMAC", "hmac-secret")
    receiver = make_receiver(monkeypatch, tmp_path, **{"receiver.hmac_secret_env": "TEST_RECEIVER_HMAC"})
    try:
        body = json.dumps(alertmanager_body("ac09")).encode()
        assert post(receiver, "/alerts/alertmanager", body).status_code == 401
        bad = post(receiver, "/alerts/alertmanager", body, headers={"X-Signature": "sha256=" + "0" * 64})
        assert bad.status_code == 401 and "X-Signature" in bad.json()["error"]
        good = "sha256=" + hmac.new(b"hmac-secret", body, hashlib.sha256).hexdigest()
        assert post(receiver, "/alerts/alertmanager", body, headers={"X-Signature": good}).status_code == 202
        receiver.drain()
    finally:
        receiver.stop()
    assert len(runs_for("am-ac09-")) == 1


def grafana_alert(fingerprint: str) -> bytes:
    body = {**alertmanager_body(fingerprint), "orgId": 1, "version": "1", "title": "[FIRING:1]", "state": "alerting"}
    return json.dumps(body).encode()


def grafana_signature(body: bytes, stamp: str = "") -> str:
    return hmac.new(b"hmac-secret", (stamp.encode() + b":" + body) if stamp else body, hashlib.sha256).hexdigest()


def test_grafanas_own_hmac_signature_is_accepted_on_the_grafana_endpoint_only(deployment, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_RECEIVER_HMAC", "hmac-secret")
    receiver = make_receiver(monkeypatch, tmp_path, **{"receiver.hmac_secret_env": "TEST_RECEIVER_HMAC"})
    try:
        body = grafana_alert("gs01")
        signed = {"X-Grafana-Alerting-Signature": grafana_signature(body)}
        assert post(receiver, "/alerts/grafana", body, headers=signed).status_code == 202
        forged = post(receiver, "/alerts/grafana", body, headers={"X-Grafana-Alerting-Signature": "0" * 64})
        assert forged.status_code == 401 and "the hex HMAC-SHA256 of the body" in forged.json()["error"]
        other = post(receiver, "/alerts/alertmanager", json.dumps(alertmanager_body("gs02")).encode(),
                     headers={"X-Grafana-Alerting-Signature": grafana_signature(body)})
        assert other.status_code == 401 and "X-Signature" in other.json()["error"]  # Grafana's scheme for Grafana only
        receiver.drain()
    finally:
        receiver.stop()
    assert len(runs_for("gf-gs01-")) == 1 and runs_for("am-gs02-") == []


def test_grafanas_timestamped_signature_must_be_fresh_so_a_replay_is_refused(deployment, monkeypatch, tmp_path):
    monkeypatch.setenv("TEST_RECEIVER_HMAC", "hmac-secret")
    stamp_header = "X-Grafana-Alerting-Signature-Timestamp"
    receiver = make_receiver(monkeypatch, tmp_path, **{"receiver.hmac_secret_env": "TEST_RECEIVER_HMAC",
                                             "receiver.grafana_timestamp_header": stamp_header})
    try:
        body = grafana_alert("gs03")
        now = str(int(time.time()))
        fresh = {"X-Grafana-Alerting-Signature": grafana_signature(body, now), stamp_header: now}
        assert post(receiver, "/alerts/grafana", body, headers=fresh).status_code == 202
        old = str(int(time.time()) - 600)  # a captured request sent again ten minutes later
        replay = post(receiver, "/alerts/grafana", grafana_alert("gs04"),
                      headers={"X-Grafana-Alerting-Signature": grafana_signature(grafana_alert("gs04"), old),
                               stamp_header: old})
        assert replay.status_code == 401 and "a replay" in replay.json()["error"]
        unstamped = post(receiver, "/alerts/grafana", grafana_alert("gs05"),
                         headers={"X-Grafana-Alerting-Signature": grafana_signature(grafana_alert("gs05"))})
        assert unstamped.status_code == 401 and f"missing {stamp_header}" in unstamped.json()["error"]
        body_only = post(receiver, "/alerts/grafana", grafana_alert("gs06"),  # the stamp not in what was signed
                         headers={"X-Grafana-Alerting-Signature": grafana_signature(grafana_alert("gs06")),
                                  stamp_header: now})
        assert body_only.status_code == 401
        receiver.drain()
    finally:
        receiver.stop()
    assert len(runs_for("gf-gs03-")) == 1
    assert all(runs_for(f"gf-gs0{n}-") == [] for n in (4, 5, 6))


def test_the_receiver_refuses_to_start_without_its_token(monkeypatch):
    monkeypatch.delenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", raising=False)
    with pytest.raises(ReceiverSetupError, match="export ACTOR_ROLLBACK_RECEIVER_TOKEN"):
        AlertReceiver(config().receiver, lambda incident, key: "", port=0, spool_dir=Path("/nonexistent-never-made"))


def test_an_alert_storm_of_1000_alerts_over_100_fingerprints_starts_exactly_100_triage_runs(receiver):
    template = alertmanager_body("0")
    bodies = []
    for n in range(1000):
        body = copy.deepcopy(template)
        body["alerts"][0]["fingerprint"] = f"storm{n % 100:03d}"
        bodies.append(body)
    local = threading.local()

    def send(body):
        if not hasattr(local, "client"):
            local.client = httpx.Client()
        return post(receiver, "/alerts/alertmanager", body, client=local.client).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, bodies))
    assert codes == [202] * 1000
    receiver.drain(timeout=120)
    assert receiver.counters["started"] == 100 and receiver.counters["duplicates"] == 900
    assert len({r.parameters["incident"]["id"] for r in runs_for("am-storm")}) == len(runs_for("am-storm")) == 100


def test_a_critical_alert_takes_the_warm_path_and_a_high_one_a_deployment_run(deployment, monkeypatch, tmp_path):
    warm: list[str] = []
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    cfg = config(**{"receiver.deployment": DEPLOYMENT})
    receiver = AlertReceiver(cfg.receiver, deployment_starter(DEPLOYMENT, {}), port=0, severity=cfg.severity,
                             spool_dir=tmp_path,
                             critical_starter=lambda incident, key: warm.append(incident.id) or "in-process").start()
    try:
        down = alertmanager_body("ad10", alertname="ActorServiceDown")  # mapped to service-down: Critical
        assert post(receiver, "/alerts/alertmanager", down).status_code == 202
        slow = alertmanager_body("ad11")  # a 15 % throughput regression: High
        assert post(receiver, "/alerts/alertmanager", slow).status_code == 202
        receiver.drain()
    finally:
        receiver.stop()
    assert warm == ["am-ad10-20261129T082513"] and runs_for("am-ad10-") == []
    assert len(runs_for("am-ad11-")) == 1


def test_a_high_alert_takes_a_warm_pool_of_its_own_and_medium_and_low_ones_the_runner(deployment, monkeypatch,
                                                                                     tmp_path):
    """Severity first: Critical and High incidents start in the receiver's process, each severity in its own pool,
    so neither waits for a runner slot behind Medium or Low runs (nor a Critical behind a long High rollback)."""
    critical, high = [], []
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    cfg = config(**{"receiver.deployment": DEPLOYMENT})
    receiver = AlertReceiver(cfg.receiver, deployment_starter(DEPLOYMENT, {}), port=0, severity=cfg.severity,
                             spool_dir=tmp_path,
                             critical_starter=lambda incident, key: critical.append(incident.id) or "in-process",
                             high_starter=lambda incident, key: high.append(incident.id) or "in-process").start()
    try:
        for fingerprint, regression in (("hw1", "15"), ("hw2", "7"), ("hw3", "2")):  # High, Medium, Low
            body = alertmanager_body(fingerprint)
            body["alerts"][0]["annotations"]["regression_pct"] = regression
            assert post(receiver, "/alerts/alertmanager", body).status_code == 202
        receiver.drain()
    finally:
        receiver.stop()
    assert critical == [] and high == ["am-hw1-20261129T082513"]
    assert runs_for("am-hw1-") == [] and len(runs_for("am-hw2-")) == len(runs_for("am-hw3-")) == 1
