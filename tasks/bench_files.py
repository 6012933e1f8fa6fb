"""Benchmark files: criterion's results and the baselines they are compared with (A.3).

Criterion writes `<benchmark path>/<run>/estimates.json` per benchmark (run: `new`, `base`, or a
saved baseline's name); the mean and its standard error are all a comparison needs, and the
benchmark's id is its folder's path — `benchmark.json` (the id criterion was given) is read only
for a folder whose path matches nothing in the baseline (criterion makes some names file-safe).
Baselines: the runbook's markdown table, a criterion saved baseline (`--save-baseline NAME`), a
criterion folder, or an export of this tool (JSON or CSV). No Prefect, no git: `compare-benchmarks`
imports this alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from actor_rollback.runbook.benchstats import BenchmarkInputError, Comparison, Estimate, checked_estimate, parse_markdown_baseline

SKIPPED = {"report"}  # criterion's HTML reports: thousands of files, nothing to compare
_DECODER = json.JSONDecoder()


def criterion_files(root: Path, run: str = "new") -> list[tuple[str, str, bytes]]:
    """(id from the folder's path, the folder, its `<run>/estimates.json`) for every benchmark under root.

    A folder holding `<run>/estimates.json` is a benchmark and is not descended into (its base/,
    change/ and report/ hold nothing to compare); any other folder is a group and is. Trying the
    open is the test — one system call per benchmark, which reading it needs anyway."""
    found: list[tuple[str, str, bytes]] = []
    prefix = len(str(root).rstrip(os.sep)) + 1

    def scan(folder: str) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if entry.name in SKIPPED or not entry.is_dir():
                continue
            try:
                with open(os.path.join(entry.path, run, "estimates.json"), "rb") as f:
                    data = f.read()
            except (FileNotFoundError, NotADirectoryError):
                scan(entry.path)
                continue
            found.append((entry.path[prefix:].replace(os.sep, "/"), entry.path, data))

    scan(str(root))
    return found


def _estimate(path: str, data: bytes, statistic: str = "mean") -> Estimate:
    """The statistic ("mean" or "median") and its standard error: only its `"<statistic>": {…}` object is decoded,
    not the other four."""
    try:
        text = data.decode()
        at = text.find(f'"{statistic}":')
        if at >= 0:
            value, _ = _DECODER.raw_decode(text, text.index("{", at))
        else:
            value = json.loads(text)[statistic]
        point, error = float(value["point_estimate"]), float(value["standard_error"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BenchmarkInputError(f"{path}: not criterion's estimates format ({exc})") from None
    return checked_estimate(f"{path}: {statistic}", point, error)


def _given_id(run_folder: str, fallback: str) -> str:
    """The id criterion was given (benchmark.json's full_id), for a folder whose path criterion made file-safe."""
    try:
        with open(os.path.join(run_folder, "benchmark.json"), "rb") as f:
            return str(json.loads(f.read())["full_id"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return fallback


def read_criterion(root: Path, run: str = "new", known: set[str] | frozenset[str] = frozenset(),
                   statistic: str = "mean") -> dict[str, Estimate]:
    """Every benchmark under a criterion folder for one run ("new", or a saved baseline's name); ids not in
    `known` (the baseline's, when given) are looked up in benchmark.json. `statistic`: "mean" or "median"."""
    return {id: estimate for id, estimate, _ in _criterion_runs(root, run, known, statistic)}


def read_criterion_stamped(root: Path, run: str = "new", known: set[str] | frozenset[str] = frozenset(),
                           statistic: str = "mean") -> dict[str, tuple[Estimate, int]]:
    """As read_criterion, each estimate with its file's modification time (ns): which benchmarks a command
    just measured, even when it measured the very same number."""
    return {id: (estimate, stamp(path)) for id, estimate, path in _criterion_runs(root, run, known, statistic)}


def stamp(path: str) -> int:
    return os.stat(path).st_mtime_ns


def _criterion_runs(root: Path, run: str, known, statistic: str) -> list[tuple[str, Estimate, str]]:
    if not root.is_dir():
        raise BenchmarkInputError(f"{root}: no such criterion folder; run `cargo bench` first or check --current")
    found = []
    for id, folder, data in sorted(criterion_files(root, run)):
        if known and id not in known:
            id = _given_id(os.path.join(folder, run), id)
        path = os.path.join(folder, run, "estimates.json")
        found.append((id, _estimate(path, data, statistic), path))
    if not found:
        raise BenchmarkInputError(f"{root}: no {run}/estimates.json below it; is it criterion's output folder?")
    return found


CSV_COLUMNS = ["benchmark", "mean_ns", "standard_error_ns"]


def read_export(path: Path) -> dict[str, Estimate]:
    """This tool's export: JSON {"benchmarks": {id: {"mean_ns", "standard_error_ns"}}} or CSV
    with the columns benchmark,mean_ns,standard_error_ns."""
    if path.suffix == ".csv":
        return _read_csv(path)
    try:
        data = json.loads(path.read_text())
        read = {id: (float(v["mean_ns"]), float(v["standard_error_ns"])) for id, v in data["benchmarks"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchmarkInputError(f"{path}: not an actor-rollback benchmark export ({exc})") from None
    return {id: checked_estimate(f"{path}: benchmark {id!r}", *numbers) for id, numbers in read.items()}


def _read_csv(path: Path) -> dict[str, Estimate]:
    rows = csv.reader(io.StringIO(path.read_text()))
    header = next(rows, None)
    if header is None or [c.strip() for c in header] != CSV_COLUMNS:
        raise BenchmarkInputError(f"{path}:1: expected the header {','.join(CSV_COLUMNS)}, found {header!r}")
    found = {}
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise BenchmarkInputError(f"{path}:{number}: expected 3 cells, found {len(row)}: {row!r}")
        try:
            mean, error = float(row[1]), float(row[2])
            if not (0 < mean < math.inf and 0 <= error < math.inf):
                raise ValueError
        except ValueError:
            raise BenchmarkInputError(f"{path}:{number}: mean_ns {row[1]!r} must be a positive and "
                                      f"standard_error_ns {row[2]!r} a non-negative number of nanoseconds") from None
        if row[0].strip() in found:
            raise BenchmarkInputError(f"{path}:{number}: benchmark {row[0].strip()!r} appears twice")
        found[row[0].strip()] = Estimate(mean, error)
    if not found:
        raise BenchmarkInputError(f"{path}: the CSV export has a header but no benchmarks")
    return found


def write_export(estimates: dict[str, Estimate], path: Path) -> None:
    """A baseline for later comparisons: .csv for spreadsheets, anything else as JSON."""
    if path.suffix == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows([id, repr(e.mean), repr(e.standard_error)] for id, e in sorted(estimates.items()))
        path.write_text(out.getvalue())
        return
    path.write_text(json.dumps({"benchmarks": {id: {"mean_ns": e.mean, "standard_error_ns": e.standard_error}
                                               for id, e in sorted(estimates.items())}}, indent=2) + "\n")


def read_baseline(spec: str, criterion_root: Path | None = None) -> dict[str, Estimate]:
    """A markdown table (.md), an export (.json), a criterion folder, or a saved baseline's NAME."""
    path = Path(spec)
    if path.suffix == ".md":
        if not path.exists():
            raise BenchmarkInputError(f"{path}: no such baseline file")
        return parse_markdown_baseline(path.read_text(), str(path))
    if path.suffix in (".json", ".csv"):
        if not path.exists():
            raise BenchmarkInputError(f"{path}: no such baseline file")
        return read_export(path)
    if path.is_dir():
        return read_criterion(path)
    if criterion_root is not None and "/" not in spec:
        return read_criterion(criterion_root, run=spec)
    raise BenchmarkInputError(f"{spec}: not a .md table, a .json or .csv export, a criterion folder or a saved "
                              "baseline name")


def note(r: Comparison) -> str:
    """What a verdict needs said beside it: the severity, what is missing, or the runs needed."""
    if r.verdict == "missing":
        return f"only in the {'baseline' if r.side == 'current' else 'current run'}"
    if r.verdict == "undecided":
        return f"still measuring: the range of {r.rounds} round(s) so far"
    if r.verdict == "unverifiable":
        detects = "" if r.detectable_pct is None else f"detects ±{r.detectable_pct:.1f} %; "
        return f"{detects}~{r.runs_needed or '?'} runs needed"
    return r.severity


VERDICTS = ("within-tolerance", "regression", "improvement", "unverifiable", "missing", "undecided")
TABLE_HEAD = ["| benchmark | verdict | change | interval | note |", "|---|---|---|---|---|"]


def counts(results: list[Comparison]) -> str:
    """`9000 within-tolerance, 600 regression, …` — the verdicts that occur, in a fixed order."""
    tally = {v: 0 for v in VERDICTS}
    for r in results:
        tally[r.verdict] += 1
    return ", ".join(f"{n} {v}" for v, n in tally.items() if n)


def row(r: Comparison) -> str:
    if r.verdict == "missing":
        return f"| {r.id} | missing | | | {note(r)} |"
    return f"| {r.id} | {r.verdict} | {r.change_pct:+.2f} % | [{r.low_pct:+.2f}, {r.high_pct:+.2f}] % | {note(r)} |"


def markdown_report(results: list[Comparison], tolerance_pct: float, baseline: str, current: str,
                    method: str = "") -> str:
    """The report: counts, how the intervals were made (`method`; by default one run's 95 % interval), the rows."""
    method = method or "The interval is the 95 % interval of the change of the mean."
    lines = [f"# Benchmarks against the baseline (±{tolerance_pct:g} %)", "",
             f"**{counts(results)}** — baseline `{baseline}`, current `{current}`.", "",
             "A benchmark is within tolerance only when the interval of its change lies inside "
             f"±{tolerance_pct:g} %; an interval across a boundary is unverifiable. {method}", "", *TABLE_HEAD]
    lines += [row(r) for r in results]
    return "\n".join(lines) + "\n"


def summary(results: list[Comparison], tolerance_pct: float, baseline: str, current: str, show_all: bool,
            exit_code: int) -> str:
    """What the command prints: the counts, then the rows that are not within tolerance (all with --all)."""
    shown = results if show_all else [r for r in results if r.verdict != "within-tolerance"]
    lines = [f"{len(results)} benchmarks, current {current} against {baseline} (±{tolerance_pct:g} %): "
             f"{counts(results)} — exit {exit_code}"]
    if shown:
        lines += ["", *TABLE_HEAD, *(row(r) for r in shown)]
    if len(shown) < len(results):
        lines += ["", f"{len(results) - len(shown)} within tolerance not shown (--all shows every row; "
                      "--report FILE writes them all)"]
    return "\n".join(lines) + "\n"


def chart(results: list[Comparison], tolerance_pct: float, medium_pct: float, high_pct: float, path: Path) -> None:
    """Each change with its interval, over the ±tolerance, medium and high bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in results if r.verdict != "missing"]
    fig, ax = plt.subplots(figsize=(8, 1 + 0.5 * max(len(shown), 1)))
    for edge, color in ((high_pct, "#f4cccc"), (medium_pct, "#fce5cd"), (tolerance_pct, "#d9ead3")):
        ax.axvspan(-edge, edge, color=color, zorder=0)
    colors = {"within-tolerance": "green", "regression": "red", "improvement": "blue", "unverifiable": "orange"}
    for y, r in enumerate(shown):
        ax.errorbar(r.change_pct, y, xerr=[[r.change_pct - r.low_pct], [r.high_pct - r.change_pct]], fmt="o",
                    color=colors[r.verdict], capsize=4)
    ax.set_yticks(range(len(shown)), [r.id for r in shown])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"change of the mean, % (bands: ±{tolerance_pct:g}, ±{medium_pct:g}, ±{high_pct:g})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
