"""Time to mitigation per severity path, and the full Phase 1 rollback step by step.

On a sample workspace made like `make demo` does (regressed head deployed as production, 5 s
metric watch, the benchmark baseline benched in the same run in quick mode), triage runs in this
process against a Prefect server of the script's own; each run's recorded time to mitigation
(its `-ttm` artifact: incident start → flag off committed → pushed → deploy done) is read back.

    .venv/bin/python bench/severity_paths.py [--trials 3] [--full-trials 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from _services import start_prefect, stop  # noqa: E402


def one(where: Path, name: str, n: int, kind: str, pct: float | None, skip: list[str] | None) -> dict:
    from prefect.artifacts import Artifact

    from actor_rollback.deployments.demo import deploy_regressed, prepare, stop_service
    from actor_rollback.flows.outcome import run_flow
    from actor_rollback.flows.triage import triage
    from actor_rollback.runbook.model import Incident, TriageReport

    demo = prepare(where / f"{name}-{n}")
    deploy_regressed(demo)
    incident = Incident(id=f"{name}-{n}", phase="1", kind=kind, regression_pct=pct, source="cli",
                        started_at=datetime.now(timezone.utc))
    try:
        report = TriageReport.model_validate(run_flow(triage, incident=incident, repo=str(demo.sample.repo),
                                                      config=str(demo.config), skip=skip))
    finally:
        stop_service(demo)
    ttm = {r["milestone"]: r["seconds"] for r in json.loads(Artifact.get(f"rollback-phase-1-{incident.id}-ttm").data)}
    return {"ttm": ttm, "steps": [(s.id, s.name, s.status, s.seconds) for s in report.rollback.steps],
            "outcome": report.outcome, "severity": report.decision.severity}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--full-trials", type=int, default=1)
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path.home() / '.cargo' / 'bin'}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        os.environ.setdefault("CARGO_TARGET_DIR", str(where / "target"))
        server = start_prefect(where / "prefect-home")
        try:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
                paths = [("critical", "service-down", None, None, args.trials),
                         ("high-no-benchmarks", "perf-regression", 25.0, ["benchmarks"], args.trials),
                         ("high-full", "perf-regression", 25.0, None, args.full_trials)]
                results = {}
                for name, kind, pct, skip, trials in paths:
                    results[name] = [one(where, name, n, kind, pct, skip) for n in range(trials)]
                    print(f"{name}: done ({trials} trials)", flush=True)
        finally:
            stop(server)
    print(f"\nmachine: {os.cpu_count()} cores; in-process triage (no pick-up), sample workspace, demo config")
    print("| path | trials | flag off committed | pushed | deploy done | whole rollback run | outcome |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        def med(key: str, runs=runs) -> str:
            values = [r["ttm"][key] for r in runs if key in r["ttm"]]
            return f"{statistics.median(values):.2f} s" if values else "—"
        whole = statistics.median(sum(s[3] for s in r["steps"]) for r in runs)
        print(f"| {name} | {len(runs)} | {med('flag off committed')} | {med('pushed')} | {med('deploy done')} | "
              f"{whole:.1f} s of steps | {runs[0]['outcome']} |")
    full = results["high-full"][0]
    print("\nThe full Phase 1 rollback (high-full, first trial), step by step:")
    print("| step | status | seconds |")
    print("|---|---|---|")
    for step_id, step, status, seconds in full["steps"]:
        print(f"| {step_id} {step} | {status} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
