"""Durable intake under a Prefect outage: alerts accepted while Prefect is down, the receiver SIGKILLed
half way, and how many triage runs exist once both are back (the answer must be: every alert, once).

A receiver process (tests/receiver_process.py) on its own spool, a `prefect server start` of its own
(SQLite). Prefect is stopped; N alerts are posted (half before, half after a SIGKILL and restart of the
receiver); Prefect comes back after the outage; the script waits until the receiver's backlog is empty
and counts the runs. Baseline in the same run: the same N alerts with Prefect up all along.

    .venv/bin/python bench/intake_outage.py [--alerts 50] [--outage 120]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from _services import free_port, start_prefect, stop  # noqa: E402

TOKEN = "bench-intake-token-0123456789"
HELPER = ROOT / "tests" / "receiver_process.py"


def body(fingerprint: str) -> dict:
    template = json.loads((ROOT / "tests" / "data" / "alertmanager-v4-firing.json").read_text())
    template["alerts"][0].update(fingerprint=fingerprint)
    template["alerts"][0]["labels"]["phase"] = "1"
    template["alerts"][0]["annotations"]["regression_pct"] = "15"
    return template


def receiver(spool: Path, port: int, where: Path) -> subprocess.Popen:
    log = where / f"receiver-{time.monotonic_ns()}.log"  # one log per process: "listening" must be this one's
    log.touch()
    process = subprocess.Popen([sys.executable, str(HELPER), str(spool), str(port), "--deployment", "triage/outage"],
                               env={**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "PREFECT_CLIENT_MAX_RETRIES": "1"},
                               stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
    while "listening" not in log.read_text():
        if process.poll() is not None:
            raise SystemExit(log.read_text()[-2000:])
        time.sleep(0.05)
    return process


def post(port: int, fingerprint: str) -> int:
    import httpx

    return httpx.post(f"http://127.0.0.1:{port}/alerts/alertmanager", json=body(fingerprint),
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code


def wait_backlog_empty(port: int, timeout: float) -> float:
    import httpx

    started = time.monotonic()
    while httpx.get(f"http://127.0.0.1:{port}/healthz").json()["backlog"]:
        if time.monotonic() - started > timeout:
            raise SystemExit("the backlog did not drain")
        time.sleep(0.2)
    return time.monotonic() - started


def count_runs(prefix: str) -> tuple[int, int]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
    ids = [r.parameters["incident"]["id"] for r in runs if r.parameters.get("incident", {}).get("id", "").startswith(prefix)]
    return len(ids), len(set(ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--outage", type=float, default=120)
    args = parser.parse_args()
    where = Path(tempfile.mkdtemp(prefix="intake-outage-"))
    home = where / "prefect-home"
    server = start_prefect(home)
    port = int(os.environ["PREFECT_API_URL"].rsplit(":", 1)[1].split("/")[0])
    from actor_rollback.flows.triage import triage

    triage.to_deployment(name="outage", parameters={"repo": "/nonexistent", "config": ""}).apply()
    receiver_port, log = free_port(), where

    up = receiver(where / "spool-up", receiver_port, log)  # baseline: Prefect up all along
    t0 = time.monotonic()
    assert all(post(receiver_port, f"base{n:03d}") == 202 for n in range(args.alerts))
    baseline = time.monotonic() - t0 + wait_backlog_empty(receiver_port, 300)
    os.killpg(up.pid, signal.SIGTERM)
    up.wait()

    first = receiver(where / "spool", receiver_port, log)
    stop(server)
    down = time.monotonic()
    half = args.alerts // 2
    codes = [post(receiver_port, f"out{n:03d}") for n in range(half)]
    time.sleep(min(5.0, args.outage / 4))
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = receiver(where / "spool", receiver_port, log)
    codes += [post(receiver_port, f"out{n:03d}") for n in range(half, args.alerts)]
    import httpx

    health = httpx.get(f"http://127.0.0.1:{receiver_port}/healthz").json()
    time.sleep(max(0.0, args.outage - (time.monotonic() - down)))
    server = start_prefect(home, port=port)
    drained = wait_backlog_empty(receiver_port, 600)
    total, distinct = count_runs("am-out")
    os.killpg(second.pid, signal.SIGTERM)
    second.wait()
    stop(server)
    print(f"{args.alerts} alerts, Prefect down {args.outage:.0f} s, receiver SIGKILLed once after {half} alerts; "
          f"{os.cpu_count()} cores")
    print(f"answers: {codes.count(202)}/{len(codes)} 202; /healthz during the outage: {health['status']}, "
          f"backlog {health['backlog']}")
    print(f"triage runs after both came back: {total} ({distinct} distinct incidents); backlog drained "
          f"{drained:.1f} s after Prefect was back")
    print(f"baseline (Prefect up): {args.alerts} alerts accepted and started in {baseline:.1f} s")
    print(f"figure: runs / alerts = {total}/{args.alerts}; drain after the outage {drained:.1f} s vs {baseline:.1f} s "
          f"baseline (ratio {drained / baseline:.2f})")
    if not (total == distinct == args.alerts):
        raise SystemExit("an accepted alert was lost or started twice")


if __name__ == "__main__":
    main()
