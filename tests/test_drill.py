"""#28: a rollback drill — the phase's own flow on a sandbox copy of the repository and its remote, timed against
the runbook's budgets; the real clone and remote byte-identical before and after; the sandbox always removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, tree_digest
from helpers import commit_change, config_variant, pager_block, paged_config_text

CLI = str(Path(sys.executable).parent / "actor-rollback")
SKIP_BUILDS = ("--skip", "ci", "--skip", "benchmarks")


def skip_builds(phase: str) -> list[str]:
    """--skip for the phase's cargo steps (CI, benchmarks) that it has: the code path's git steps stay."""
    from actor_rollback.runbook.phases import phase_steps

    names = {spec.name for spec in phase_steps(phase)}
    return [arg for name in ("ci", "benchmarks") if name in names for arg in ("--skip", name)]


def drill(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "drill", *args, "--json"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})}, timeout=600)


def drill_config(tmp_path: Path, text: str | None = None, **replacements: str) -> tuple[Path, Path]:
    """The session's test config with the drills' sandboxes in tmp_path/drills (and any other replacement)."""
    sandboxes = tmp_path / "drills"
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    return config_variant(folder, text, **{'sandbox_dir = ""': f'sandbox_dir = "{sandboxes}"', **replacements}), sandboxes


def result_of(run: subprocess.CompletedProcess) -> dict:
    assert run.stdout.strip(), run.stderr[-3000:]
    return json.loads(run.stdout)


def read_run(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


@pytest.mark.prefect
def test_a_drill_of_every_phase_passes_and_the_real_clone_and_remote_stay_byte_identical(sample, prefect_server,
                                                                                         tmp_path):
    config, sandboxes = drill_config(tmp_path)
    persons = {"0": {"P0.2", "P0.4"}, "3": {"P3.4"}}
    before = tree_digest(sample.repo, sample.origin)
    for phase in ("0", "1", "2A", "2B", "3", "4"):
        run = drill(phase, "--repo", str(sample.repo), "--config", str(config), "--incident", f"drill-all-{phase}",
                    *skip_builds(phase))
        result = result_of(run)
        assert run.returncode == 0 and result["passed"] and result["outcome"] == "done", (phase, result["problems"])
        rows = {row["id"] + " " + row["step"]: row for row in result["steps"]}
        assert {r["id"] for r in rows.values() if r["verdict"] == "not rehearsed"} == persons.get(phase, set())
        for row in rows.values():
            if row["verdict"] == "ok":  # each rehearsed step's duration and its time since the start
                assert row["status"] in ("done", "already-done") and row["at_seconds"] is not None, row
        assert result["untouched"]["same"] and not result["untouched"]["changed"], result["untouched"]
        assert result["sandbox"]["removed"] and not (sandboxes / f"drill-all-{phase}").exists()
        assert tree_digest(sample.repo, sample.origin) == before, f"phase {phase}'s drill changed the real clone"
        # the rehearsed rollback is tagged drill: a person's step leaves it Completed, nobody's to-do
        rehearsed = read_run(result["rollback_flow_run_id"])
        assert "drill" in rehearsed.tags and rehearsed.state.is_completed(), (rehearsed.tags, rehearsed.state)
        assert "drill" in read_run(result["flow_run_id"]).tags
    again = result_of(drill("1", "--repo", str(sample.repo), "--config", str(config), "--incident", "drill-again",
                            *SKIP_BUILDS))
    flag_row = next(r for r in again["steps"] if r["step"] == "flag")
    assert flag_row["budget_seconds"] == 300 and flag_row["verdict"] == "ok", flag_row  # step 1: at once
    # the trend over past drills of this phase and target, and the report with its chart by week
    assert [row["verdict"] for row in again["trend"]] == ["passed", "passed"], again["trend"]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        report = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["drill-report-1-drill-again"])))[0].data
    assert "**PASSED**" in report and "the same before and after" in report and "█" in report, report


@pytest.mark.prefect
@pytest.mark.cargo
def test_a_phase_1_drill_runs_ci_deploys_to_staging_and_watches_it_never_production(sample_in_production,
                                                                                    prefect_server, cargo_env,
                                                                                    production, tmp_path):
    sample = sample_in_production
    staging = {"ACTOR_SERVICE_PORT": str(free_port()), "ACTOR_DEPLOY_STATE": str(tmp_path / "staging")}
    deploy = ("{ command = \"env ACTOR_SERVICE_PORT=" + staging["ACTOR_SERVICE_PORT"] + " ACTOR_DEPLOY_STATE="
              + staging["ACTOR_DEPLOY_STATE"] + " ./scripts/deploy.sh staging --version={version}\" }")
    config, _ = drill_config(tmp_path, **{
        'deploy = {}                     #': f"deploy = {deploy}  #",
        'monitoring = {}                 #': 'monitoring = { metrics_url = "http://127.0.0.1:'
                                            f'{staging["ACTOR_SERVICE_PORT"]}/metrics", window_seconds = 2 }}  #'})
    production_log = Path(production["ACTOR_DEPLOY_STATE"]) / "deploys.log"
    deployed_before = production_log.read_text()
    before = tree_digest(sample.repo, sample.origin)
    try:
        run = drill("1", "--repo", str(sample.repo), "--config", str(config), "--incident", "drill-staging",
                    "--skip", "benchmarks")
        result = result_of(run)
    finally:
        subprocess.run(["./scripts/deploy.sh", "staging", "--stop"], cwd=sample.repo, env={**os.environ, **staging},
                       capture_output=True, timeout=60)
    status = {row["step"]: (row["status"], row["verdict"]) for row in result["steps"]}
    assert run.returncode == 0 and result["passed"], (result["problems"], status)
    assert status["ci"] == ("done", "ok") and status["deploy"] == ("done", "ok") and status["monitor"] == ("done", "ok")
    assert status["logs"][1] == "skipped" and "no [drill] logs" in result["skipped"]["logs"]
    assert "staging version=rollback-phase1" in (tmp_path / "staging" / "deploys.log").read_text()
    assert production_log.read_text() == deployed_before, "a drill never deploys to production"
    assert tree_digest(sample.repo, sample.origin) == before


@pytest.mark.prefect
def test_a_drill_whose_merge_no_longer_reverts_fails_naming_the_conflict_and_the_commit_and_tells_the_tech_lead(
        sample, prefect_server, tmp_path):
    mod = "modules/actor-core/src/scheduler/mod.rs"
    text = (sample.repo / mod).read_text().replace("pub type ActiveScheduler = ReadyQueueCoordinator;",
                                                   "pub type ActiveScheduler = ReadyQueueCoordinator; // tuned")
    later = commit_change(sample.repo, mod, text, "tune the coordinator selection", push=True)
    pager = pager_block("test-drill-pager")
    config, sandboxes = drill_config(tmp_path, paged_config_text("custom-webhook/test-drill-pager", ("tech-lead",)))
    before = tree_digest(sample.repo, sample.origin)
    run = drill("1", "--repo", str(sample.repo), "--config", str(config), "--incident", "drill-conflict", *SKIP_BUILDS)
    result = result_of(run)
    assert run.returncode == 1 and not result["passed"] and result["outcome"] == "failed"
    problem = next(p for p in result["problems"] if "no longer reverts cleanly" in p)
    assert "the Phase 1 merge" in problem and mod in problem and later[:7] in problem, problem
    assert "tune the coordinator selection" in problem
    revert = next(row for row in result["steps"] if row["step"] == "revert")
    assert revert["status"] == "failed" and revert["verdict"] == "would block"
    assert any("sent" in line for line in result["notified"]), result.get("notified")
    told = pager.wait_for(lambda body: "drill FAILED" in body["subject"])
    assert "no longer reverts cleanly" in told["text"] and "flow run: http" in told["text"]
    state = read_run(result["flow_run_id"]).state
    assert state.is_failed() and "no longer reverts cleanly" in state.message
    assert tree_digest(sample.repo, sample.origin) == before and not list(sandboxes.iterdir())


@pytest.mark.prefect
def test_a_drill_over_its_budget_fails_naming_the_step_and_the_budget(sample, prefect_server, tmp_path):
    config, _ = drill_config(tmp_path, **{"budgets = {}  ": "budgets = { flag = 0.001 }  "})
    run = drill("2B", "--repo", str(sample.repo), "--config", str(config), *SKIP_BUILDS)
    result = result_of(run)
    assert run.returncode == 1 and not result["passed"], result
    flag = next(row for row in result["steps"] if row["step"] == "flag")
    assert flag["status"] == "done" and flag["verdict"] == "over budget" and flag["budget_seconds"] == 0.001
    assert any("P2B.1 flag ended" in p and "over its budget of 0.001 s" in p for p in result["problems"]), result["problems"]


@pytest.mark.prefect
def test_a_drill_killed_with_sigkill_mid_step_leaves_no_sandbox_after_the_next_drill(sample, prefect_server,
                                                                                      tmp_path):
    config, sandboxes = drill_config(tmp_path)
    before = tree_digest(sample.repo, sample.origin)
    killed = drill("1", "--repo", str(sample.repo), "--config", str(config), "--incident", "drill-killed",
                   *SKIP_BUILDS, env={"ACTOR_ROLLBACK_FAULT_INJECT": "kill-before:push"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (sandboxes / "drill-killed" / "work").is_dir(), "the killed drill's sandbox is there until the next one"
    assert tree_digest(sample.repo, sample.origin) == before, "the flag commit went to the sandbox's remote only"
    result = result_of(drill("2B", "--repo", str(sample.repo), "--config", str(config), "--incident", "drill-next",
                             *SKIP_BUILDS))
    assert result["passed"] and result["sandbox"]["stale_removed"] == ["drill-killed"], result["sandbox"]
    assert not list(sandboxes.iterdir())
    assert tree_digest(sample.repo, sample.origin) == before


def test_a_drill_refuses_bad_input_before_any_sandbox(sample, tmp_path):
    config, sandboxes = drill_config(tmp_path)
    for args, said in ((("9", "--repo", str(sample.repo)), "unknown phase '9'"),
                       (("1", "--repo", str(tmp_path)), "is not a git repository"),
                       (("1", "--repo", str(sample.repo), "--skip", "flog"), "unknown step flog"),
                       (("1", "--repo", str(sample.repo), "--incident", "../x"), "incident")):
        run = drill(*args, "--config", str(config))
        assert run.returncode == 2 and said in json.loads(run.stdout)["error"], (args, run.stdout, run.stderr)
    assert not sandboxes.exists()


def test_serve_has_a_weekly_drill_per_configured_phase_off_until_its_cron_is_set(sample, tmp_path):
    from actor_rollback.deployments.serve import build_deployments

    off, _ = drill_config(tmp_path)
    weekly = {d.name: d for d in build_deployments(sample.repo, off) if d.name.startswith("weekly-")}
    assert list(weekly) == ["weekly-1"] and not weekly["weekly-1"].schedules, "no schedule until drill.cron is set"
    assert weekly["weekly-1"].parameters["phase"] == "1" and "drill" in weekly["weekly-1"].tags
    (tmp_path / "on").mkdir()
    on, _ = drill_config(tmp_path / "on", **{'cron = ""                       # drill': 'cron = "0 10 * * 1"  # drill',
                                             'phases = ["1"]  ': 'phases = ["1", "2B"]  '})
    weekly = {d.name: d for d in build_deployments(sample.repo, on) if d.name.startswith("weekly-")}
    assert sorted(weekly) == ["weekly-1", "weekly-2b"]
    assert [s.schedule.cron for s in weekly["weekly-2b"].schedules] == ["0 10 * * 1"]


@pytest.mark.prefect
def test_a_drill_that_cannot_read_the_remote_fails_saying_so_and_leaves_nothing(sample, prefect_server, tmp_path):
    config, sandboxes = drill_config(tmp_path)
    subprocess.run(["git", "remote", "set-url", "origin", str(tmp_path / "moved.git")], cwd=sample.repo, check=True)
    run = drill("2B", "--repo", str(sample.repo), "--config", str(config), *SKIP_BUILDS)
    result = result_of(run)
    assert run.returncode == 1 and not result["passed"], result  # not the operator's input: a drill that failed
    assert "could not make its sandbox" in result["problems"][0] and "moved.git" in result["problems"][0]
    assert not list(sandboxes.iterdir())


def test_the_drill_trend_shows_the_whole_run_and_each_steps_median_by_week():
    from actor_rollback.flows.drill import _weekly_chart, _weekly_steps, step_seconds

    rows = [{"step": "flag", "seconds": 0.4, "verdict": "ok"}, {"step": "ci", "seconds": 0.0, "verdict": "skipped"},
            {"step": "push", "seconds": 9.0, "verdict": "over budget"}]
    trend = [{"at": "2026-11-23T10:00:00+00:00", "seconds": 3.0, "steps": {"flag": 0.2, "push": 1.0}},
             {"at": "2026-11-30T10:00:00+00:00", "seconds": 5.0, "steps": step_seconds(rows)},
             {"at": "2026-12-06T10:00:00+00:00", "seconds": 7.0, "steps": {"flag": 0.6, "push": 3.0}}]
    assert step_seconds(rows) == {"flag": 0.4, "push": 9.0}, "a skipped step took no time: not in the trend"
    chart = _weekly_chart(trend).splitlines()
    assert [line.split()[0] for line in chart] == ["2026-W48", "2026-W49"]
    assert chart[0].endswith("3.0 s  (1 drill(s))") and chart[1].endswith("6.0 s  (2 drill(s))"), chart
    assert _weekly_steps(trend) == ["| week | flag | push |", "|---|---|---|", "| 2026-W48 | 0.2 s | 1.0 s |",
                                    "| 2026-W49 | 0.5 s | 6.0 s |"]
