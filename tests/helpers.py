"""Small builders shared by the tests: contexts, config variants, commits on real repositories."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from runbook.config import SHIPPED_CONFIG, RollbackConfig, parse_config
from tasks.context import StepContext


def config(**changes) -> RollbackConfig:
    """The shipped config with dotted-key changes, e.g. config(**{"git.push": "branch"})."""
    data = tomllib.loads(SHIPPED_CONFIG.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return parse_config(data)


def context(repo: Path, phase: str = "1", step_id: str = "P1.2b", cfg: RollbackConfig | None = None,
            incident: str = "inc-test", **kw) -> StepContext:
    return StepContext(repo=repo, cfg=cfg or config(), phase=phase, incident=incident,
                       reason="test: throughput regression", step_id=step_id, **kw)


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_change(repo: Path, rel: str, text: str, message: str, push: bool = False) -> str:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    run_git(repo, "add", rel)
    run_git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", message)
    if push:
        run_git(repo, "push", "-q", "origin", "main")
    return run_git(repo, "rev-parse", "HEAD")


def other_clone(origin: Path, where: Path) -> Path:
    """A teammate's clone, to move the remote under the rollback's feet."""
    subprocess.run(["git", "clone", "-q", str(origin), str(where)], check=True)
    return where


def refs(repo: Path) -> str:
    return run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
