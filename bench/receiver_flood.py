"""The alert receiver under a connection flood from one address (#25.2): do valid alerts still get their 202?

A flooder (a process of its own, asyncio) keeps 1,000 unauthenticated sockets open against the receiver from
127.0.0.2 — each sends half a request line and is reopened the moment the receiver closes it — while
Alertmanager's stand-in posts one valid alert every 0.5 s from 127.0.0.1, each on a new connection, with a
2 s timeout and no retry. Measured in the same run, on the same receiver process type (tests/receiver_process.py,
the real receiver: auth, validation, durable intake):

- baseline: the same alerts with no flood;
- the flood against the shipped settings (`receiver.max_connections_per_client = 256`);
- the flood with that cap off (0) — the receiver as it was before #25.

    .venv/bin/python bench/receiver_flood.py [--sockets 1000] [--seconds 45]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from _timing import percentile  # noqa: E402

TOKEN = "flood-token-0123456789abcdef"
FLOOD_FROM = "127.0.0.2"


async def _hold(host: str, port: int, opened: list[int]) -> None:
    while True:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(FLOOD_FROM, 0))
            opened[0] += 1
            writer.write(b"POST /alerts/alertmanager HTTP/1.1\r\n")  # never finished
            await writer.drain()
            while await reader.read(4096):
                pass
            writer.close()
        except OSError:
            await asyncio.sleep(0.001)


def flood(host: str, port: int, sockets: int) -> None:
    """Keep `sockets` connections open, each reopened as soon as it is closed; prints how many it opened."""
    opened = [0]

    async def main() -> None:
        tasks = [asyncio.create_task(_hold(host, port, opened)) for _ in range(sockets)]
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for task in tasks:
            task.cancel()
        print(opened[0], flush=True)

    asyncio.run(main())


def body(n: int) -> bytes:
    template = json.loads((ROOT / "tests" / "data" / "alertmanager-v4-firing.json").read_text())
    alert = copy.deepcopy(template)
    alert["alerts"][0]["fingerprint"] = f"flood{n:05d}"
    alert["alerts"][0]["labels"]["phase"] = "1"
    alert["alerts"][0]["annotations"]["regression_pct"] = "15"
    return json.dumps(alert).encode()


def start_receiver(tmp: Path, port: int, per_client: int | None) -> subprocess.Popen:
    args = [sys.executable, str(ROOT / "tests" / "receiver_process.py"), str(tmp / f"spool-{port}"), str(port),
            "--record", str(tmp / f"record-{port}")]
    if per_client is not None:
        args += ["--per-client", str(per_client)]
    process = subprocess.Popen(args, env={**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN},
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = process.stdout.readline()
    assert line.startswith("listening"), line
    return process


def send_alerts(url: str, seconds: float, first: int) -> list[tuple[int, float]]:
    """One alert every 0.5 s for `seconds`, each on a new connection: (status or 0 for none within 2 s, seconds)."""
    import httpx

    results = []
    started = time.monotonic()
    n = first
    while time.monotonic() - started < seconds:
        tick = time.monotonic()
        try:
            with httpx.Client(timeout=2.0) as client:
                answer = client.post(url, content=body(n), headers={"Authorization": f"Bearer {TOKEN}",
                                                                      "Content-Type": "application/json"})
            results.append((answer.status_code, time.monotonic() - tick))
        except httpx.HTTPError:
            results.append((0, time.monotonic() - tick))
        n += 1
        time.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))
    return results


def measure(tmp: Path, per_client: int | None, sockets: int, seconds: float, first: int) -> dict:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = start_receiver(tmp, port, per_client)
    flooder = None
    try:
        if sockets:
            flooder = subprocess.Popen([sys.executable, __file__, "--flood-worker", str(port), str(sockets)],
                                       stdout=subprocess.PIPE, text=True)
            time.sleep(3)  # the flood is on before the first alert
        results = send_alerts(f"http://127.0.0.1:{port}/alerts/alertmanager", seconds, first)
    finally:
        opened = 0
        if flooder is not None:
            flooder.send_signal(signal.SIGTERM)
            opened = int((flooder.communicate(timeout=30)[0] or "0").strip() or 0)
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)
    ok = [t for status, t in results if status == 202 and t <= 2.0]
    times = [t for _, t in results]
    return {"sent": len(results), "ok": len(ok), "statuses": sorted({s for s, _ in results}),
            "p50": percentile(times, 50) * 1000, "p99": percentile(times, 99) * 1000, "max": max(times) * 1000,
            "flood_connections": opened}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--flood-worker", nargs=2, type=int, metavar=("PORT", "SOCKETS"))
    args = parser.parse_args()
    if args.flood_worker:
        flood("127.0.0.1", *args.flood_worker)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = [("no flood (baseline)", measure(Path(tmp), None, 0, min(args.seconds, 20), 0)),
                (f"{args.sockets} sockets, max_connections_per_client = 256 (shipped)",
                 measure(Path(tmp), None, args.sockets, args.seconds, 10_000)),
                (f"{args.sockets} sockets, no cap (before #25)", measure(Path(tmp), 0, args.sockets, args.seconds,
                                                                       20_000))]
    base = rows[0][1]["p50"]
    print("| run | valid alerts 202 within 2 s | p50 ms | p99 ms | max ms | p50 / baseline | flood connections |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        share = 100 * r["ok"] / r["sent"] if r["sent"] else 0.0
        print(f"| {name} | {r['ok']} of {r['sent']} ({share:.1f} %) | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{r['max']:.1f} | {r['p50'] / base:.2f} | {r['flood_connections']} |")


if __name__ == "__main__":
    main()
