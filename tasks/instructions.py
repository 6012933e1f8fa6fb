"""P1.C3 / A.3 by instruction counts (`benchmarks.mode = "instructions"`): a verdict that does not depend on the
machine's load, reached in one round.

Each benchmark of each `cargo bench --bench NAME` command runs, unmodified, under Valgrind's Callgrind in criterion's
profile mode (`--profile-time 1`). Criterion's warm-up there calls the benchmark with 1, 2, 4, 8, … iterations;
Callgrind dumps a profile part as each `Bencher::iter*` call returns (`--dump-after`). Two consecutive parts
differ by exactly the iterations added, so (part(2n) − part(n)) / n is the routine's own instructions per
iteration: criterion's timer reads, the setup outside `iter` and the first iterations' one-time costs cancel. The
same count for the same binary and inputs whatever else the machine does; the noise band comes from repeating
each side (`benchmarks.instruction_repeats`), and is shown.

What instruction counts are not: time. I/O, lock contention, cache misses and memory bandwidth change wall time
without changing the count (and the reverse), so a regression found here can be confirmed by the wall-clock
sequential step (`benchmarks.confirm_by_wall`), and the report says which measure decided.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.runbook.instructions import parse_callgrind, per_iteration
from actor_rollback.tasks.commands import run_bounded, secret_names
from actor_rollback.tasks.context import StepContext

# The functions whose return ends one warm-up call (criterion 0.3–0.5; legacy and v0 symbol names).
DUMP_AFTER = ("criterion::bencher::Bencher<M>::iter*", "criterion::bencher::Bencher<*>::iter*")
PROFILE_SECONDS = "1"  # criterion's profile mode: a 1 s warm-up of doubling iteration counts, nothing else
BUILD_OUTPUT_LINES = 100_000  # cargo's --message-format=json lines kept (the bench executable is among them)


@dataclass
class BenchTarget:
    command: str
    executable: Path
    cwd: Path  # the package's folder: cargo runs a bench there
    ids: list[str]


def _bench_argv(command: str) -> list[str]:
    from actor_rollback.tasks.benchmarks import _cargo_bench

    argv = shlex.split(command)
    if not _cargo_bench(argv):
        raise BadInputError(f"benchmarks.mode = 'instructions' runs criterion targets by name: {command!r} is not "
                            "`cargo bench --bench NAME …`; fix benchmarks.commands or use mode = 'wall'")
    return argv[:argv.index("--")] if "--" in argv else argv


def build_targets(ctx: StepContext, tree: Path, target_dir: str | None) -> list[BenchTarget]:
    """Each command's bench executable (built with its own -p/--features), where it runs, and its benchmark ids."""
    b = ctx.cfg.benchmarks
    env = {**b.env, **({"CARGO_TARGET_DIR": target_dir} if target_dir else {})}
    found = []
    for command in b.commands:
        argv = _bench_argv(command)
        name = argv[argv.index("--bench") + 1]
        build = shlex.join([*argv, "--no-run", "--message-format=json"])
        outcome = run_bounded(build, tree, b.timeout_seconds, env=env, keep_lines=BUILD_OUTPUT_LINES,
                              secrets=secret_names(ctx.cfg))
        if outcome.returncode != 0:
            raise StepError(f"`{build}` {'timed out' if outcome.returncode is None else f'exited {outcome.returncode}'}"
                            f" in {tree}: " + " | ".join(line for line in outcome.tail[-4:] if not line.startswith("{")))
        executable = cwd = None
        for line in outcome.tail:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            target = message.get("target") or {}
            if message.get("executable") and "bench" in target.get("kind", []) and target.get("name") == name:
                executable, cwd = Path(message["executable"]), Path(message["manifest_path"]).parent
        if executable is None:
            raise StepError(f"`{build}` built no bench executable named {name}")
        listed = run_bounded(shlex.join([str(executable), "--bench", "--list"]), cwd, 120, env=env,
                             keep_lines=10_000, secrets=secret_names(ctx.cfg))
        ids = [line[:-len(": bench")] for line in listed.tail if line.endswith(": bench")]
        if listed.returncode != 0 or not ids:
            raise StepError(f"{executable.name} --bench --list named no criterion benchmark (exit {listed.returncode})")
        found.append(BenchTarget(command, executable, cwd, ids))
    return found


def count(ctx: StepContext, target: BenchTarget, id: str, env: dict[str, str]) -> tuple[float, float, int]:
    """One benchmark under Callgrind: its instructions per iteration, the spread of its last estimates, iterations."""
    b = ctx.cfg.benchmarks
    with tempfile.TemporaryDirectory(prefix="actor-rollback-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                *(f"--dump-after={pattern}" for pattern in DUMP_AFTER),
                str(target.executable), "--bench", "--profile-time", PROFILE_SECONDS, f"^{re.escape(id)}$"]
        outcome = run_bounded(shlex.join(argv), target.cwd, b.timeout_seconds, env=env, secrets=secret_names(ctx.cfg))
        if outcome.returncode != 0:
            raise StepError(f"Callgrind on {target.executable.name} {id} "
                            f"{'timed out' if outcome.returncode is None else f'exited {outcome.returncode}'}: "
                            + " | ".join(outcome.tail[-3:]))
        parts = [parse_callgrind(path.read_text(errors="replace")) for path in Path(scratch).glob("callgrind.out.*")]
    if not parts:
        raise StepError(f"{id}: no `Bencher::iter` call returned under Callgrind — not a criterion benchmark "
                        "(a custom harness needs mode = 'wall')")
    return per_iteration(parts)
