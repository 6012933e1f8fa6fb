"""Criterion's results and the baselines they are compared with (P1.C3 / A.3).

`cargo bench` exits 0 even when criterion prints "Performance has regressed", so the verdict
comes from criterion's files: every `<id>/<run>/estimates.json` with its `benchmark.json`.
Baselines: the runbook's markdown table, a criterion saved baseline (`--save-baseline NAME`),
or a JSON export of this tool.
"""

from __future__ import annotations

import json
from pathlib import Path

from runbook.benchstats import BenchmarkInputError, Comparison, Estimate, parse_markdown_baseline


def read_criterion(root: Path, run: str = "new") -> dict[str, Estimate]:
    """Every benchmark under a criterion folder for one run ("new", or a saved baseline's name)."""
    if not root.is_dir():
        raise BenchmarkInputError(f"{root}: no such criterion folder; run `cargo bench` first or check --current")
    found = {}
    for estimates in sorted(root.rglob(f"{run}/estimates.json")):
        folder = estimates.parent
        try:
            meta = json.loads((folder / "benchmark.json").read_text())
            data = json.loads(estimates.read_text())
            found[meta["full_id"]] = Estimate(float(data["mean"]["point_estimate"]),
                                              float(data["mean"]["standard_error"]))
        except FileNotFoundError:
            raise BenchmarkInputError(f"{folder}: estimates.json without benchmark.json; a partial criterion run?") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise BenchmarkInputError(f"{estimates}: not criterion's estimates format ({exc})") from None
    if not found:
        raise BenchmarkInputError(f"{root}: no {run}/estimates.json below it; is it criterion's output folder?")
    return found


def read_export(path: Path) -> dict[str, Estimate]:
    """This tool's JSON export: {"benchmarks": {id: {"mean_ns": …, "standard_error_ns": …}}}."""
    try:
        data = json.loads(path.read_text())
        return {id: Estimate(float(v["mean_ns"]), float(v["standard_error_ns"]))
                for id, v in data["benchmarks"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchmarkInputError(f"{path}: not an actor-rollback benchmark export ({exc})") from None


def write_export(estimates: dict[str, Estimate], path: Path) -> None:
    path.write_text(json.dumps({"benchmarks": {id: {"mean_ns": e.mean, "standard_error_ns": e.standard_error}
                                               for id, e in sorted(estimates.items())}}, indent=2) + "\n")


def read_baseline(spec: str, criterion_root: Path | None = None) -> dict[str, Estimate]:
    """A markdown table (.md), an export (.json), a criterion folder, or a saved baseline's NAME."""
    path = Path(spec)
    if path.suffix == ".md":
        if not path.exists():
            raise BenchmarkInputError(f"{path}: no such baseline file")
        return parse_markdown_baseline(path.read_text(), str(path))
    if path.suffix == ".json":
        if not path.exists():
            raise BenchmarkInputError(f"{path}: no such baseline file")
        return read_export(path)
    if path.is_dir():
        return read_criterion(path)
    if criterion_root is not None and "/" not in spec:
        return read_criterion(criterion_root, run=spec)
    raise BenchmarkInputError(f"{spec}: not a .md table, a .json export, a criterion folder or a saved baseline name")


def markdown_report(results: list[Comparison], tolerance_pct: float, baseline: str, current: str) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in
              ("within-tolerance", "regression", "improvement", "unverifiable", "missing")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    lines = [f"# Benchmarks against the baseline (±{tolerance_pct:g} %)", "",
             f"**{summary}** — baseline `{baseline}`, current `{current}`.", "",
             "A benchmark is within tolerance only when the 95 % interval of its change lies inside "
             f"±{tolerance_pct:g} %; an interval across a boundary is unverifiable.", "",
             "| benchmark | verdict | change | 95 % interval | note |", "|---|---|---|---|---|"]
    for r in results:
        if r.verdict == "missing":
            lines.append(f"| {r.id} | missing | | | only in the {'baseline' if r.side == 'current' else 'current run'} |")
            continue
        note = r.severity or (f"detects ±{r.detectable_pct:.1f} %; ~{r.runs_needed} runs needed"
                              if r.verdict == "unverifiable" else "")
        lines.append(f"| {r.id} | {r.verdict} | {r.change_pct:+.2f} % | [{r.low_pct:+.2f}, {r.high_pct:+.2f}] % | {note} |")
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
