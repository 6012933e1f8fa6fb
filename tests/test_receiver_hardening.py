"""The receiver against hostile clients and bad days: slow clients cannot starve it, what it accepted
survives Prefect going away and the receiver being killed, bodies triage would refuse are refused
at the door, and generated garbage never gets a 5xx, a dropped connection or a run."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from conftest import free_port, start_prefect_server, stop_process_group
from helpers import config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actor_rollback.deployments.intake import IntakeSpool
from actor_rollback.runbook.model import CLOCK_SKEW as DAY
from actor_rollback.runbook.model import EARLIEST_INCIDENT as EARLIEST
from actor_rollback.deployments.receiver import AlertReceiver

DATA = Path(__file__).resolve().parent / "data"
HELPER = Path(__file__).resolve().parent / "receiver_process.py"
TOKEN = "hardening-token-0123456789abcdef"


def alert_body(fingerprint: str, **annotations) -> dict:
    body = json.loads((DATA / "alertmanager-v4-firing.json").read_text())
    alert = body["alerts"][0]
    alert["fingerprint"] = fingerprint
    alert["labels"]["phase"] = "1"
    alert["annotations"].update({"regression_pct": "15", **annotations})
    return body


def headers(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


class Recorder:
    def __init__(self) -> None:
        self.started: list[str] = []

    def __call__(self, incident, key) -> str:
        self.started.append(incident.id)
        return f"run-{key}"


@pytest.fixture
def local(monkeypatch, tmp_path):
    """An in-process receiver over real HTTP whose starter only records."""
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    recorder = Recorder()
    receiver = AlertReceiver(config().receiver, recorder, port=0, spool_dir=tmp_path / "spool").start()
    receiver.recorder = recorder
    yield receiver
    receiver.stop()


def spawn_receiver(spool: Path, port: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    spool.mkdir(parents=True, exist_ok=True)
    log = spool.parent / f"receiver-{port}-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(HELPER), str(spool), str(port), *args],
                                   env={**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, **(env or {})},
                                   stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while "listening" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    return process


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_until_accepted(url: str, body: dict, within: float) -> tuple[httpx.Response, float]:
    """As Alertmanager does: retry on a refused connection or a 503 until the deadline."""
    started = time.monotonic()
    while True:
        try:
            answer = httpx.post(f"{url}/alerts/alertmanager", json=body, headers=headers(), timeout=5)
            if answer.status_code != 503:
                return answer, time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > within:
            raise AssertionError(f"not accepted within {within} s")
        time.sleep(0.2)


def test_1000_slow_clients_with_1024_open_files_neither_starve_valid_alerts_nor_spin_a_core(tmp_path):
    port, record = free_port(), tmp_path / "started.jsonl"
    process = spawn_receiver(tmp_path / "spool", port, "--record", str(record), "--nofile", "1024")
    slow: list[socket.socket] = []
    try:
        for _ in range(1000):  # half a request each, then silence
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                sock.sendall(b"POST /alerts/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n")
                slow.append(sock)
            except OSError:
                pass
        before, t0 = cpu_seconds(process.pid), time.monotonic()
        time.sleep(3)
        busy = (cpu_seconds(process.pid) - before) / (time.monotonic() - t0)
        assert busy < 0.5, f"the receiver used {busy:.0%} of a core while idle clients held their sockets"
        answer, waited = post_until_accepted(f"http://127.0.0.1:{port}", alert_body("slow01"), within=30)
        assert answer.status_code == 202 and waited < 20, (answer.status_code, waited)
        deadline = time.monotonic() + 10
        while not (record.exists() and "slow01" in record.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "slow01" in record.read_text()
        closed = 0
        for sock in slow:  # the request deadline (receiver.request_timeout_seconds) closed them
            sock.settimeout(0.05)
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
            except OSError:
                pass
        assert closed >= 0.9 * len(slow), f"only {closed} of {len(slow)} slow connections were closed"
    finally:
        for sock in slow:
            sock.close()
        stop_process_group(process)


@pytest.mark.prefect
def test_accepted_alerts_survive_a_prefect_outage_and_a_sigkilled_receiver_exactly_once(tmp_path, prefect_server):
    """50 alerts accepted while Prefect is down, the receiver SIGKILLed half way: 50 triage runs, once each.
    (bench/intake_outage.py measures the same with a 2-minute outage; here it is 10 s.)"""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from actor_rollback.flows.triage import triage

    home = tmp_path / "prefect-home"
    server, url = start_prefect_server(home, tmp_path / "outage-server.log", TMPDIR=str(tmp_path))
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with temporary_settings(updates={PREFECT_API_URL: url}):
        triage.to_deployment(name="intake-test", parameters={"repo": "/nonexistent", "config": ""}).apply()
    env = {"PREFECT_API_URL": url, "PREFECT_CLIENT_MAX_RETRIES": "1"}
    spool, receiver_port = tmp_path / "spool", free_port()
    first = spawn_receiver(spool, receiver_port, "--deployment", "triage/intake-test", env=env)
    receiver = f"http://127.0.0.1:{receiver_port}"
    try:
        stop_process_group(server)
        down_at = time.monotonic()
        for n in range(25):
            answer = httpx.post(f"{receiver}/alerts/alertmanager", json=alert_body(f"out{n:02d}"), headers=headers())
            assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 20
        while (health := httpx.get(f"{receiver}/healthz").json())["status"] != "degraded":
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        assert health["backlog"] == 25 and health["last_error"]
        os.killpg(first.pid, 9)
        first.wait()
        second = spawn_receiver(spool, receiver_port, "--deployment", "triage/intake-test", env=env)
        for n in range(25, 50):
            assert httpx.post(f"{receiver}/alerts/alertmanager", json=alert_body(f"out{n:02d}"),
                              headers=headers()).status_code == 202
        assert httpx.post(f"{receiver}/alerts/alertmanager", json=alert_body("out07"),
                          headers=headers()).json()["duplicates"], "the spool remembers across the kill"
        time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
        server, url = start_prefect_server(home, tmp_path / "outage-server-2.log", TMPDIR=str(tmp_path), port=port)
        deadline = time.monotonic() + 120
        while (health := httpx.get(f"{receiver}/healthz").json())["backlog"]:
            assert time.monotonic() < deadline, health
            time.sleep(0.5)
        assert health["status"] == "ok"
        with temporary_settings(updates={PREFECT_API_URL: url}):
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(limit=200)
        ids = sorted(r.parameters["incident"]["id"] for r in runs if r.parameters.get("incident"))
        assert len(ids) == 50 and len(set(ids)) == 50, ids
        stop_process_group(second)
    finally:
        for process in (first,):
            if process.poll() is None:
                stop_process_group(process)
        stop_process_group(server)


def raw_request(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and len(answer.split(b"\r\n\r\n", 1)[1]) >= int(
                    (answer.split(b"content-length: ", 1) + [b"0"])[1].split(b"\r\n")[0] or 0):
                break
    return answer


@pytest.mark.parametrize("name,body,status,says", [
    ("perf-regression without its size", {"id": "inc-nosize", "phase": "1", "kind": "perf-regression"}, 422,
     "needs its size"),
    ("NaN", b'{"id": "inc-nan", "phase": "1", "kind": "perf-regression", "regression_pct": NaN}', 400,
     "NaN is not a JSON number"),
    ("Infinity", b'{"id": "inc-inf", "phase": "1", "kind": "perf-regression", "regression_pct": Infinity}', 400,
     "Infinity is not a JSON number"),
    ("a 5000-digit integer", b'{"id": "inc-big", "phase": "1", "kind": "crash", "crashes_per_hour": ' + b"9" * 5000
     + b"}", 400, "malformed JSON"),
    ("JSON nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("a 400-digit timestamp", {"id": "inc-ts", "phase": "1", "kind": "crash", "started_at": "1" * 400}, 422,
     "started_at"),
    ("an incident that began in year 9999", {"id": "inc-9999", "phase": "1", "kind": "crash",
                                             "started_at": "9999-12-31T23:59:59Z"}, 422, "started_at"),
    ("a start time with no offset", {"id": "inc-naive", "phase": "1", "kind": "crash",
                                     "started_at": "2026-12-05T03:00:00"}, 422, "no UTC offset"),
    ("a crash rate of 1e400", b'{"id": "inc-e400", "phase": "1", "kind": "crash", "crashes_per_hour": 1e400}', 422,
     "crashes_per_hour"),
    ("a negative crash rate", {"id": "inc-neg", "phase": "1", "kind": "crash", "crashes_per_hour": -5}, 422,
     "crashes_per_hour"),
    ("a regression of 1e400 %", b'{"id": "inc-r400", "phase": "1", "kind": "perf-regression", '
     b'"regression_pct": 1e400}', 422, "regression_pct"),
])
def test_bodies_triage_would_refuse_get_a_4xx_naming_the_field_and_are_not_kept(local, name, body, status, says):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = httpx.post(f"{local.url}/incidents", content=data, headers=headers(), timeout=10)
    assert answer.status_code == status, (name, answer.text)
    assert says in answer.json()["error"], answer.text
    assert local.spool.backlog() == (0, "") and local.recorder.started == []


def test_alertmanager_bodies_with_bad_numbers_and_times_are_4xx(local):
    infinite = alert_body("inf01", regression_pct="Infinity")
    assert httpx.post(f"{local.url}/alerts/alertmanager", json=infinite, headers=headers()).status_code == 422
    long_time = alert_body("ts01")
    long_time["alerts"][0]["startsAt"] = "2" * 400
    answer = httpx.post(f"{local.url}/alerts/alertmanager", json=long_time, headers=headers())
    assert answer.status_code == 400 and "startsAt" in answer.json()["error"]
    far = alert_body("ts02")
    far["alerts"][0]["startsAt"] = "9999-12-31T23:59:59Z"  # was a 500: every deadline from it overflowed
    answer = httpx.post(f"{local.url}/alerts/alertmanager", json=far, headers=headers())
    assert answer.status_code == 400 and "not a time an incident began" in answer.json()["error"]
    for rate in ("NaN", "-5", "1e400"):  # an unknown rate must not be read as a sporadic (Medium) one
        crash = alert_body("cr01", crashes_per_hour=rate)
        crash["alerts"][0]["labels"]["kind"] = "crash"
        answer = httpx.post(f"{local.url}/alerts/alertmanager", json=crash, headers=headers())
        assert answer.status_code == 422 and "crashes_per_hour" in answer.json()["error"], (rate, answer.text)
    assert local.spool.backlog()[0] == 0


@pytest.mark.parametrize("length", [b"12abc", b"-5", b"9" * 40])
def test_a_bad_content_length_is_a_4xx_never_a_dropped_connection(local, length):
    answer = raw_request(local.url, b"POST /incidents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                         + b"\r\nContent-Length: " + length + b"\r\n\r\n{}")
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]


def test_a_token_with_a_trailing_newline_in_the_environment_still_matches(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN + "\n")
    receiver = AlertReceiver(config().receiver, Recorder(), port=0, spool_dir=tmp_path).start()
    try:
        assert httpx.post(f"{receiver.url}/alerts/alertmanager", json=alert_body("nl01"),
                          headers=headers()).status_code == 202
    finally:
        receiver.stop()


def test_an_incident_cannot_claim_another_source(local):
    body = {"id": "inc-claims", "phase": "1", "kind": "crash", "crashes_per_hour": 9, "source": "alertmanager"}
    assert httpx.post(f"{local.url}/incidents", json=body, headers=headers()).status_code == 202
    local.drain()
    assert local.recorder.started == ["inc-claims"]
    [row] = IntakeSpool(local.spool.path)._db.execute("SELECT incident FROM intake").fetchall()
    assert json.loads(row[0])["source"] == "generic"


def test_a_newline_in_an_alert_name_cannot_forge_a_log_line(local, caplog):
    body = alert_body("log01")
    body["alerts"][0]["labels"].update(phase="9", alertname="Evil\nINFO triage of am-x started: flow run forged")
    with caplog.at_level(logging.WARNING, logger="actor_rollback.receiver"):
        answer = httpx.post(f"{local.url}/alerts/alertmanager", json=body, headers=headers())
    assert answer.status_code == 422
    lines = [r.getMessage() for r in caplog.records if r.name == "actor_rollback.receiver"]
    assert lines and all("\n" not in line for line in lines)
    assert any("\\x0aINFO triage of am-x" in line for line in lines)


# ---------------------------------------------------------------- fuzzing, in process

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)
TEMPLATE = alert_body("fz01")
FIELDS = ["version", "status", "alerts", "groupLabels", "commonLabels"]
ALERT_FIELDS = ["status", "labels", "annotations", "startsAt", "fingerprint", "endsAt"]


TIMES = st.one_of(
    st.builds(lambda t, zone: t.isoformat() + zone,  # mostly near the bounds (2000, now + 1 d), some anywhere
              st.datetimes(datetime(1999, 12, 30), datetime(2028, 1, 1)) | st.datetimes(datetime(1, 1, 1)),
              st.sampled_from(["Z", "+00:00", "-07:00", "+14:00", ""])),
    st.from_regex(r"\A[0-9]{1,400}\Z"), st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                                   r"(\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})?\Z"))
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-5", "0", "1e308", "15%"]))


@st.composite
def incidents(draw) -> bytes:
    """/incidents bodies around the numbers and times the model checks (#25)."""
    body = {"id": "inc-fz", "phase": draw(st.sampled_from(["1", "2A", "9"])),
            "kind": draw(st.sampled_from(["crash", "perf-regression", "docs"]))}
    for key, values in (("started_at", TIMES), ("crashes_per_hour", NUMBERS), ("regression_pct", NUMBERS)):
        if draw(st.booleans()):
            body[key] = draw(values)
    return json.dumps(body, allow_nan=True).encode()


@st.composite
def bodies(draw) -> bytes:
    shape = draw(st.sampled_from(["bytes", "json", "mutated", "mutated-alert", "time", "rate", "incident"]))
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    if shape == "json":
        return json.dumps(draw(JSON)).encode()
    if shape == "incident":
        return draw(incidents())
    if shape in ("time", "rate"):
        body = copy.deepcopy(TEMPLATE)
        alert = body["alerts"][0]
        if shape == "time":
            alert["startsAt"] = draw(TIMES)
        else:
            alert["labels"]["kind"] = draw(st.sampled_from(["crash", "perf-regression"]))
            alert["annotations"][draw(st.sampled_from(["crashes_per_hour", "regression_pct"]))] = str(draw(NUMBERS))
        return json.dumps(body, allow_nan=True).encode()
    body = copy.deepcopy(TEMPLATE)
    if shape == "mutated":
        body[draw(st.sampled_from(FIELDS))] = draw(JSON)
    else:
        alert = body["alerts"][0]
        field = draw(st.sampled_from(ALERT_FIELDS + ["labels.phase", "labels.kind", "annotations.regression_pct"]))
        if "." in field:
            outer, inner = field.split(".")
            alert[outer][inner] = draw(JSON)
        else:
            alert[field] = draw(JSON)
    return json.dumps(body, allow_nan=True).encode()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    from starlette.testclient import TestClient

    os.environ["ACTOR_ROLLBACK_RECEIVER_TOKEN"] = TOKEN
    recorder = Recorder()
    receiver = AlertReceiver(config().receiver, recorder, port=0, spool_dir=tmp_path_factory.mktemp("fuzz"))
    with TestClient(receiver.app, raise_server_exceptions=True) as client:  # workers not started: nothing drains
        yield receiver, client


@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies(), path=st.sampled_from(["/alerts/alertmanager", "/alerts/grafana", "/incidents", "/x"]),
       token=st.sampled_from([TOKEN, TOKEN + " ", "", "x" * 40]), content_type=st.sampled_from(
           ["application/json", "text/plain", ""]), signature=st.sampled_from(["", "sha256=00", "zz"]))
def test_fuzz_5000_generated_requests_never_a_5xx_and_never_a_run_for_an_invalid_body(
        fuzz_target, body, path, token, content_type, signature):
    receiver, client = fuzz_target
    before = receiver.spool.backlog()[0]
    sent = {"Authorization": f"Bearer {token}", **({"Content-Type": content_type} if content_type else {}),
            **({"X-Signature": signature} if signature else {})}
    answer = client.post(path, content=body, headers=sent)
    assert answer.status_code < 500, (answer.status_code, answer.text, body[:200])
    assert "error" in answer.json() or answer.status_code == 202
    kept = receiver.spool.backlog()[0] - before
    if answer.status_code != 202:
        assert kept == 0, (answer.status_code, body[:200])
    else:  # only what the same validation accepts is kept
        source = {"/alerts/alertmanager": "alertmanager", "/alerts/grafana": "grafana", "/incidents": "generic"}[path]
        parsed = receiver._parse(body, source)
        assert parsed and kept == len(answer.json()["accepted"])
        for alert in parsed:  # what is kept holds the model's rules: a time an incident can begin, finite numbers
            incident = alert.incident
            assert incident.started_at is None or EARLIEST <= incident.started_at <= datetime.now(timezone.utc) + DAY
            assert incident.crashes_per_hour is None or 0 <= incident.crashes_per_hour < math.inf
            assert incident.regression_pct is None or math.isfinite(incident.regression_pct)


def test_the_receiver_speaks_tls_itself_when_given_a_certificate(monkeypatch, tmp_path):
    """OPERATIONS.md's second way: `receiver.tls_certfile` / `tls_keyfile`, served by uvicorn."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    cfg = config(**{"receiver.tls_certfile": str(tmp_path / "tls.crt"),
                    "receiver.tls_keyfile": str(tmp_path / "tls.key")}).receiver
    receiver = AlertReceiver(cfg, Recorder(), port=0, spool_dir=tmp_path / "spool").start()
    try:
        assert receiver.url.startswith("https://")
        answer = httpx.post(f"{receiver.url}/alerts/alertmanager", json=alert_body("tls01"), headers=headers(),
                            verify=str(tmp_path / "tls.crt"))
        assert answer.status_code == 202
        with pytest.raises(httpx.HTTPError):  # plain HTTP to a TLS port is not answered
            httpx.post(f"http://127.0.0.1:{receiver.port}/alerts/alertmanager", json=alert_body("tls02"),
                       headers=headers(), timeout=2)
    finally:
        receiver.stop()


def test_the_receivers_token_is_read_from_the_file_its_FILE_variable_names(monkeypatch, tmp_path):
    """The Kubernetes secret-volume way (OPERATIONS, Secrets): the token never sits in an environment."""
    from actor_rollback.deployments.receiver import ReceiverSetupError

    monkeypatch.delenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", raising=False)
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ReceiverSetupError, match=r"ACTOR_ROLLBACK_RECEIVER_TOKEN_FILE = .*missing: cannot read"):
        AlertReceiver(config().receiver, Recorder(), port=0, spool_dir=tmp_path / "spool")
    (tmp_path / "token").write_text(TOKEN + "\n")  # as `kubectl create secret` writes it, newline and all
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN_FILE", str(tmp_path / "token"))
    receiver = AlertReceiver(config().receiver, Recorder(), port=0, spool_dir=tmp_path / "spool").start()
    try:
        url = f"{receiver.url}/alerts/alertmanager"
        assert httpx.post(url, json=alert_body("file01"), headers=headers()).status_code == 202
        assert httpx.post(url, json=alert_body("file02"), headers=headers("wrong-" + TOKEN)).status_code == 401
    finally:
        receiver.stop()


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB file system (tmpfs) that a test can fill."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    from conftest import require

    require(mounted.returncode == 0, f"a tmpfs mount (root with CAP_SYS_ADMIN: {mounted.stderr.decode().strip()})")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_never_silences_the_intake_workers_said_in_healthz_and_every_accepted_alert_is_triaged_after(
        monkeypatch, small_disk):
    import threading

    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    gate, started = threading.Event(), []

    def starter(incident, key):  # holds the accepted alerts until the disk is full
        gate.wait(60)
        started.append(incident.id)
        return f"run-{key}"

    receiver = AlertReceiver(config().receiver, starter, port=0, workers=2, spool_dir=small_disk / "spool").start()
    url = f"{receiver.url}/alerts/alertmanager"
    try:
        accepted = {httpx.post(url, json=alert_body(f"full{n}"), headers=headers()).json()["accepted"][0]
                    for n in range(3)}
        filler = fill(small_disk)
        gate.set()  # the starts succeed; recording them needs the disk
        deadline = time.monotonic() + 20
        health = receiver.health()
        while not any("intake failed" in reason for reason in health["reasons"]):
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
            health = receiver.health()
        assert health["status"] == "degraded" and "full" in health["last_error"], health
        assert health["workers_alive"] == 2, "the workers live on, retrying with backoff"
        during = httpx.post(url, json=alert_body("full3"), headers=headers())
        assert during.status_code in (202, 503), during.text  # 202 only for what was stored
        if during.status_code == 202:
            accepted |= set(during.json()["accepted"])
        filler.unlink()  # room again
        after = httpx.post(url, json=alert_body("full4"), headers=headers())
        assert after.status_code == 202, after.text
        accepted |= set(after.json()["accepted"])
        deadline = time.monotonic() + 60
        while (health := receiver.health())["backlog"] or health["status"] != "ok":
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        assert accepted <= set(started), (accepted, started)  # every accepted alert triaged
        assert health["workers_alive"] == 2 and health["reasons"] == []
    finally:
        gate.set()
        receiver.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the ending is the point
def test_an_intake_worker_that_ends_is_started_again_and_its_alert_still_triaged(monkeypatch, tmp_path):
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    started, ended = [], []

    def starter(incident, key):
        if not ended:  # the first start ends its thread (as a BaseException would)
            ended.append(key)
            raise SystemExit("worker thread ends")
        started.append(incident.id)
        return f"run-{key}"

    receiver = AlertReceiver(config().receiver, starter, port=0, workers=1, spool_dir=tmp_path / "spool").start()
    try:
        accepted = httpx.post(f"{receiver.url}/alerts/alertmanager", json=alert_body("die01"),
                              headers=headers()).json()["accepted"]
        deadline = time.monotonic() + 20
        while (health := receiver.health())["backlog"]:
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
        assert started == accepted and health["worker_restarts"] == 1 and health["workers_alive"] == 1
    finally:
        receiver.stop()


def closed_at_once(sock: socket.socket) -> bool:
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:  # still open: it holds its slot until request_timeout_seconds
        return False


@pytest.mark.parametrize("per_client,valid_status", [(8, 202), (0, 503)])
def test_one_address_holding_idle_sockets_cannot_take_every_slot_only_its_own_share(monkeypatch, tmp_path,
                                                                                    per_client, valid_status):
    """receiver.max_connections_per_client (#25.2): 30 idle sockets from 127.0.0.2 against limit_concurrency 16.
    With the cap, the address holds 8 slots and Alertmanager (127.0.0.1) is answered 202; without it, 503."""
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", TOKEN)
    cfg = config(**{"receiver.limit_concurrency": 16, "receiver.max_connections_per_client": per_client}).receiver
    receiver = AlertReceiver(cfg, Recorder(), port=0, spool_dir=tmp_path / "spool").start()
    idle = []
    try:
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", receiver.port), source_address=("127.0.0.2", 0))
            sock.sendall(b"POST /alerts/alertmanager HTTP/1.1\r\n")  # and nothing more
            idle.append(sock)
        time.sleep(0.3)
        answer = httpx.post(f"{receiver.url}/alerts/alertmanager", json=alert_body("cap01"), headers=headers())
        assert answer.status_code == valid_status, answer.text
        if per_client:
            assert receiver.counters["over_client_cap"] == 30 - per_client
            assert sum(map(closed_at_once, idle)) == 30 - per_client, "those over the cap were closed as they opened"
    finally:
        for sock in idle:
            sock.close()
        receiver.stop()
