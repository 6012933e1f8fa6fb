"""How long `actor-rollback serve` takes from SIGTERM to exit (#25.1: at most 10 s, Kubernetes' grace is 30 s),
and whether anything it started outlives it.

A Prefect server of its own (SQLite) and sample workspaces; one `serve --limit 4`. Cases, each on a fresh serve:

- idle (the baseline of the same run);
- four rollbacks running, each deploying (a `sleep 120` deploy) on a target of its own — the runner's four slots;
- a Critical incident's warm triage deploying in serve's own process, beside two running rollbacks.

    .venv/bin/python bench/serve_sigterm.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
from _services import free_port, start_prefect, stop, wait_for  # noqa: E402

CLI = str(Path(sys.executable).parent / "actor-rollback")
TOKEN = "sigterm-bench-token-0123456789abcdef"


def deploys_running() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == b"sleep\x00120\x00":
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def serve(repo: Path, config: Path, tmp: Path, port: int) -> tuple[subprocess.Popen, Path]:
    log = tmp / f"serve-{port}.log"
    env = {**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "XDG_STATE_HOME": str(tmp / f"state-{port}"),
           "PREFECT_LOGGING_LEVEL": "INFO"}
    process = subprocess.Popen([CLI, "serve", "--repo", str(repo), "--config", str(config), "--receiver-port",
                                str(port)], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    wait_for(lambda: "being served" in log.read_text(), 90, "serve to start")
    return process, log


def sigterm(process: subprocess.Popen) -> tuple[float, int]:
    """Seconds from SIGTERM to exit, and the deploys left 3 s after."""
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    took = time.monotonic() - sent
    deadline = time.monotonic() + 3
    while deploys_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = deploys_running()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return took, len(left)


def one(case: str, targets: list, config: Path, tmp: Path, n: int) -> tuple[float, int]:
    from prefect.deployments import run_deployment

    port = free_port()
    process, log = serve(targets[0].repo, config, tmp, port)
    rollbacks = {"idle": 0, "four rollbacks deploying": 4, "a warm Critical deploying, two rollbacks": 2}[case]
    for k in range(rollbacks):
        run_deployment("rollback-phase-1/manual", timeout=0, parameters={
            "reason": "SIGTERM bench", "incident_id": f"inc-sigterm-{n}-{k}", "repo": str(targets[k + 1].repo),
            "skip": ["ci"]})
    expected = rollbacks
    if case.startswith("a warm Critical"):
        answer = httpx.post(f"http://127.0.0.1:{port}/incidents", headers={"Authorization": f"Bearer {TOKEN}"},
                            json={"id": f"inc-crit-{n}", "phase": "1", "kind": "service-down"})
        assert answer.status_code == 202, answer.text
        expected += 1
    wait_for(lambda: len(deploys_running()) >= expected, 120, f"{expected} deploys running")
    time.sleep(0.5)
    return sigterm(process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from actor_rollback.deployments.sample import create_sample_workspace

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        server = start_prefect(tmp / "prefect")
        try:
            config = tmp / "rollback.toml"
            config.write_text('[deploy]\ncommand = "sleep 120"\n')
            cases = ["idle", "four rollbacks deploying", "a warm Critical deploying, two rollbacks"]
            rows = {case: [] for case in cases}
            for n in range(args.repeats):
                targets = [create_sample_workspace(tmp / f"r{n}-t{k}") for k in range(5)]
                for case in cases:
                    rows[case].append(one(case, targets, config, tmp, n * 10 + cases.index(case)))
        finally:
            stop(server)
    base = statistics.median(took for took, _ in rows["idle"])
    print("| serve, at its SIGTERM | SIGTERM → exit, median (max) | median / idle | deploys left after |")
    print("|---|---|---|---|")
    for case, results in rows.items():
        times = [took for took, _ in results]
        print(f"| {case} | {statistics.median(times):.1f} s ({max(times):.1f} s) | "
              f"{statistics.median(times) / base:.1f} | {sum(left for _, left in results)} |")


if __name__ == "__main__":
    main()
