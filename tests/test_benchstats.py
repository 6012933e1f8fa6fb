"""The ±2 % statement is an equivalence test: only an interval inside the band is within tolerance."""

from __future__ import annotations

import random

import pytest

from actor_rollback.runbook.benchstats import BenchmarkInputError, Estimate, compare, compare_one, duration_ns, parse_markdown_baseline

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote


@pytest.mark.parametrize("text,ns", [("58.337 ns", 58.337), ("1.2 µs", 1200.0), ("1.2 us", 1200.0),
                                     ("3 ms", 3e6), ("0.5 s", 5e8), ("750 ps", 0.75)])
def test_durations_in_every_unit(text, ns):
    assert duration_ns(text) == pytest.approx(ns)


def test_a_bad_duration_says_what_is_expected():
    with pytest.raises(ValueError, match="'fast' is not a duration like '58.337 ns'"):
        duration_ns("fast")


def test_markdown_baseline_table_is_read():
    text = "# Baseline\n\n| Benchmark | Mean | Std Dev |\n|---|---|---|\n| mailbox/throughput_1000 | 3.1 µs | 0.06 µs |\n"
    estimates = parse_markdown_baseline(text, "baseline.md")
    assert estimates["mailbox/throughput_1000"].mean == pytest.approx(3100)
    assert estimates["mailbox/throughput_1000"].standard_error == pytest.approx(6.0)


def test_a_broken_cell_names_file_line_and_cell():
    text = "| Benchmark | Mean | Std Dev |\n|---|---|---|\n| a | 1 ns | 0.1 ns |\n| b | 12 parsecs | 1 ns |\n"
    with pytest.raises(BenchmarkInputError, match=r"baseline.md:4: cannot read '12 parsecs'"):
        parse_markdown_baseline(text, "baseline.md")


def test_a_zero_mean_is_refused_not_divided_by():
    text = "| Benchmark | Mean | Std Dev |\n|---|---|---|\n| a | 0 ns | 0.1 ns |\n"
    with pytest.raises(BenchmarkInputError, match=r"baseline.md:3: a mean of '0 ns' cannot be a benchmark's time"):
        parse_markdown_baseline(text, "baseline.md")


def test_no_table_is_an_error():
    with pytest.raises(BenchmarkInputError, match="no '| Benchmark | Mean | Std Dev |' table"):
        parse_markdown_baseline("nothing here\n", "x.md")


def test_within_tolerance_needs_the_whole_interval_inside_the_band():
    tight = compare_one("a", Estimate(100, 0.2), Estimate(100.5, 0.2), 2, 5, 10)
    assert tight.verdict == "within-tolerance" and -2 < tight.low_pct < tight.high_pct < 2
    wide = compare_one("a", Estimate(100, 1.5), Estimate(100.5, 1.5), 2, 5, 10)
    assert wide.verdict == "unverifiable"
    assert wide.detectable_pct > 2 and wide.runs_needed > 1
    assert "repeated runs" in wide.describe()


@pytest.mark.parametrize("current,severity", [(104, "below-threshold"), (105, "medium"), (107.5, "medium"),
                                              (110, "medium"), (110.5, "high"), (130, "high")])
def test_regressions_are_graded_by_the_severity_thresholds(current, severity):
    result = compare_one("a", Estimate(100, 0.1), Estimate(current, 0.1), 2, 5, 10)
    assert result.verdict == "regression" and result.severity == severity


def test_improvement_and_missing():
    results = {r.id: r for r in compare({"a": Estimate(100, 0.1), "gone": Estimate(5, 0.1)},
                                        {"a": Estimate(80, 0.1), "new": Estimate(5, 0.1)})}
    assert results["a"].verdict == "improvement"
    assert (results["gone"].verdict, results["gone"].side) == ("missing", "current")
    assert (results["new"].verdict, results["new"].side) == ("missing", "baseline")


# ---------------------------------------------------------------- the sequential verdict (P1.C3 rounds)

from actor_rollback.runbook.benchstats import (ALPHA, FIRST_LOOK, PairedChanges, judge_paired, look_alpha,  # noqa: E402
                                look_rounds, median_interval)


def test_the_looks_spend_at_most_alpha_however_many_are_taken():
    assert sum(look_alpha(j) for j in range(1, 100_000)) < ALPHA
    assert sum(look_alpha(j) for j in range(1, 100_000)) > 0.9999 * ALPHA
    schedule = [look_rounds(FIRST_LOOK, j) for j in range(1, 12)]
    assert schedule[0] == FIRST_LOOK and all(b > a for a, b in zip(schedule, schedule[1:]))
    assert schedule == sorted(set(schedule))  # fixed in advance: a function of the look's number only


def test_the_median_interval_is_the_sign_tests_order_statistics():
    changes = [float(x) for x in range(1, 21)]  # n = 20: P(Bin(20, ½) <= 5) = 0.0207, <= 6: 0.0577
    assert median_interval(changes, 0.05) == (6.0, 15.0)  # k = 6: two tails of 0.0414 <= 0.05
    assert median_interval(changes, 0.04) == (5.0, 16.0)
    assert median_interval([1.0] * 6, look_alpha(1)) is None  # 2·2⁻⁶ > α/2: six rounds cannot decide anything
    assert median_interval([1.0] * 7, look_alpha(1)) == (1.0, 1.0)


def test_the_sign_interval_covers_the_median_at_its_rate_on_heavy_tailed_changes():
    """Coverage is distribution-free: on a contaminated distribution (bursts of ±40 %) the interval still misses
    the true median at most alpha of the time."""
    rng = random.Random(7)
    misses = 0
    for _ in range(2000):
        changes = [rng.gauss(0.5, 1) if rng.random() > 0.15 else rng.choice((-40.0, 40.0)) for _ in range(25)]
        low, high = median_interval(changes, 0.05)
        misses += not (low <= 0.5 <= high)
    assert misses / 2000 <= 0.05


def test_a_sequential_run_on_identical_code_rarely_calls_anything_and_never_a_regression_at_alpha():
    """Repeated looks at noise: the chance that any look calls a regression or an improvement stays under alpha
    (simulated rounds with the bursts this machine shows)."""
    rng = random.Random(11)
    wrong = 0
    for _ in range(400):
        changes: list[float] = []
        for look in range(1, 12):
            while len(changes) < look_rounds(FIRST_LOOK, look):
                changes.append(rng.gauss(0, 3) if rng.random() > 0.1 else rng.uniform(-80, 40))
            verdict = judge_paired(PairedChanges("a", tuple(changes)), look, 0.5, 5, 10)  # tight band: rarely equal
            if verdict is not None:
                wrong += verdict.verdict in ("regression", "improvement")
                break
    assert wrong / 400 <= ALPHA


def test_a_paired_verdict_settles_within_tolerance_and_regressions_with_their_severity():
    calm = PairedChanges("same", tuple([0.1, -0.2, 0.3, 0.0, -0.1, 0.2, -0.3, 0.1, 0.0, -0.1]))
    assert judge_paired(calm, 2, 2.0, 5, 10).verdict == "within-tolerance"
    slower = PairedChanges("slower", tuple([6.0, 5.5, 6.2, 5.8, 6.1, 5.9, 6.3, 5.7, 6.0, 5.6]))
    verdict = judge_paired(slower, 2, 2.0, 5, 10)
    assert verdict.verdict == "regression" and verdict.severity == "medium" and verdict.rounds == 10
    assert "after 10 rounds" in verdict.describe()


def test_undecided_is_none_until_the_end_then_unverifiable_with_the_rounds_it_would_take():
    straddling = PairedChanges("edge", tuple([1.5, 2.5, 1.8, 2.2, 2.0, 1.7, 2.4, 1.9]))
    assert judge_paired(straddling, 1, 2.0, 5, 10) is None
    final = judge_paired(straddling, 1, 2.0, 5, 10, final=True)
    assert final.verdict == "unverifiable" and "repeated runs would settle" in final.describe()
    short = judge_paired(PairedChanges("short", (0.1, 0.2)), 1, 2.0, 5, 10, final=True)
    assert short.verdict == "unverifiable" and short.runs_needed == FIRST_LOOK


def test_a_baseline_files_own_uncertainty_widens_the_interval():
    changes = tuple([0.1, -0.2, 0.3, 0.0, -0.1, 0.2, -0.3, 0.1, 0.0, -0.1])
    assert judge_paired(PairedChanges("a", changes), 2, 2.0, 5, 10).verdict == "within-tolerance"
    uncertain = judge_paired(PairedChanges("a", changes, baseline_error_pct=1.0), 2, 2.0, 5, 10, final=True)
    assert uncertain.verdict == "unverifiable" and uncertain.high_pct > 2.0
