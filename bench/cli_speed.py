"""How long an on-call person waits for the CLI on the embedded default (#26 §5): whole commands, start to exit,
output captured, side by side in one run.

Baseline: `plan` (no Prefect at all). Compared: `run --dry-run` and a real `run 3 --only P3.3` (the CI file edit,
committed and pushed), each on Prefect's ephemeral server (ACTOR_ROLLBACK_LOCAL_SERVER=off: one server per
command, as before) and on the local server (started once, then reused). Each repeat of P3.3 gets a fresh sample
workspace, so every timed run does the edit. No PREFECT_API_URL; PREFECT_HOME is the script's own.

    .venv/bin/python bench/cli_speed.py [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "actor-rollback")


def timed_command(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - start, done.returncode, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from actor_rollback.deployments.sample import create_sample_workspace

    work = Path(tempfile.mkdtemp(prefix="cli-speed-"))
    base = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "ACTOR_ROLLBACK_TEST_CONFIG")}
    base.update(PREFECT_HOME=str(work / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false", TMPDIR=str(work))
    modes = {"ephemeral": {**base, "ACTOR_ROLLBACK_LOCAL_SERVER": "off"},
             "local": {**base, "ACTOR_ROLLBACK_LOCAL_SERVER": "on"}}
    sample = create_sample_workspace(work / "sample")
    repo = str(sample.repo)
    samples: dict[str, list[float]] = {}
    codes: dict[str, set[int]] = {}

    def record(name: str, seconds: float, code: int) -> None:
        samples.setdefault(name, []).append(seconds)
        codes.setdefault(name, set()).add(code)

    try:
        cold, code, stderr = timed_command(["server", "start"], modes["local"])  # the first command's extra cost
        assert code == 0, stderr
        record("local server: first start", cold, code)
        for n in range(args.repeat):
            record("plan 1 --repo", *timed_command(["plan", "1", "--repo", repo, "--json"], base)[:2])
            for mode, env in modes.items():
                record(f"run 1 --dry-run ({mode})", *timed_command(
                    ["run", "1", "--repo", repo, "--reason", "bench", "--incident", f"dry-{mode}-{n}", "--dry-run",
                     "--json"], env)[:2])
                fresh = create_sample_workspace(work / f"p33-{mode}-{n}")
                record(f"run 3 --only P3.3 ({mode})", *timed_command(
                    ["run", "3", "--repo", str(fresh.repo), "--reason", "bench", "--incident", f"p33-{mode}-{n}",
                     "--only", "P3.3", "--yes", "--json"], env)[:2])
    finally:
        subprocess.run([CLI, "server", "stop"], env=modes["local"], capture_output=True)

    median = {name: statistics.median(values) for name, values in samples.items()}
    plan = median["plan 1 --repo"]
    rows = []
    for name, values in samples.items():
        rows.append({"command": name, "median_s": round(median[name], 2), "max_s": round(max(values), 2),
                     "n": len(values), "x_plan": round(median[name] / plan, 2), "exit": sorted(codes[name])})
    print(f"{'command':32} {'median s':>9} {'max s':>7} {'× plan':>7}  n  exit")
    for row in rows:
        print(f"{row['command']:32} {row['median_s']:9.2f} {row['max_s']:7.2f} {row['x_plan']:7.2f} "
              f"{row['n']:2d}  {row['exit']}")
    goals = {"run --dry-run ≤ 1.5 × plan (local)": median["run 1 --dry-run (local)"] <= 1.5 * plan,
             "run 3 --only P3.3 ≤ 4 s (local)": median["run 3 --only P3.3 (local)"] <= 4.0}
    for goal, met in goals.items():
        print(f"{'MET' if met else 'NOT MET'}: {goal}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "goals": goals}, indent=2))


if __name__ == "__main__":
    main()
