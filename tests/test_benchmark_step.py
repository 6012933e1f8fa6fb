"""P1.C3 / A.3 in the flow: real `cargo bench` with Debian's criterion, a baseline benched in the
same run (interleaved, round after round while undecided), and an honest verdict."""

from __future__ import annotations

import json
import tomllib

import pytest
from helpers import context, replaced, run_git

from actor_rollback.runbook.config import parse_config
from actor_rollback.tasks.benchmarks import command_for, verify_benchmarks

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
    from actor_rollback.runbook.errors import BadInputError

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

    from actor_rollback.tasks.progress import listening

    heard = []
    with listening(heard.append):
        result, run_id = bench_step()
    lines = [line for line in result.evidence[1:]]
    # the progress moved round by round against the budget (3 s), and ended with the verdicts' count
    assert {(u.step, u.total) for u in heard} == {("P1.C3 benchmarks", 3.0)}
    assert heard[0].done == 0 and heard[1].text.startswith("building the benches of the baseline")  # says what it does
    first_round = next(u for u in heard if u.text.startswith("round "))
    assert first_round.text.startswith("round 1 (") and "0 of 2 benchmarks settled" in first_round.text
    assert heard[-1].finished and heard[-1].text.endswith("unverifiable") and heard[-1].percent == 100
    assert "budget_minutes (0.05) spent" in result.evidence[0]
    assert not any(": regression" in line for line in lines), lines  # identical code: no false alarm
    assert any(": unverifiable" in line and "repeated runs" in line for line in lines), lines
    assert result.status == "needs-human" and result.data["benchmarks"] == "unverified"
    _, artifacts = read_run_and_artifacts(str(run_id))
    table = artifacts["benchmarks-phase-1-inc-short"]
    assert table.type == "table"
    assert versions_of("benchmarks-phase-1-inc-short", run_id) == 1  # one card, updated round by round
    rows = {row["benchmark"]: row for row in json.loads(table.data)}
    assert set(rows) == {line.split(":")[0] for line in lines}
    assert all(row["verdict"] == "unverifiable" and "runs needed" in row["note"] for row in rows.values())
    progress = artifacts["progress-benchmarks-1-inc-short"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    report = artifacts["benchmarks-phase-1-inc-short-report"].data
    assert report.startswith("# Benchmarks against the baseline (±2 %)") and "unverifiable" in report


def versions_of(key: str, run_id) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        return len(client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))))


# A bench command of the user's own (not `cargo bench`): it writes criterion's files, with numbers it decides —
# so the sequential rounds can be watched deterministically. Real commands, real files, real git trees.
SCRIPTED_BENCH = '''\
import json, os, random, sys
name, spread = sys.argv[1], float(sys.argv[2])
baseline = os.path.basename(os.getcwd()).startswith("baseline-")  # the baseline ref's exported tree
value = 100.0 * (1 + random.uniform(-spread, spread) / 100)
if name.endswith("slower") and not baseline:
    value *= 1.10
root = os.path.join(os.environ.get("CARGO_TARGET_DIR") or "target", "criterion", name, "new")
os.makedirs(root, exist_ok=True)
with open(os.path.join(root, "estimates.json"), "w") as f:
    json.dump({stat: {"point_estimate": value, "standard_error": 0.1} for stat in ("mean", "median")}, f)
with open(os.environ["SCRIPTED_BENCH_LOG"], "a") as f:
    f.write(("baseline " if baseline else "current ") + name + "\\n")
'''


def scripted_rounds(sample, test_config, tmp_path, monkeypatch, *benches: str, budget: str):
    from helpers import commit_change

    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)  # each tree's own target/ (no 150 MB release to copy)
    commit_change(sample.repo, "scripts/scripted_bench.py", SCRIPTED_BENCH, "bench: a scripted bench")
    log = tmp_path / "calls.log"
    commands = ", ".join(f'"python3 scripts/scripted_bench.py {bench}"' for bench in benches)
    cfg = bench_cfg(test_config, **{
        'baseline_ref = ""  ': 'baseline_ref = "HEAD"  ', "budget_minutes = 0.1 ": f"budget_minutes = {budget} ",
        '  "cargo bench --bench mailbox_throughput --features std",\n  "cargo bench --bench scheduler_latency --features std",\n':
            f"  {commands},\n",
        'ACTOR_BENCH_QUICK = "200"': f'SCRIPTED_BENCH_LOG = "{log}"'})
    result = verify_benchmarks(context(sample.repo, step_id="P1.C3", cfg=cfg))
    calls = log.read_text().splitlines()
    return result, {line: calls.count(line) for line in calls}


def test_p1_c3_rounds_go_on_only_for_the_undecided_benchmark(sample, test_config, tmp_path, monkeypatch):
    result, calls = scripted_rounds(sample, test_config, tmp_path, monkeypatch, "g/steady 0", "g/noisy 40",
                                    budget="0.2")  # 12 s: more than 8 rounds even on a loaded machine
    lines = {line.split(":")[0]: line for line in result.evidence[1:]}
    # identical numbers on both sides: decided at the first look, after 8 rounds — and never benched again
    assert lines["g/steady"] == "g/steady: within-tolerance +0.00 % [+0.00, +0.00] after 8 rounds"
    assert calls["baseline g/steady"] == calls["current g/steady"] == 8
    # ±40 % noise: still undecided when the budget ran out, measured in every round until then
    assert lines["g/noisy"].startswith("g/noisy: unverifiable") and "repeated runs would settle" in lines["g/noisy"]
    rounds = int(result.evidence[0].split()[0])
    assert rounds > 8 and calls["baseline g/noisy"] == calls["current g/noisy"] == rounds
    assert "budget_minutes (0.2) spent: 1 benchmark(s) undecided" in result.evidence[0]
    assert result.status == "needs-human" and result.data["benchmarks"] == "unverified"


def test_p1_c3_a_regression_ends_the_rounds_at_once(sample, test_config, tmp_path, monkeypatch):
    result, calls = scripted_rounds(sample, test_config, tmp_path, monkeypatch, "g/slower 0", "g/noisy 40",
                                    budget="5")
    assert "a regression decides the step" in result.evidence[0] and result.evidence[0].startswith("8 round(s)")
    assert "g/slower: regression +9.53 % [+9.53, +9.53] (medium) after 8 rounds" in result.evidence
    assert calls["current g/noisy"] == 8  # not measured further: the step has failed whatever it would show
    assert result.status == "failed" and result.data["benchmarks"] == "fail"
