"""What a run's own work tree costs (#24.2): `git worktree add` of the remote's branch, and its removal, on a
clone of 100 and of 10,000 files — against `git status` on the same clone, measured in the same run (what a
step already pays to see the tree).

    .venv/bin/python bench/work_tree_cost.py [--files 100 10000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def clone_with(files: int, where: Path) -> Path:
    origin, seed = where / "origin.git", where / "seed"
    git(where, "init", "-q", "--bare", str(origin))
    git(where, "init", "-q", "-b", "main", str(seed))
    for n in range(files):
        folder = seed / f"src/m{n // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:05d}.rs").write_text(f"// file {n}\n" + "fn f() {}\n" * 40)
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-q", "-m", "seed")
    git(seed, "push", "-q", str(origin), "main")
    clone = where / "clone"
    git(where, "clone", "-q", str(origin), str(clone))
    return clone


def timed(action, repeats: int) -> float:
    times = []
    for n in range(repeats):
        started = time.perf_counter()
        action(n)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("| files | `git status` (baseline) | `git worktree add` of origin/main | `git worktree remove` | add / baseline |")
    print("|---|---|---|---|---|")
    for files in args.files:
        with tempfile.TemporaryDirectory() as tmp:
            clone = clone_with(files, Path(tmp))
            base = timed(lambda n, clone=clone: git(clone, "status", "--porcelain"), args.repeats)
            trees = Path(tmp) / "trees"
            add = timed(lambda n, clone=clone, trees=trees: git(clone, "worktree", "add", "-q", "-b", f"run-{n}", str(trees / f"t{n}"),
                                      "origin/main"), args.repeats)
            remove = timed(lambda n, clone=clone, trees=trees: git(clone, "worktree", "remove", "--force", str(trees / f"t{n}")),
                           args.repeats)
            print(f"| {files:,} | {base * 1000:.0f} ms | {add * 1000:.0f} ms | {remove * 1000:.0f} ms | "
                  f"{add / base:.1f} |")


if __name__ == "__main__":
    main()
