"""The ±2 % statement is an equivalence test: only an interval inside the band is within tolerance."""

from __future__ import annotations

import pytest

from runbook.benchstats import BenchmarkInputError, Estimate, compare, compare_one, duration_ns, parse_markdown_baseline


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
