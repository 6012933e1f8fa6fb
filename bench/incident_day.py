"""An incident day (#24), all real on loopback: several targets, mixed severities, serve restarted and SIGTERMed.

A Prefect server of its own (SQLite, or PostgreSQL with --postgres); N sample workspaces (targets), each with a
bare remote and `actor-rollback serve --name tN --limit 4` (runner, alert receiver, the person-waits watch).
Over `--window` seconds the script posts incidents to the targets' receivers (`/incidents`, alert-style ids in
upper case): Critical (service down → F.1 flag-off, warm path), High (15 % → F.2 full Phase 1 rollback),
Medium (7 % → F.3, the PM decides: suspended), Low (docs → F.4 issue file). Every serve is restarted (SIGTERM +
start) once at 40 % of the window and SIGTERMed, left down 8 s, and started again at 70 %; an incident posted
while its receiver is down is posted again until accepted, as Alertmanager does. Then every Medium is answered
(rejected: an issue) and must proceed.

Each target's CI is `true` and its deploy a 2 s command that logs its start and end (the overlap check); a High
rollback leaves out monitor, logs and benchmarks (`triage.high_skip`): the day measures the system — locks,
waits, priority, restarts — not the benchmarks. Criticals go to targets t0 and t1, Highs to the others
(`--mix-critical` puts them on the same targets, to show what a Critical waits for behind a running High), and
arrive at 15 % and 60 % of the window, clear of the restarts (one caught by a restart waits for serve to be back).

Measured: Critical alert → flag-off pushed (the rollback's own `pushed` milestone); High alert → its rollback run
started; Mediums still suspended and answerable before the answers, and ended after; each Low's issue on the
remote exactly once; triage runs that failed or crashed; deploys of one target overlapping; processes left.

    .venv/bin/python bench/incident_day.py [--postgres] [--baseline] [--critical 6] [--targets 5] [--window 120]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _services import free_port, git, postgres, start_prefect, stop, wait_for  # noqa: E402
from _timing import percentile  # noqa: E402

TOKEN = "incident-day-token-0123456789abcdef"
CLI = str(Path(sys.executable).parent / "actor-rollback")
ROLES = ("tech-lead", "sre-oncall", "project-manager", "architect", "development-team")
KINDS = {"critical": {"kind": "service-down"}, "high": {"kind": "perf-regression", "regression_pct": 15.0},
         "medium": {"kind": "perf-regression", "regression_pct": 7.0}, "low": {"kind": "docs"}}


class Pager:
    """The people's phones: a real HTTP server on loopback behind a Prefect notification block."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        CustomWebhookNotificationBlock(name="incident-day-pager", url=f"http://127.0.0.1:{self.server.server_port}/",
                                       json_data={"subject": "{{subject}}", "text": "{{body}}"}).save(
            "incident-day-pager", overwrite=True)


SLOW_STOPS: list[dict] = []


class Target:
    def __init__(self, n: int, where: Path) -> None:
        from actor_rollback.deployments.sample import create_sample_workspace
        from actor_rollback.runbook import SHIPPED_CONFIG

        self.name, self.port = f"t{n}", free_port()
        self.home = where / self.name
        self.sample = create_sample_workspace(self.home / "sample")
        self.deploys = self.home / "deploys.log"
        text = SHIPPED_CONFIG.read_text()
        for role in ROLES:
            text = text.replace(f'[contacts.{role}]\nname = "TBD"\n',
                                f'[contacts.{role}]\nname = "{role}"\nnotify = ["custom-webhook/incident-day-pager"]\n')
        for old, new in {
            'command = "cargo test --workspace"': 'command = "true"',
            'command = "./scripts/deploy.sh production --version={version}"':
                f"command = \"sh -c 'echo start $(date +%s.%N) >> {self.deploys}; sleep 2; "
                f"echo end $(date +%s.%N) >> {self.deploys}'\"",
            "high_skip = []": 'high_skip = ["monitor", "logs", "benchmarks"]',
            'medium = "24h"': 'medium = "2h"', "watch_seconds = 10 ": "watch_seconds = 2 ",
            'default_phase = ""': 'default_phase = "1"',
        }.items():
            assert old in text, old
            text = text.replace(old, new, 1)
        self.config = self.home / "rollback.toml"
        self.config.write_text(text)
        self.serve: subprocess.Popen | None = None
        self.log = self.home / "serve.log"

    def start(self) -> None:
        env = {**os.environ, "ACTOR_ROLLBACK_RECEIVER_TOKEN": TOKEN, "PREFECT_LOGGING_LEVEL": "INFO",
               "XDG_STATE_HOME": str(self.home / "state")}
        self.serve = subprocess.Popen([CLI, "serve", "--repo", str(self.sample.repo), "--config", str(self.config),
                                       "--receiver-port", str(self.port), "--name", self.name, "--limit", "4"],
                                      env=env, stdout=open(self.log, "a"), stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def ready(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200 and \
                "being served" in self.log.read_text().split("== start ==")[-1]
        except httpx.HTTPError:
            return False

    def stop(self) -> float:
        started = time.monotonic()
        self.serve.send_signal(15)
        try:
            self.serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.serve.pid, 9)
            self.serve.wait()
        took = time.monotonic() - started
        if took > 10:  # over serve's aim: what it was doing, for the report
            SLOW_STOPS.append({"target": self.name, "seconds": round(took, 1),
                               "log": self.log.read_text().split("== start ==")[-1].splitlines()[-60:]})
        return took

    def mark(self) -> None:
        with open(self.log, "a") as out:
            out.write("== start ==\n")

    def overlaps(self) -> int:
        if not self.deploys.exists():
            return 0
        depth, worst = 0, 0
        for line in self.deploys.read_text().splitlines():
            depth += 1 if line.startswith("start") else -1
            worst = max(worst, depth)
        return worst - 1 if worst > 1 else 0


def schedule(args, targets: list[Target]) -> list[dict]:
    rng = random.Random(24)
    plan = []
    critical_targets = targets[:2] if not args.mix_critical else targets
    high_targets = targets[2:] or targets if not args.mix_critical else targets
    for severity, count in (("critical", args.critical), ("high", args.high), ("medium", args.medium), ("low", args.low)):
        for n in range(count):
            pool = {"critical": critical_targets, "high": high_targets}.get(severity, targets)
            plan.append({"severity": severity, "target": pool[n % len(pool)], "n": n})
    rng.shuffle(plan)
    times = [args.window * (i + 0.5) / len(plan) for i in range(len(plan))]
    criticals = [i for i, item in enumerate(plan) if item["severity"] == "critical"]
    for k, i in enumerate(criticals):  # clear of the restarts (a Critical caught by one waits for serve: not this figure)
        times[i] = args.window * (0.15 + 0.45 * k / max(1, len(criticals) - 1))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    for item, at in zip(plan, times):
        item["at"] = at
        item["id"] = f"AM-{item['severity'].upper()}-{item['n']:02d}-{stamp}"
    return sorted(plan, key=lambda item: item["at"])


def post(item: dict) -> float:
    """Post until accepted (a receiver down for a restart refuses connections); the time of acceptance."""
    import httpx

    body = {"id": item["id"], "phase": "1", **KINDS[item["severity"]],
            "started_at": datetime.now(timezone.utc).isoformat(), "summary": f"incident day {item['id']}"}
    while True:
        try:
            answer = httpx.post(f"http://127.0.0.1:{item['target'].port}/incidents", json=body,
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
            if answer.status_code == 202:
                return time.time()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def runs_named(names: list[str]) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    found = {}
    with get_client(sync_client=True) as client:
        for start in range(0, len(names), 100):
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    name=FlowRunFilterName(any_=names[start:start + 100])), limit=200):
                found.setdefault(run.name, []).append(run)
    return found


def pushed_at(incident: str) -> float | None:
    from prefect.artifacts import Artifact

    from actor_rollback.tasks.context import artifact_key

    ttm = Artifact.get(f"{artifact_key('rollback-phase', '1', incident)}-ttm")
    if ttm is None:
        return None
    rows = json.loads(ttm.data) if isinstance(ttm.data, str) else ttm.data
    row = next((r for r in rows if r["milestone"] == "pushed"), None)
    return datetime.fromisoformat(row["at"]).timestamp() if row else None


def processes() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return found


def day(args, where: Path, database: str, restarts_on: bool = True) -> dict:
    server = start_prefect(where / "prefect-home", database)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # the second day's server: Prefect read its settings when first imported (the first day's)
    with temporary_settings(updates={PREFECT_API_URL: os.environ["PREFECT_API_URL"]}):
        return _day(args, where, server, restarts_on)


def _day(args, where: Path, server, restarts_on: bool) -> dict:
    targets: list[Target] = []
    try:
        Pager()
        targets += [Target(n, where) for n in range(args.targets)]
        before = processes()
        for target in targets:
            target.mark()
            target.start()
        wait_for(lambda: all(t.ready() for t in targets), 180, "every serve ready", step=0.5)
        plan = schedule(args, targets)
        print(f"{len(plan)} incidents over {args.window} s on {len(targets)} targets", flush=True)
        t0 = time.monotonic()
        restarts: list[str] = []

        def restart(at: float, down: float) -> None:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            took = [t.stop() for t in targets]
            restarts.append(f"SIGTERM at {at:.0f} s: every serve exited within {max(took):.1f} s")
            time.sleep(down)
            for target in targets:
                target.mark()
                target.start()

        threads = [threading.Thread(target=restart, args=(0.40 * args.window, 0.0)),
                   threading.Thread(target=restart, args=(0.70 * args.window, 8.0))] if restarts_on else []
        for thread in threads:
            thread.start()
        accepted = {}
        posters = []
        for item in plan:
            time.sleep(max(0.0, t0 + item["at"] - time.monotonic()))
            item["sent"] = time.time()
            poster = threading.Thread(target=lambda i=item: accepted.__setitem__(i["id"], post(i)))
            poster.start()
            posters.append(poster)
        for poster in posters + threads:
            poster.join()
        try:
            wait_for(lambda: all(t.ready() for t in targets), 180, "every serve ready again", step=0.5)
        except SystemExit:
            for target in targets:
                if not target.ready():
                    print(f"{target.name} not ready; exit code {target.serve.poll()}; its log ends:\n"
                          + target.log.read_text()[-3000:], flush=True)
            raise
        names = [f"triage-{item['id']}" for item in plan]
        mediums = [item for item in plan if item["severity"] == "medium"]

        def settled() -> bool:
            from actor_rollback.flows.outcome import has_ended

            runs = runs_named(names)
            for item in plan:
                mine = runs.get(f"triage-{item['id']}", [])
                if not mine:
                    return False
                newest = max(mine, key=lambda r: r.created)
                if item["severity"] == "medium":
                    if newest.state.name != "Suspended":
                        return False
                elif not has_ended(newest):
                    return False
            return True

        wait_for(settled, 600, "every triage ended (Mediums suspended)", step=1)
        waiting = sum(1 for item in mediums for r in runs_named([f"triage-{item['id']}"]).get(f"triage-{item['id']}", [])
                      if r.state.name == "Suspended")
        from prefect.flow_runs import resume_flow_run

        for item in mediums:  # the PM answers each: an issue for the next release
            [run] = runs_named([f"triage-{item['id']}"])[f"triage-{item['id']}"]
            resume_flow_run(run.id, run_input={"approved": False, "approver": "PM (bench)", "comment": "next release"})

        def answered() -> bool:
            runs = runs_named([f"triage-{item['id']}" for item in mediums])
            return all(r.state.is_final() for rs in runs.values() for r in rs)

        wait_for(answered, 600, "every Medium proceeded after its answer", step=1)
        runs = runs_named(names)
        for target in targets:
            target.stop()
        time.sleep(1)
        left = {pid: cmd for pid, cmd in processes().items() if pid not in before and str(where) in cmd
                and "prefect server" not in cmd and "postgres" not in cmd}
        return measure(plan, runs, targets, accepted, waiting, restarts, left)
    finally:
        for target in targets:
            if target.serve is not None and target.serve.poll() is None:
                target.stop()
        stop(server)


def measure(plan, runs, targets, accepted, waiting, restarts, left) -> dict:
    def newest(item):
        return max(runs[f"triage-{item['id']}"], key=lambda r: r.created)

    critical = [pushed_at(item["id"]) - item["sent"] for item in plan if item["severity"] == "critical"
                if pushed_at(item["id"])]
    # a Critical posted while its serve was down for a restart waits for serve to be back (Alertmanager's retries):
    # that is serve's downtime, not the path's; told apart by its first post not being accepted at once
    up = [pushed_at(item["id"]) - item["sent"] for item in plan if item["severity"] == "critical"
          if pushed_at(item["id"]) and accepted[item["id"]] - item["sent"] < 1.0]
    urgent = [item for item in plan if item["severity"] in ("critical", "high")]
    rollbacks = runs_named([f"rollback-phase-1-{item['id']}" for item in urgent])

    def started(item) -> float | None:
        mine = [r.start_time.timestamp() for r in rollbacks.get(f"rollback-phase-1-{item['id']}", []) if r.start_time]
        return min(mine) if mine else None

    high = [started(item) - item["sent"] for item in plan if item["severity"] == "high" if started(item)]
    high_accepted = [started(item) - accepted[item["id"]] for item in plan if item["severity"] == "high"
                     if started(item)]
    detail = []
    for item in urgent:  # where each second went: the receiver's answer, the triage's start, the rollback's, the push
        triage = min(runs[f"triage-{item['id']}"], key=lambda r: r.created)
        row = {"incident": item["id"], "target": item["target"].name, "at_s": round(item["at"], 1),
               "accepted_s": round(accepted[item["id"]] - item["sent"], 2),
               "triage_running_s": round(triage.start_time.timestamp() - item["sent"], 2) if triage.start_time else None,
               "rollback_running_s": round(started(item) - item["sent"], 2) if started(item) else None}
        if item["severity"] == "critical" and pushed_at(item["id"]):
            row["flag_off_pushed_s"] = round(pushed_at(item["id"]) - item["sent"], 2)
        detail.append(row)
    lows = [item for item in plan if item["severity"] == "low"]
    filed = []
    for item in lows + [i for i in plan if i["severity"] == "medium"]:
        origin = item["target"].sample.origin
        filed.append(len(git(origin, "log", "--format=%H", f"--grep=register issue {item['id']} ", "main").split()))
    states = [(item["severity"], newest(item).state.type.value, newest(item).state.message or "") for item in plan]
    failed = [s for s in states if s[1] in ("FAILED", "CRASHED")]
    return {
        "incidents": {s: sum(1 for i in plan if i["severity"] == s) for s in KINDS},
        "critical_flag_off_pushed_s": sorted(round(v, 3) for v in critical),
        "critical_p50_s": round(percentile(critical, 50), 3) if critical else None,
        "critical_p95_s": round(percentile(critical, 95), 3) if critical else None,
        "critical_serve_up_s": sorted(round(v, 3) for v in up),
        "critical_serve_up_p95_s": round(percentile(up, 95), 3) if up else None,
        "critical_missing": sum(1 for item in plan if item["severity"] == "critical" and not pushed_at(item["id"])),
        "high_rollback_started_s": sorted(round(v, 2) for v in high),
        "high_max_s": round(max(high), 2) if high else None,
        "high_from_acceptance_s": sorted(round(v, 2) for v in high_accepted),
        "urgent_detail": detail,
        "medium_suspended_before_answer": waiting,
        "medium_completed_after_answer": sum(1 for s in states if s[0] == "medium" and s[1] == "COMPLETED"),
        "issues_filed_once": sum(1 for n in filed if n == 1), "issues_expected": len(filed),
        "issues_filed_twice_or_more": sum(1 for n in filed if n > 1),
        "runs_failed_or_crashed": len(failed), "failures": [f"{s}: {m[:300]}" for s, _, m in failed],
        "runs_of_each_triage": max(len(runs[f"triage-{i['id']}"]) for i in plan),
        "deploy_overlaps": sum(t.overlaps() for t in targets),
        "processes_left": left, "restarts": restarts, "accepted": len(accepted), "slow_stops": list(SLOW_STOPS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true", help="the Prefect server on PostgreSQL (else SQLite)")
    parser.add_argument("--targets", type=int, default=5)
    parser.add_argument("--window", type=float, default=120.0, help="seconds over which the incidents arrive")
    parser.add_argument("--critical", type=int, default=2)
    parser.add_argument("--high", type=int, default=4)
    parser.add_argument("--medium", type=int, default=14)
    parser.add_argument("--low", type=int, default=20)
    parser.add_argument("--mix-critical", action="store_true", help="Criticals on the same targets as Highs")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--baseline", action="store_true",
                        help="first the same day with no restart (the baseline, same run), then the day itself")
    args = parser.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped bench stops its servers too (finally)
    days = {}
    for name, restarts_on in ([("baseline (no restart)", False)] if args.baseline else []) + [("day", True)]:
        with tempfile.TemporaryDirectory(prefix="incident-day-") as folder:
            with (postgres() if args.postgres else contextlib.nullcontext("")) as database:
                days[name] = day(args, Path(folder), database, restarts_on)
        days[name]["database"] = "postgresql" if args.postgres else "sqlite"
        print(f"== {name}", flush=True)
    result = days["day"] if len(days) == 1 else {**days, "ratios (day / baseline)": {
        key: round(days["day"][key] / days["baseline (no restart)"][key], 2)
        for key in ("critical_p95_s", "critical_serve_up_p95_s", "high_max_s")
        if days["day"].get(key) and days["baseline (no restart)"].get(key)}}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
