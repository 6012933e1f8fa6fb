"""A plan's read-only check that cargo can resolve the workspace: the steps that compile it (CI, the benchmarks,
the Tokio-pinned build) would otherwise stop at their first `cargo` call — e.g. no Cargo.lock and no registry.

`cargo metadata` resolves every dependency without building. It runs on a copy of the committed tree (`git
archive HEAD`), so a Cargo.lock it writes never lands in the clone; offline first, then — if that fails — once
with the network, bounded. One check per commit and plan, shared by the steps that need it.
"""

from __future__ import annotations

import shlex
import subprocess
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.tasks.commands import run_bounded

TIMEOUT_SECONDS = 60


@lru_cache(maxsize=16)
def _resolves(repo: str, head: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="actor-rollback-resolve-") as scratch:
        archive, copy = Path(scratch) / "head.tar", str(Path(scratch) / "tree")  # on disk: a repository may be large
        subprocess.run(["git", "archive", "--format=tar", "-o", str(archive), head], cwd=repo, capture_output=True,
                       check=True, timeout=TIMEOUT_SECONDS)
        with tarfile.open(archive) as tar:
            tar.extractall(copy, filter="data")
        archive.unlink()
        env = {"CARGO_NET_RETRY": "0", "CARGO_HTTP_TIMEOUT": "10", "CARGO_TARGET_DIR": f"{copy}/target"}
        tried = []
        for offline in (True, False):
            argv = ["cargo", "metadata", "--format-version", "1", "--quiet",
                    *(["--offline"] if offline else [])]
            # run_bounded: the tool's secrets kept out of cargo's environment, its whole tree ended at the timeout
            done = run_bounded(shlex.join(argv), Path(copy), TIMEOUT_SECONDS, env=env)
            if done.returncode == 0:
                how = "offline" if offline else "with the network (not offline: the run needs the registry)"
                return True, f"cargo resolves the workspace {how}"
            if done.returncode is None:
                tried.append(f"`{' '.join(argv)}` did not answer within {TIMEOUT_SECONDS} s")
                continue
            tried.append(f"`{' '.join(argv)}`: {cargo_error(chr(10).join(done.tail).replace(copy, repo))}")
        return False, "; ".join(tried)


def cargo_error(stderr: str) -> str:
    """Cargo's own reason: its `error:` line and what follows, without the reminders it adds."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.strip().startswith(
        ("As a reminder", "Updating", "Blocking", "Locking", "Downloading", "Downloaded"))]
    start = next((i for i, line in enumerate(lines) if line.startswith("error")), max(len(lines) - 3, 0))
    return " | ".join(lines[start:start + 3]) or "cargo printed nothing"


def cargo_resolves(repo: Path, key: str) -> str:
    """The line a plan shows, or bad input naming cargo's reason (the step would fail at its first cargo call)."""
    if not (repo / "Cargo.toml").is_file():
        return "no Cargo.toml at the root: cargo's resolution not checked"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()
    ok, detail = _resolves(str(repo), head)
    if not ok:
        raise BadInputError(f"cargo cannot resolve the workspace, so {key} would stop at its first cargo call: "
                            f"{detail}; commit a Cargo.lock and vendor or cache the dependencies, or make the "
                            "registry reachable")
    return detail
