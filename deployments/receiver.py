"""The alert receiver: Alertmanager and Grafana webhooks, and plain JSON incidents, start triage.

    POST /alerts/alertmanager   Alertmanager webhook (format version 4)
    POST /alerts/grafana        Grafana alerting webhook
    POST /incidents             one JSON incident (the Incident fields)
    GET  /healthz               liveness and counters (no auth, no secrets)

Every POST needs `Authorization: Bearer <token>` (the token from the env var named by
`receiver.token_env`, compared in constant time); when `receiver.hmac_secret_env` is set, also
`X-Signature: sha256=<hex HMAC-SHA256 of the body>` — or, on /alerts/grafana, Grafana's own
signature (`X-Grafana-Alerting-Signature: <hex>` of the body, or of `<timestamp>:<body>` with
the timestamp header configured, which must then be fresh). Bodies over `receiver.max_body_bytes` are
refused before they are read. A payload is validated whole: any unusable alert refuses it all
with a 4xx naming the alert and the fix, and nothing is started.

The answer never waits for Prefect: a firing alert is queued and the answer (202) goes out at
once; worker threads create the triage runs with an idempotency key (source, fingerprint,
startsAt), so an alert that repeats — an Alertmanager re-send, a storm, a restarted receiver —
maps to the one run it already started. Resolved alerts are recorded (log and counters), not
acted on: a rollback is never undone by an alert going quiet.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runbook.alerts import AlertError, ReceivedAlert, alerts_to_incidents, generic_incident
from runbook.config import ReceiverConfig, SeverityConfig
from runbook.errors import BadInputError
from runbook.model import Incident
from runbook.severity import decide

log = logging.getLogger("actor_rollback.receiver")
Starter = Callable[[Incident, str], str]  # (incident, idempotency key) -> flow run id


class ReceiverSetupError(ValueError):
    """The receiver cannot start safely (no token); the message names the fix."""


def deployment_starter(deployment: str, parameters: dict[str, Any]) -> Starter:
    """Create a triage run of `deployment` (e.g. "triage/alert"); returns at once, never waits for the run."""

    def start(incident: Incident, key: str) -> str:
        from prefect.deployments import run_deployment

        run = run_deployment(name=deployment, parameters={**parameters, "incident": incident.model_dump(mode="json")},
                             idempotency_key=f"actor-rollback-triage-{key}", timeout=0,
                             tags=["actor-rollback", "triage", f"incident:{incident.id}", f"source:{incident.source}"])
        return str(run.id)

    return start


def in_process_starter(repo: str, config: str, workers: int = 2) -> Starter:
    """The warm path: triage runs in this process (a thread), so it starts at once — no runner poll,
    no new interpreter. The run is recorded in Prefect like any other; a run already named
    `triage-<incident>` (a repeat after a restart) is not started twice."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="warm-triage")

    def start(incident: Incident, key: str) -> str:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        from flows.triage import triage

        with get_client(sync_client=True) as client:
            existing = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"triage-{incident.id}"])), limit=1)
        if existing:
            return str(existing[0].id)
        run = contextvars.copy_context().run
        pool.submit(run, lambda: triage(incident=incident, repo=repo, config=config))
        return f"in-process triage-{incident.id}"

    return start


class _Server(ThreadingHTTPServer):
    # the stdlib listens with a backlog of 5: a storm's burst of new connections overflows it and the
    # dropped SYN is retried a second later (a 1.03 s answer in bench/receiver_storm.py)
    request_queue_size = 128


class AlertReceiver:
    def __init__(self, cfg: ReceiverConfig, starter: Starter, host: str | None = None, port: int | None = None,
                 workers: int = 4, remember: int = 100_000, critical_starter: Starter | None = None,
                 severity: SeverityConfig | None = None) -> None:
        token = os.environ.get(cfg.token_env, "")
        if not token:
            raise ReceiverSetupError(f"the receiver needs a bearer token: export {cfg.token_env}=<a long random "
                                     "string> and give the same to Alertmanager/Grafana (http_config.authorization)")
        secret = os.environ.get(cfg.hmac_secret_env, "") if cfg.hmac_secret_env else ""
        if cfg.hmac_secret_env and not secret:
            raise ReceiverSetupError(f"receiver.hmac_secret_env names {cfg.hmac_secret_env}, which is not set; export it")
        self.cfg, self.starter = cfg, starter
        # Critical incidents (F.1) may take the warm path: triage in this process, no pick-up delay
        self.critical_starter, self.severity = critical_starter, severity
        self._token, self._secret = token.encode(), secret.encode()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()
        self._queue: queue.Queue[ReceivedAlert | None] = queue.Queue()
        self.counters = {"requests": 0, "refused": 0, "firing": 0, "started": 0, "duplicates": 0, "resolved": 0,
                         "start_failures": 0}
        self.server = _Server((host or cfg.host, cfg.port if port is None else port), self._handler())
        self.server.daemon_threads = True
        # each worker runs in a copy of the creator's context: the same Prefect settings (API URL, profile)
        self._threads = [threading.Thread(target=contextvars.copy_context().run, args=(self._work,),
                                          name=f"receiver-worker-{n}", daemon=True) for n in range(workers)]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AlertReceiver:
        for thread in self._threads:
            thread.start()
        threading.Thread(target=self.server.serve_forever, name="receiver-http", daemon=True).start()
        log.info("alert receiver listening on %s", self.url)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for _ in self._threads:
            self._queue.put(None)

    def drain(self, timeout: float = 30) -> None:
        """Wait until every queued alert has its triage run (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    # ------------------------------------------------------------ the work behind the answer

    def _accept(self, alerts: list[ReceivedAlert]) -> dict[str, list[str]]:
        answer: dict[str, list[str]] = {"accepted": [], "duplicates": [], "resolved": []}
        with self._lock:
            for alert in alerts:
                ident = alert.incident.id
                if alert.status == "resolved":
                    self.counters["resolved"] += 1
                    answer["resolved"].append(ident)
                    log.info("resolved alert recorded, not acted on: %s", ident)
                    continue
                self.counters["firing"] += 1
                if alert.key in self._seen:
                    self.counters["duplicates"] += 1
                    answer["duplicates"].append(ident)
                    continue
                self._seen[alert.key] = None
                if len(self._seen) > self._remember:
                    self._seen.popitem(last=False)  # Prefect's idempotency key still dedups older ones
                self._queue.put(alert)
                answer["accepted"].append(ident)
        return answer

    def _work(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                self._start(alert)
            finally:
                self._queue.task_done()

    def _starter_for(self, incident: Incident) -> Starter:
        if self.critical_starter is None or self.severity is None:
            return self.starter
        try:
            critical = decide(incident, self.severity).severity == "critical"
        except BadInputError:
            critical = False
        return self.critical_starter if critical else self.starter

    def _start(self, alert: ReceivedAlert) -> None:
        starter = self._starter_for(alert.incident)
        for delay in (0.5, 1, 2, 4, 8, 16, 30):  # the Prefect server may be restarting: keep the alert
            try:
                run_id = starter(alert.incident, alert.key)
            except Exception as exc:
                self.counters["start_failures"] += 1
                log.warning("could not start triage for %s (%s); retrying in %s s", alert.incident.id,
                            type(exc).__name__, delay)
                time.sleep(delay)
                continue
            with self._lock:
                self.counters["started"] += 1
            log.info("triage of %s started: flow run %s", alert.incident.id, run_id)
            return
        with self._lock:  # forget it so that Alertmanager's next re-send tries again
            self._seen.pop(alert.key, None)
        log.error("gave up starting triage for %s; the next re-send of the alert will try again", alert.incident.id)

    # ------------------------------------------------------------ HTTP

    def _authorized(self, headers) -> tuple[int, str] | None:
        given = headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            return 401, "missing bearer token: send 'Authorization: Bearer <token>'"
        if not hmac.compare_digest(given[len("Bearer "):].strip().encode(), self._token):
            return 401, "wrong bearer token"
        return None

    def _signed(self, headers, body: bytes, source: str) -> tuple[int, str] | None:
        if not self._secret:
            return None
        given = headers.get("X-Signature", "")
        expected = "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if given and hmac.compare_digest(given.encode(), expected.encode()):
            return None
        if source == "grafana" and headers.get(self.cfg.grafana_signature_header):
            return self._grafana_signed(headers, body)
        return 401, "bad or missing X-Signature: expected sha256=<hex HMAC-SHA256 of the body>"

    def _grafana_signed(self, headers, body: bytes) -> tuple[int, str] | None:
        """Grafana's scheme: hex HMAC-SHA256 of the body, or of `<unix timestamp>:<body>`."""
        name, stamp_name = self.cfg.grafana_signature_header, self.cfg.grafana_timestamp_header
        signed = body
        if stamp_name:
            stamp = headers.get(stamp_name, "")
            if not stamp.isdigit():
                return 401, f"missing {stamp_name}: receiver.grafana_timestamp_header says Grafana sends one"
            age = abs(time.time() - int(stamp))
            if age > self.cfg.signature_max_age_seconds:
                return 401, (f"{stamp_name} is {age:.0f} s away from now (over receiver.signature_max_age_seconds = "
                             f"{self.cfg.signature_max_age_seconds}): a replay, or a clock to fix")
            signed = stamp.encode() + b":" + body
        expected = hmac.new(self._secret, signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get(name, "").strip().lower().encode(), expected.encode()):
            return 401, (f"bad {name}: expected the hex HMAC-SHA256 of "
                         + (f"'<{stamp_name}>:<body>'" if stamp_name else "the body")
                         + " with the secret of receiver.hmac_secret_env (the contact point's HMAC secret)")
        return None

    def _handle(self, path: str, headers, read: Callable[[int], bytes]) -> tuple[int, dict]:
        routes = {"/alerts/alertmanager": "alertmanager", "/alerts/grafana": "grafana", "/incidents": "generic"}
        if path not in routes:
            return 404, {"error": f"no endpoint {path}; POST to {', '.join(routes)}"}
        refused = self._authorized(headers)
        if refused:
            return refused[0], {"error": refused[1]}
        length = headers.get("Content-Length")
        if length is None or not length.isdigit():
            return 411, {"error": "send a Content-Length"}
        if int(length) > self.cfg.max_body_bytes:
            return 413, {"error": f"body of {length} bytes is over the limit of {self.cfg.max_body_bytes} "
                                  "(receiver.max_body_bytes)"}
        body = read(int(length))
        refused = self._signed(headers, body, routes[path])
        if refused:
            return refused[0], {"error": refused[1]}
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return 400, {"error": f"malformed JSON: {exc}"}
        try:
            source = routes[path]
            alerts = [generic_incident(payload)] if source == "generic" else alerts_to_incidents(payload, source, self.cfg)
        except AlertError as exc:
            return exc.status, {"error": str(exc)}
        return 202, self._accept(alerts)

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", "Bearer")
                if status >= 400:  # a body left unread must not be taken for the next request
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                status, body = receiver._handle(self.path.split("?")[0], self.headers, self.rfile.read)
                with receiver._lock:
                    receiver.counters["requests"] += 1
                    if status >= 400:
                        receiver.counters["refused"] += 1
                if status >= 400:
                    log.warning("refused %s %s: %s %s", self.command, self.path, status, body["error"])
                self._answer(status, body)

            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/healthz":
                    self._answer(404, {"error": f"no endpoint {self.path}; GET /healthz"})
                    return
                with receiver._lock:
                    counters = dict(receiver.counters)
                self._answer(200, {"status": "ok", "queued": receiver._queue.unfinished_tasks, **counters})

            def log_message(self, format: str, *args) -> None:  # the access log without headers (tokens)
                log.debug("%s %s", self.address_string(), format % args)

        return Handler
