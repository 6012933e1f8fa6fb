"""P1.C3 / A.3 in the flow: real `cargo bench` with Debian's criterion, a baseline benched in the
same run (interleaved, round after round while undecided), and an honest verdict."""

from __future__ import annotations

import json
import tomllib

import pytest
from helpers import context, replaced, run_git

from runbook.config import parse_config
from tasks.benchmarks import command_for, verify_benchmarks

pytestmark = pytest.mark.cargo


def bench_cfg(test_config, **replacements):
    return parse_config(tomllib.loads(replaced(test_config.read_text(), **replacements)))


def test_p1_c3_flag_on_against_a_flag_off_baseline_is_never_passed(sample, cargo_env, test_config):
    # HEAD~3 is the Phase 4 merge, before "Phase 4: enable new-scheduler by default": the flag is off there.
    cfg = bench_cfg(test_config, **{'baseline_ref = ""  ': 'baseline_ref = "HEAD~3"  ',
                                    "budget_minutes = 0.1 ": "budget_minutes = 0.5 ",
                                    'ACTOR_BENCH_QUICK = "200"': 'ACTOR_BENCH_QUICK = "300"'})
    result = verify_benchmarks(context(sample.repo, step_id="P1.C3", cfg=cfg))
    assert result.data["benchmarks"] in ("fail", "unverified") and result.status != "done", result.evidence
    scheduler = next(line for line in result.evidence if line.startswith("scheduler/schedule_to_run"))
    change = float(scheduler.split()[2])  # "scheduler/schedule_to_run: <verdict> +45.12 % [...]"
    assert change > 15, scheduler  # the new scheduler's cost is seen, whatever the noise allows to conclude
    if ": regression" in scheduler:
        assert "(high)" in scheduler
    else:  # this noisy machine may not allow a verdict: it must then say so, with the runs it would take
        assert ": unverifiable" in scheduler and "repeated runs" in scheduler
    assert "benched in the same run" in result.evidence[0] and "sign test" in result.evidence[0]
    assert int(result.evidence[0].split()[0]) >= 8  # the first look comes after 8 rounds
    assert run_git(sample.repo, "status", "--porcelain") == "" and run_git(sample.repo, "worktree", "list").count("\n") == 0


def test_p1_c3_a_missing_baseline_ref_is_bad_input(sample, test_config):
    from runbook.errors import BadInputError

    cfg = bench_cfg(test_config, **{'baseline_ref = ""  ': 'baseline_ref = "no-such-ref"  '})
    with pytest.raises(BadInputError, match="'no-such-ref' is not a commit"):
        verify_benchmarks(context(sample.repo, step_id="P1.C3", cfg=cfg))


def test_cargo_bench_commands_get_noplot_and_later_a_filter_to_the_undecided_benchmarks():
    command = "cargo bench --bench mailbox_throughput --features std"
    assert command_for(command, ["--noplot"]) == command + " -- --noplot"
    assert command_for(command, ["--noplot"], {"mailbox/throughput_1000", "mailbox/a.b"}) == (
        command + " -- --noplot '^(?:mailbox/a\\.b|mailbox/throughput_1000)$'")
    assert command_for(command + " -- --sample-size 20", ["--noplot"]) == command + " -- --sample-size 20 --noplot"
    # a bare `cargo bench` runs the library's libtest harness too, which refuses criterion's options: as written
    assert command_for("cargo bench --features std", ["--noplot"], {"a"}) == "cargo bench --features std"
    assert command_for("./scripts/bench.sh", ["--noplot"]) == "./scripts/bench.sh"
    # an id criterion's regex could misread is not filtered: the whole command runs again
    assert command_for(command, [], {"group/with space"}) == command


def test_p1_c3_a_budget_too_short_for_unchanged_code_is_unverifiable_and_its_verdicts_are_run_artifacts(
        sample, cargo_env, test_config, prefect_server):
    from prefect import flow
    from test_flows import read_run_and_artifacts

    run_git(sample.repo, "checkout", "-q", "--detach", "HEAD~3")  # flag off, compared with itself
    cfg = bench_cfg(test_config, **{'baseline_ref = ""  ': 'baseline_ref = "HEAD"  ',
                                    "budget_minutes = 0.1 ": "budget_minutes = 0.05 ",
                                    'ACTOR_BENCH_QUICK = "200"': 'ACTOR_BENCH_QUICK = "50"'})

    @flow(name="bench-step-test")
    def bench_step():
        from prefect.runtime import flow_run

        return verify_benchmarks(context(sample.repo, step_id="P1.C3", cfg=cfg, incident="inc-short")), flow_run.get_id()

    from tasks.progress import listening

    heard = []
    with listening(heard.append):
        result, run_id = bench_step()
    lines = [line for line in result.evidence[1:]]
    # the progress moved round by round against the budget (3 s), and ended with the verdicts' count
    assert {(u.step, u.total) for u in heard} == {("P1.C3 benchmarks", 3.0)}
    assert heard[0].done == 0 and heard[1].text.startswith("round 1 (") and "0 of 2 benchmarks settled" in heard[1].text
    assert heard[-1].finished and heard[-1].text.endswith("unverifiable") and heard[-1].percent == 100
    assert "budget_minutes (0.05) spent" in result.evidence[0]
    assert not any(": regression" in line for line in lines), lines  # identical code: no false alarm
    assert any(": unverifiable" in line and "repeated runs" in line for line in lines), lines
    assert result.status == "needs-human" and result.data["benchmarks"] == "unverified"
    _, artifacts = read_run_and_artifacts(str(run_id))
    table = artifacts["benchmarks-phase-1-inc-short"]
    assert table.type == "table"
    rows = {row["benchmark"]: row for row in json.loads(table.data)}
    assert set(rows) == {line.split(":")[0] for line in lines}
    assert all(row["verdict"] == "unverifiable" and "runs needed" in row["note"] for row in rows.values())
    progress = artifacts["progress-benchmarks-1-inc-short"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    report = artifacts["benchmarks-phase-1-inc-short-report"].data
    assert report.startswith("# Benchmarks against the baseline (±2 %)") and "unverifiable" in report
