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
refused before they are read. A payload is validated whole, by the same code triage decides
with (a perf-regression without its size, NaN, a 5000-digit number, JSON nested too deep): any
unusable alert refuses it all with a 4xx naming the alert and the field, and nothing is kept.

It is Starlette on uvicorn, with limits a slow or hostile client cannot get round: a deadline
for a whole request (`receiver.request_timeout_seconds`; uvicorn has none of its own), a
keep-alive timeout, `limit_concurrency` (503 beyond it) and a listen backlog for bursts.

202 means "I have it": each accepted incident is written to the intake spool (SQLite, fsynced;
deployments/intake.py) before the answer. Worker threads turn spooled incidents into triage
runs with the idempotency key (source, fingerprint, startsAt), retrying with backoff while
Prefect is unreachable — never giving up — and a receiver that starts again drains what was
left; `/healthz` says `degraded`, with the backlog and the last error, meanwhile. Repeats —
an Alertmanager re-send, a storm, a restart — are one row and one run. Resolved alerts are
recorded (log and counters), not acted on: a rollback is never undone by an alert going quiet.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from actor_rollback.deployments.intake import IntakeSpool
from actor_rollback.runbook.alerts import AlertError, ReceivedAlert, alerts_to_incidents, generic_incident
from actor_rollback.runbook.config import ReceiverConfig, SeverityConfig
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import Incident
from actor_rollback.runbook.secrets import SecretError, secret
from actor_rollback.runbook.severity import decide

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


class WarmTriage:
    """The warm path: triage runs in this process (a thread), so it starts at once — no runner poll,
    no new interpreter. The run is recorded in Prefect like any other; a run already named
    `triage-<incident>` (a repeat after a restart) is not started twice, unless it crashed.

    When serve stops, runs still going after a short grace are handed back: their Prefect runs are
    marked Crashed (saying why) and their incidents return to the intake spool, so the next serve
    starts them again — the steps are idempotent, a rerun converges.
    """

    def __init__(self, repo: str, config: str, workers: int = 2, flag_off_first: bool = False) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.repo, self.config = repo, config
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="warm-triage")
        self.running: dict[str, tuple[Incident, Any]] = {}
        self._lock = threading.Lock()
        # F.1 first: a Critical's flag off and push the moment it is stored, before any Prefect call
        self.first_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flag-off-first") \
            if flag_off_first else None
        self.first: dict[str, Any] = {}  # incident id → the future of its flag-off-first
        if flag_off_first:  # loaded here, once (no Prefect in it): never imported by two threads at once
            from actor_rollback.tasks.flag_off_first import flag_off_first as first

            self._flag_off_first = first

    def start_first(self, incident: Incident) -> None:
        """Turn the flag off now (tasks/flag_off_first.py); the triage run started next records it."""
        if self.first_pool is None:
            return
        with self._lock:
            if incident.id in self.first:
                return
            self.first[incident.id] = self.first_pool.submit(self._flag_off_first, incident, self.repo, self.config)

    def _done_first(self, incident: Incident) -> list:
        with self._lock:
            future = self.first.pop(incident.id, None)
        if future is None:
            return []
        try:
            return future.result(timeout=120)
        except Exception as exc:  # noqa: BLE001 — the rollback run does the steps itself and records why
            log.warning("flag-off first for %s did not finish: %s: %s", incident.id, type(exc).__name__, exc)
            return []

    def __call__(self, incident: Incident, key: str) -> str:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

        from actor_rollback.flows.triage import triage

        with get_client(sync_client=True) as client:
            existing = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"triage-{incident.id}"])), limit=5)
        live = [r for r in existing if not (r.state and (r.state.is_crashed() or r.state.is_cancelled()))]
        if live:
            return str(live[0].id)
        run = contextvars.copy_context().run
        future = self.pool.submit(run, lambda: triage(incident=incident, repo=self.repo, config=self.config,
                                                            done_first=self._done_first(incident),
                                                            return_state=True))  # its state is its outcome
        with self._lock:
            self.running[key] = (incident, future)
        future.add_done_callback(lambda _: self._finished(key))
        return f"in-process triage-{incident.id}"

    def _finished(self, key: str) -> None:
        with self._lock:
            self.running.pop(key, None)

    def hand_back(self, grace: float) -> list[str]:
        """Wait up to `grace` seconds for the runs in this process; the keys of those still going, marked Crashed."""
        from concurrent.futures import wait

        with self._lock:
            futures = [future for _, future in self.running.values()] + list(self.first.values())
        wait(futures, timeout=grace)
        with self._lock:
            left = {key: incident for key, (incident, future) in self.running.items() if not future.done()}
        self.pool.shutdown(wait=False, cancel_futures=True)  # idle workers end; a running one cannot be stopped
        if self.first_pool is not None:
            self.first_pool.shutdown(wait=False, cancel_futures=True)
        if left:
            _mark_crashed([f"triage-{incident.id}" for incident in left.values()])
        return list(left)


def _mark_crashed(names: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=names))):
                if run.state and not run.state.is_final():
                    client.set_flow_run_state(run.id, Crashed(message="serve stopped (SIGTERM) while this run was "
                                                                      "going; its incident went back to the intake "
                                                                      "spool and the next serve starts it again"),
                                              force=True)
    except Exception as exc:  # Prefect unreachable: the spool still holds the incident
        log.warning("could not mark %s crashed: %s", ", ".join(names), exc)


def default_spool_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "actor-rollback" / "receiver"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _EscapeControlCharacters(logging.Filter):
    """A newline in an alert name must not forge a log line: control characters are shown escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _CONTROL.search(message):
            record.msg, record.args = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", message), ()
        return True


log.addFilter(_EscapeControlCharacters())


class _OncePerInterval(logging.Filter):
    """uvicorn logs every 503 beyond limit_concurrency: under a flood, one line every few seconds is enough."""

    def __init__(self, message: str, seconds: float = 5) -> None:
        super().__init__()
        self.message, self.seconds, self.last = message, seconds, 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.message not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


logging.getLogger("uvicorn.error").addFilter(_OncePerInterval("Exceeded concurrency limit"))


def _deadline_protocol(seconds: float, on_slow: Callable[[], None], per_client: int = 0,
                       on_over: Callable[[], None] = lambda: None) -> type:
    """uvicorn's h11 protocol with a deadline for receiving a whole request (headers and body), and a cap on one
    address's open connections.

    uvicorn itself has no deadline (its keep-alive timeout only covers the idle time between requests and
    is reset by every byte): without one, clients that send half a request hold their sockets
    forever. The deadline is armed when the connection opens (or the next request's first byte
    arrives) and disarmed when the response is complete. A connection over the cap (`per_client`, 0 for none)
    is aborted as it opens, before uvicorn counts it against `limit_concurrency`: one address flooding the
    receiver with sockets it never uses takes at most `per_client` of its slots, not all of them.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    open_from: dict[str, int] = {}  # address → open connections (the event loop's thread only)

    class DeadlineH11Protocol(H11Protocol):
        _address: str | None = None

        def connection_made(self, transport) -> None:
            if per_client:
                peer = transport.get_extra_info("peername")
                address = peer[0] if isinstance(peer, tuple) else str(peer)
                if open_from.get(address, 0) >= per_client:
                    transport.abort()
                    on_over()
                    return
                open_from[address] = open_from.get(address, 0) + 1
                self._address = address
            super().connection_made(transport)
            self._deadline = self.loop.call_later(seconds, self._too_slow)

        def data_received(self, data: bytes) -> None:
            if getattr(self, "_deadline", None) is None:
                self._deadline = self.loop.call_later(seconds, self._too_slow)
            super().data_received(data)

        def on_response_complete(self) -> None:
            deadline, self._deadline = getattr(self, "_deadline", None), None
            if deadline is not None:
                deadline.cancel()
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            if per_client and self._address is None:
                return  # aborted as it opened: uvicorn never had it
            if self._address is not None:
                left = open_from.get(self._address, 1) - 1
                if left > 0:
                    open_from[self._address] = left
                else:
                    open_from.pop(self._address, None)
                self._address = None
            deadline, self._deadline = getattr(self, "_deadline", None), None
            if deadline is not None:
                deadline.cancel()
            super().connection_lost(exc)

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()
                on_slow()  # counted, and logged at most every few seconds: a flood must not become a log flood

    return DeadlineH11Protocol


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class AlertReceiver:
    """The receiver: a Starlette app served by uvicorn in a thread, a durable intake, and workers that
    turn what was accepted into triage runs."""

    def __init__(self, cfg: ReceiverConfig, starter: Starter, host: str | None = None, port: int | None = None,
                 workers: int = 4, critical_starter: Starter | None = None, severity: SeverityConfig | None = None,
                 spool_dir: Path | str | None = None, high_starter: Starter | None = None) -> None:
        try:
            token, hmac_secret = secret(cfg.token_env), secret(cfg.hmac_secret_env)
        except SecretError as exc:
            raise ReceiverSetupError(str(exc)) from None
        if not token:
            raise ReceiverSetupError(f"the receiver needs a bearer token: put a long random string in a file and "
                                     f"set {cfg.token_env}_FILE to its path (or export {cfg.token_env}); give the "
                                     "same to Alertmanager/Grafana (http_config.authorization)")
        if cfg.hmac_secret_env and not hmac_secret:
            raise ReceiverSetupError(f"receiver.hmac_secret_env names {cfg.hmac_secret_env}, which is not set; set "
                                     f"{cfg.hmac_secret_env}_FILE to a file holding it (or export it)")
        if severity is None:
            from actor_rollback.runbook.config import load_config

            severity = load_config().severity
        self.cfg, self.starter = cfg, starter
        # Critical (F.1) and High (F.2) incidents may take the warm path: triage in this process, each severity in
        # a pool of its own — no pick-up delay, no runner slot to wait for behind Medium or Low runs
        self.critical_starter, self.high_starter, self.severity = critical_starter, high_starter, severity
        self._token, self._secret = token.encode(), hmac_secret.encode()
        self.host, self.port = host or cfg.host, cfg.port if port is None else port
        folder = Path(spool_dir) if spool_dir else (Path(cfg.spool_dir) if cfg.spool_dir else default_spool_dir())
        self.spool = IntakeSpool(folder / "intake.sqlite3")
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self.counters = {"requests": 0, "refused": 0, "firing": 0, "started": 0, "duplicates": 0, "resolved": 0,
                         "start_failures": 0, "slow_closed": 0, "over_client_cap": 0}
        self._slow_logged = self._over_logged = 0.0
        self.app = self._app()
        self._context = contextvars.copy_context()
        self._working = False  # the intake workers started (start_work)
        self._threads = [self._worker(n) for n in range(workers)]
        self._watchdog = threading.Thread(target=self._supervise, name="receiver-watchdog", daemon=True)
        self._worker_error, self._worker_error_at, self.restarts = "", 0.0, 0
        self._server = None
        self._server_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cfg.tls_certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def _worker(self, n: int) -> threading.Thread:
        # each worker runs in a copy of the creator's context: the same Prefect settings (API URL, profile)
        return threading.Thread(target=self._context.copy().run, args=(self._work,), name=f"receiver-worker-{n}",
                                daemon=True)

    def start(self, serve_http: bool = True, work: bool = True) -> AlertReceiver:
        """Listen (and with `work`, start the intake workers). serve listens first and starts the workers once
        Prefect's flows are loaded (`start_work`): alerts are taken — and a Critical's flag turned off — meanwhile,
        and no module is imported by two threads at once."""
        if work:
            self.start_work()
        if serve_http:
            self._serve()
        return self

    def start_work(self) -> None:
        with self._lock:
            if self._working:
                return
            self._working = True
        for thread in self._threads:
            thread.start()
        self._watchdog.start()

    def _serve(self) -> None:
        import uvicorn

        tls = {"ssl_certfile": self.cfg.tls_certfile, "ssl_keyfile": self.cfg.tls_keyfile} if self.cfg.tls_certfile else {}
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port,
            http=_deadline_protocol(self.cfg.request_timeout_seconds, self._slow_client,
                                    self.cfg.max_connections_per_client, self._over_cap),
            backlog=self.cfg.backlog, timeout_keep_alive=self.cfg.keep_alive_seconds,
            limit_concurrency=self.cfg.limit_concurrency, h11_max_incomplete_event_size=64 * 1024,
            timeout_graceful_shutdown=2, lifespan="off", log_config=None, access_log=False, server_header=False, **tls)
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="receiver-http", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                raise ReceiverSetupError(f"the receiver could not listen on {self.host}:{self.port} (see the log)")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("alert receiver listening on %s (spool %s)", self.url, self.spool.path)

    def _slow_client(self) -> None:
        with self._lock:
            self.counters["slow_closed"] += 1
            now = time.monotonic()
            if now - self._slow_logged < 5:
                return
            self._slow_logged, total = now, self.counters["slow_closed"]
        log.warning("closed connections that sent no whole request within %s s (%d so far)",
                    self.cfg.request_timeout_seconds, total)

    def _over_cap(self) -> None:
        with self._lock:
            self.counters["over_client_cap"] += 1
            now = time.monotonic()
            if now - self._over_logged < 5:
                return
            self._over_logged, total = now, self.counters["over_client_cap"]
        log.warning("closed connections over receiver.max_connections_per_client = %d from one address (%d so far)",
                    self.cfg.max_connections_per_client, total)

    def stop(self, timeout: float = 5, grace: float = 3) -> list[str]:
        """Stop accepting, let the workers finish the start they are in; what is not started stays spooled, and
        warm runs still going after `grace` seconds are handed back to the spool. Returns the keys handed back."""
        if self._server is not None:
            self._server.should_exit = True
            self._server_thread.join(timeout)
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout  # one deadline for all of them: a stop is bounded, however many
        for thread in [*self._threads, self._watchdog]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        handed = [key for warm in (self.critical_starter, self.high_starter) if isinstance(warm, WarmTriage)
                  for key in warm.hand_back(grace)]
        if handed:
            self.spool.reopen(handed)
            log.warning("handed back to the intake spool, for the next serve: %s", ", ".join(handed))
        self.spool.close()
        return handed

    def drain(self, timeout: float = 30) -> None:
        """Wait until every accepted incident has its triage run (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while self.spool.backlog()[0] and time.monotonic() < deadline:
            time.sleep(0.02)

    # ------------------------------------------------------------ the work behind the answer

    def _accept(self, alerts: list[ReceivedAlert]) -> dict[str, list[str]]:
        answer: dict[str, list[str]] = {"accepted": [], "duplicates": [], "resolved": []}
        firing = [a for a in alerts if a.status == "firing"]
        fresh = self.spool.add([(a.key, a.incident.model_dump_json()) for a in firing]) if firing else []
        with self._lock:
            for alert in alerts:
                if alert.status == "resolved":
                    self.counters["resolved"] += 1
                    answer["resolved"].append(alert.incident.id)
                    log.info("resolved alert recorded, not acted on: %s", alert.incident.id)
            for alert, new in zip(firing, fresh):
                self.counters["firing"] += 1
                if not new:
                    self.counters["duplicates"] += 1
                answer["accepted" if new else "duplicates"].append(alert.incident.id)
        if isinstance(self.critical_starter, WarmTriage):  # stored: a Critical's flag goes off now, not after Prefect
            for alert, new in zip(firing, fresh):
                if new and self._severity(alert.incident) == "critical":
                    self.critical_starter.start_first(alert.incident)
        if any(fresh):
            with self._wake:
                self._wake.notify_all()
        return answer

    def _work(self) -> None:
        """Start a triage for each accepted incident, until stopped. A fault of the spool itself (a full disk, an
        I/O error) never ends the worker: it is said in /healthz and retried with backoff (0.5 s doubling, at most
        30 s), so every accepted incident is triaged once the disk has room."""
        backoff = 0.0
        while not self._stopping.is_set():
            try:
                claimed = self.spool.claim()
                if claimed is None:
                    with self._wake:
                        self._wake.wait(0.25)
                    continue
                key, incident_json = claimed
                try:
                    self._start(key, Incident.model_validate_json(incident_json))
                except BaseException:  # this worker ends (the watchdog starts another); the incident stays due
                    self.spool.release(key)
                    raise
                if backoff:  # the spool works again
                    backoff = 0.0
                    with self._lock:
                        self._worker_error = ""
            except Exception as exc:  # noqa: BLE001 — the spool's own fault; never the end of the intake
                backoff = min(30.0, backoff * 2 or 0.5)
                with self._lock:
                    self._worker_error, self._worker_error_at = f"{type(exc).__name__}: {exc}", time.monotonic()
                log.error("intake worker: %s: %s; retrying in %.1f s", type(exc).__name__, exc, backoff)
                self._stopping.wait(backoff)

    def _supervise(self) -> None:
        """A worker that ended anyway (a BaseException) is started again, with backoff."""
        delay = 1.0
        while not self._stopping.wait(delay):
            dead = [n for n, thread in enumerate(self._threads) if not thread.is_alive()]
            for n in dead:
                with self._lock:
                    self.restarts += 1
                    self._worker_error = self._worker_error or "an intake worker ended"
                    self._worker_error_at = time.monotonic()
                log.error("intake worker %d ended; starting it again", n)
                self._threads[n] = self._worker(n)
                self._threads[n].start()
            delay = min(30.0, delay * 2) if dead else 1.0

    def _severity(self, incident: Incident) -> str:
        try:
            return decide(incident, self.severity).severity
        except BadInputError:
            return ""

    def _starter_for(self, incident: Incident) -> Starter:
        if self.critical_starter is None and self.high_starter is None:
            return self.starter
        severity = self._severity(incident)
        warm = {"critical": self.critical_starter, "high": self.high_starter}.get(severity)
        return warm or self.starter

    def _start(self, key: str, incident: Incident) -> None:
        try:
            run_id = self._starter_for(incident)(incident, key)
        except Exception as exc:  # Prefect unreachable or restarting: the row stays, retried, never dropped
            delay = self.spool.failed(key, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.counters["start_failures"] += 1
            log.warning("could not start triage for %s (%s); retrying in %.1f s", incident.id, type(exc).__name__, delay)
            return
        self.spool.done(key, run_id)
        with self._lock:
            self.counters["started"] += 1
        log.info("triage of %s started: flow run %s", incident.id, run_id)

    def health(self) -> dict[str, Any]:
        """`degraded` — while a start fails (Prefect away), the intake itself failed in the last 30 s (a full
        disk), a worker is down, or an accepted incident has waited over `receiver.backlog_alarm_seconds` —
        with the reason; accepted alerts are kept, not lost, whatever it says."""
        try:
            (backlog, last_error), waited = self.spool.backlog(), self.spool.oldest_waiting()
        except Exception as exc:  # noqa: BLE001 — the spool unreadable is itself the answer
            backlog, last_error, waited = -1, f"the intake spool cannot be read: {type(exc).__name__}: {exc}", None
        with self._lock:
            counters = dict(self.counters)
            intake_error = self._worker_error if time.monotonic() - self._worker_error_at < 30 else ""
        alive = sum(thread.is_alive() for thread in self._threads)
        reasons = [r for r in (
            last_error and f"triage could not start: {last_error}",
            intake_error and f"the intake failed: {intake_error}",
            not self._working and "starting: alerts are taken, their triage starts once serve has loaded its flows",
            self._working and alive < len(self._threads) and not self._stopping.is_set() and
            f"{len(self._threads) - alive} of {len(self._threads)} intake workers down",
            waited is not None and waited > self.cfg.backlog_alarm_seconds and
            f"the oldest accepted alert has waited {waited:.0f} s for its triage") if r]
        return {"status": "degraded" if reasons else "ok", "reasons": reasons, "backlog": backlog,
                "last_error": last_error or intake_error, "workers_alive": alive, "worker_restarts": self.restarts,
                **counters}

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
            if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
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

    def _parse(self, body: bytes, source: str) -> list[ReceivedAlert]:
        """The payload, validated whole by the same code triage uses: a body triage would refuse is a 4xx now."""
        try:
            payload = json.loads(body, parse_constant=_reject_constant)
        except RecursionError:
            raise AlertError("malformed JSON: nested too deeply", 400) from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, NaN/Infinity, a 5000-digit integer
            raise AlertError(f"malformed JSON: {exc}", 400) from None
        alerts = [generic_incident(payload)] if source == "generic" else alerts_to_incidents(payload, source, self.cfg)
        for alert in alerts:
            if alert.status == "firing":
                try:
                    decide(alert.incident, self.severity)
                except BadInputError as exc:
                    raise AlertError(f"{alert.incident.id}: {exc}") from None
        return alerts

    async def _receive(self, request: Request, source: str) -> tuple[int, dict]:
        refused = self._authorized(request.headers)
        if refused:
            return refused[0], {"error": refused[1]}
        length = request.headers.get("Content-Length")
        if length is None:
            return 411, {"error": "send a Content-Length"}
        if not (length.isascii() and length.isdigit()) or len(length) > 12:
            return 400, {"error": f"Content-Length {length[:20]!r} is not a byte count"}
        if int(length) > self.cfg.max_body_bytes:
            return 413, {"error": f"body of {length} bytes is over the limit of {self.cfg.max_body_bytes} "
                                  "(receiver.max_body_bytes)"}
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.cfg.max_body_bytes:
                return 413, {"error": f"body over the limit of {self.cfg.max_body_bytes} (receiver.max_body_bytes)"}
        refused = self._signed(request.headers, body, source)
        if refused:
            return refused[0], {"error": refused[1]}
        try:
            alerts = self._parse(body, source)
        except AlertError as exc:
            return exc.status, {"error": str(exc)}
        try:
            answer = await run_in_threadpool(self._accept, alerts)  # on disk (fsynced) before the 202
        except sqlite3.Error as exc:  # a full disk: nothing was kept, and the sender is told to send it again
            with self._lock:
                self._worker_error, self._worker_error_at = f"{type(exc).__name__}: {exc}", time.monotonic()
            log.error("could not keep an alert in the intake spool: %s: %s", type(exc).__name__, exc)
            return 503, {"error": f"the alert could not be stored ({exc}); nothing was accepted: send it again"}
        return 202, answer

    def _app(self):
        from starlette.applications import Starlette
        from starlette.routing import Route

        routes = {"/alerts/alertmanager": "alertmanager", "/alerts/grafana": "grafana", "/incidents": "generic"}

        def answer(status: int, body: dict) -> JSONResponse:
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
            if status >= 400:  # a body left unread must not be taken for the next request
                headers["Connection"] = "close"
            return JSONResponse(body, status_code=status, headers=headers)

        def endpoint(source: str):
            async def receive(request: Request) -> JSONResponse:
                try:
                    status, body = await self._receive(request, source)
                except ClientDisconnect:
                    status, body = 400, {"error": "the client went away before the whole body arrived"}
                with self._lock:
                    self.counters["requests"] += 1
                    if status >= 400:
                        self.counters["refused"] += 1
                if status >= 400:
                    log.warning("refused %s %s: %s %s", request.method, request.url.path, status, body["error"])
                return answer(status, body)
            return receive

        async def healthz(request: Request) -> JSONResponse:
            return answer(200, await run_in_threadpool(self.health))

        async def not_found(request: Request, exc) -> JSONResponse:
            if request.url.path == "/healthz":
                return answer(405, {"error": "GET /healthz"})
            if request.url.path in routes:
                return answer(405, {"error": f"POST {request.url.path}"})
            return answer(404, {"error": f"no endpoint {request.url.path}; POST to {', '.join(routes)}, GET /healthz"})

        async def failure(request: Request, exc: Exception) -> JSONResponse:  # a bug: said, never a dropped connection
            log.error("receiver error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
            return answer(500, {"error": "internal error; the alert was not accepted, send it again"})

        return Starlette(routes=[*(Route(path, endpoint(source), methods=["POST"]) for path, source in routes.items()),
                                 Route("/healthz", healthz, methods=["GET"])],
                         exception_handlers={404: not_found, 405: not_found, Exception: failure})
