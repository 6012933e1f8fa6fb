"""The alert receiver under an alert storm: answer times, and how long until every distinct alert
has its triage run on a real Prefect server.

1,000 Alertmanager webhooks over 100 distinct fingerprints from 8 concurrent senders, against
the real receiver (auth, validation, dedup, queueing; runs created with idempotency keys on a
`prefect server start` of its own). Baseline in the same run: the same storm against a bare
stdlib HTTP server that reads the body and answers 202 — what HTTP alone costs here.

    .venv/bin/python bench/receiver_storm.py [--alerts 1000] [--distinct 100] [--senders 8]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from _services import start_prefect, stop  # noqa: E402
from _timing import percentile  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def bodies(alerts: int, distinct: int) -> list[bytes]:
    template = json.loads((ROOT / "tests" / "data" / "alertmanager-v4-firing.json").read_text())
    template["alerts"][0]["labels"]["phase"] = "1"
    template["alerts"][0]["annotations"]["regression_pct"] = "15"
    out = []
    for n in range(alerts):
        body = copy.deepcopy(template)
        body["alerts"][0]["fingerprint"] = f"storm{n % distinct:04d}"
        out.append(json.dumps(body).encode())
    return out


def listen_drops() -> int:
    """The kernel's count of connections dropped because a listen queue was full (a SYN retried 1 s later)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            return int(dict(zip(head.split(), values.split()))["ListenOverflows"])
    return 0


RETRIES = {"count": 0}


def storm(url: str, payloads: list[bytes], senders: int) -> tuple[list[float], float]:
    """Every alert sent until answered 202, retrying a reset or refused connection or a 503 as Alertmanager
    does; the time includes the retries (RETRIES counts them)."""
    import httpx

    local = threading.local()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    lock = threading.Lock()

    def send(body: bytes) -> float:
        if not hasattr(local, "client"):
            local.client = httpx.Client()
        started, answer = time.perf_counter(), None
        for _ in range(20):
            try:
                answer = local.client.post(url, content=body, headers=headers, timeout=30)
                if answer.status_code != 503:
                    break
            except httpx.TransportError:
                local.client = httpx.Client()
            with lock:
                RETRIES["count"] += 1
        elapsed = time.perf_counter() - started
        assert answer is not None and answer.status_code == 202, answer and answer.text
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        times = list(pool.map(send, payloads))
    return times, time.perf_counter() - started


def bare_server() -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # as the receiver: a fair baseline

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(202)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def pct(times: list[float], q: int) -> float:
    """The q-th percentile in milliseconds."""
    return percentile(times, q) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=100)
    parser.add_argument("--senders", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_prefect(Path(tmp))
        try:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
                run(args)
        finally:
            stop(server)


def run(args) -> None:
    from actor_rollback.deployments.receiver import AlertReceiver, deployment_starter
    from actor_rollback.flows.triage import triage
    from actor_rollback.runbook.config import load_config

    os.environ["ACTOR_ROLLBACK_RECEIVER_TOKEN"] = TOKEN
    triage.to_deployment(name="bench", parameters={"repo": "/nonexistent", "config": ""}).apply()
    cfg = load_config(None).receiver
    payloads = bodies(args.alerts, args.distinct)

    bare = bare_server()
    drops = listen_drops()
    base_times, base_wall = storm(f"http://127.0.0.1:{bare.server_port}/alerts/alertmanager", payloads, args.senders)
    base_drops, drops = listen_drops() - drops, listen_drops()
    base_retries, RETRIES["count"] = RETRIES["count"], 0
    bare.shutdown()

    spool = tempfile.mkdtemp(prefix="receiver-storm-spool-")  # a fresh intake: no key remembered from a past run
    receiver = AlertReceiver(cfg, deployment_starter("triage/bench", {}), port=0, spool_dir=spool).start()
    times, wall = storm(f"{receiver.url}/alerts/alertmanager", payloads, args.senders)
    receiver_drops = listen_drops() - drops
    drain_started = time.perf_counter()
    receiver.drain(timeout=300)
    all_started = wall + (time.perf_counter() - drain_started)
    counters = dict(receiver.counters)
    receiver.stop()

    print(f"{args.alerts} alerts over {args.distinct} fingerprints, {args.senders} senders, {os.cpu_count()} cores")
    print(f"triage runs started: {counters['started']} (duplicates answered: {counters['duplicates']})")
    print("| measurement | p50 | p99 | max | storm sent in |")
    print("|---|---|---|---|---|")
    for name, t, w in (("receiver answer", times, wall), ("baseline: bare HTTP server", base_times, base_wall)):
        print(f"| {name} | {pct(t, 50):.2f} ms | {pct(t, 99):.2f} ms | {max(t) * 1000:.2f} ms | {w:.2f} s |")
    print(f"p99 ratio receiver / bare: {pct(times, 99) / pct(base_times, 99):.2f}")
    print(f"every distinct alert has its triage run {all_started:.2f} s after the storm began")
    print(f"listen-queue overflows (dropped SYNs, kernel ListenOverflows): receiver {receiver_drops}, "
          f"bare server {base_drops}; sends retried (reset/refused/503): receiver {RETRIES['count']}, "
          f"bare server {base_retries}")


if __name__ == "__main__":
    main()
