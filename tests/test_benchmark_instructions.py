"""P1.C3 / A.3 by instruction counts (#27): Callgrind's dumps read exactly, the instructions per iteration from
criterion's doubling warm-up, verdicts against ±tolerance with the runs' noise band — and a real run on the
sample's unmodified criterion benches."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from actor_rollback.runbook.config import SHIPPED_CONFIG, parse_config
from actor_rollback.runbook.errors import StepError
from actor_rollback.runbook.instructions import compare_counts, judge, parse_callgrind, per_iteration

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote

RECORDED = Path(__file__).resolve().parent / "data" / "callgrind"
CLI = str(Path(sys.executable).parent / "actor-rollback")


def test_p1_c3_the_callgrind_parser_reads_recorded_dumps_and_the_warm_up_gives_exact_instructions_per_iteration():
    # real dumps of the sample's mailbox bench under `--profile-time 1`, one per Bencher::iter return (2, 4, … 32 iters)
    parts = [parse_callgrind(path.read_text()) for path in sorted(RECORDED.glob("mailbox_throughput.callgrind.*"))]
    assert [(p.number, p.instructions) for p in parts] == [
        (2, 280008), (3, 559693), (4, 1119073), (5, 2237833), (6, 4475353)]
    assert all(p.trigger == "--dump-after=criterion::bencher::Bencher<M>::iter" for p in parts)
    per_iter, spread, iterations = per_iteration(parts)
    # (part 6 − part 5) / 16 iterations: criterion's timer reads and the setup outside iter cancel out
    assert per_iter == 139845.0 and spread == 0.0 and iterations == 32


def test_the_estimate_refuses_too_few_warm_up_calls_and_a_sequence_that_does_not_double():
    parts = [parse_callgrind(path.read_text()) for path in sorted(RECORDED.glob("mailbox_throughput.callgrind.*"))]
    with pytest.raises(StepError, match="too few warm-up calls"):
        per_iteration(parts[:1])
    with pytest.raises(StepError, match="too few warm-up calls"):
        per_iteration([parts[0], parts[2]])  # part 3 missing: not one call after the other
    with pytest.raises(Exception, match="Ir total"):
        parse_callgrind("# callgrind format\nevents: Dr\ntotals: 5\n")


@pytest.mark.parametrize("base,current,verdict", [
    ([117793.0, 117793.0, 117793.0], [117793.0, 117793.0, 117793.0], "within-tolerance"),
    ([117793.0] * 3, [120133.0] * 3, "within-tolerance"),  # +1.99 %: inside ±2 %, exactly
    ([117793.0] * 3, [120740.0] * 3, "regression"),  # +2.50 %
    ([117793.0] * 3, [114848.0] * 3, "improvement"),  # −2.50 %
    ([100000.0, 100050.0, 99950.0], [101980.0] * 3, "unverifiable"),  # +1.98 % ± 0.05 %: across the edge
])
def test_p1_c3_instruction_verdicts_against_tolerance_with_the_runs_noise_band(base, current, verdict):
    result = judge("mailbox/throughput_1000", base, current, [], 2.0, 5.0, 10.0)
    assert result.verdict == verdict, result
    if verdict == "unverifiable":
        assert "edge" in result.describe() and "instruction_repeats" in result.describe()


def test_a3_compare_benchmarks_reads_the_steps_instruction_exports(tmp_path):
    def export(name: str, counts: dict) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"measure": "instructions", "benchmarks": counts}))
        return path

    base = export("inc-baseline.json", {"mailbox/throughput_1000": [117793, 117793], "scheduler/x": [6415, 6415]})
    cur = export("inc-current.json", {"mailbox/throughput_1000": [120740, 120740], "scheduler/x": [6415, 6415]})
    run = subprocess.run([CLI, "compare-benchmarks", "--baseline", str(base), "--current", str(cur), "--json"],
                         capture_output=True, text=True, timeout=60)
    verdicts = {b["id"]: b["verdict"] for b in json.loads(run.stdout)["benchmarks"]}
    assert run.returncode == 1 and verdicts == {"mailbox/throughput_1000": "regression", "scheduler/x": "within-tolerance"}
    mixed = subprocess.run([CLI, "compare-benchmarks", "--baseline", str(base), "--current", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert mixed.returncode == 2 and "compare counts with counts" in mixed.stderr
    assert [r.verdict for r in compare_counts({"a": [1.0]}, {"b": [1.0]}, 2.0, 5.0, 10.0)] == ["missing", "missing"]


# ---------------------------------------------------------------- a real run on the sample


def instruction_config(baseline: str, **extra: str):
    text = SHIPPED_CONFIG.read_text().replace('baseline_ref = ""  ', f'baseline_ref = "{baseline}"  ').replace(
        'mode = "wall" ', 'mode = "instructions" ')
    for old, new in extra.items():
        assert old in text, old
        text = text.replace(old, new)
    return parse_config(tomllib.loads(text))


@pytest.mark.cargo
def test_p1_c3_by_instruction_counts_on_the_sample_identical_passes_and_more_work_fails(tmp_path, cargo_env,
                                                                                         monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from benchmark_verdicts import commit_work, git

    from actor_rollback.deployments.sample import create_sample_workspace
    from actor_rollback.tasks.benchmarks import verify_benchmarks
    from actor_rollback.tasks.context import StepContext

    assert shutil.which("valgrind"), "valgrind is installed by `make test` (Debian package valgrind)"
    for name, value in cargo_env.items():
        monkeypatch.setenv(name, value)
    repo = create_sample_workspace(tmp_path / "sample").repo
    git(repo, "checkout", "-q", "--detach", "HEAD~3")  # new-scheduler off, as after a rollback
    same = commit_work(repo, 200, 1000, "the baseline's work")
    more = commit_work(repo, 205, 1025, "2.5 % more work per iteration")
    cfg = instruction_config(same)

    def step():
        return verify_benchmarks(StepContext(repo=repo, cfg=cfg, phase="1", incident="ins", reason="test",
                                             step_id="P1.C3"))

    git(repo, "checkout", "-q", "--detach", same)
    identical = step()
    assert identical.status == "done" and identical.data["measure"] == "instructions", identical.evidence
    assert identical.evidence[0].startswith("decided by instruction counts (Callgrind)")
    assert any("mailbox/throughput_1000: within-tolerance +0.00 %" in line for line in identical.evidence)
    git(repo, "checkout", "-q", "--detach", more)
    slower = step()
    assert slower.status == "failed" and slower.data["benchmarks"] == "fail", slower.evidence
    lines = " ".join(slower.evidence)
    assert "mailbox/throughput_1000: regression +2.4" in lines or "mailbox/throughput_1000: regression +2.5" in lines
    assert "scheduler/schedule_to_run: regression +2.4" in lines or "scheduler/schedule_to_run: regression +2.5" in lines
    exported = Path(slower.evidence[0].split("counts in ")[1])
    assert json.loads((exported / "ins-current.json").read_text())["measure"] == "instructions"
