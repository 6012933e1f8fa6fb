"""The sample workspace: a realistic Rust actor framework with the runbook's whole history, for the demo,
the tests and the benches (a fixture generator, not a runbook step).

Its files are real files under `files/` (package data): `base/` is the workspace before the refactor
(a whole cargo workspace: `cargo check` works in it), and `phase0/` … `phase4/` hold the files each phase
adds or changes. A name starting with `dot-` is a dot-file in the workspace (`dot-cargo/` → `.cargo/`),
so this repository's own git and cargo never read them. `create_sample_workspace` replays the history
commit by commit — one commit a day from 2025-09-01 by one author, so every run makes the same commits
(the same SHAs) — with `--no-ff` merges of each phase branch, a PoC branch never merged, and a bare
`origin` it is pushed to.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path

from git import Repo

DEBIAN_CARGO_REGISTRY = Path("/usr/share/cargo/registry")
MAIN_BRANCH = "main"
POC_BRANCH = "feature/ready-queue-coordinator-poc"
START_DATE = datetime(2025, 9, 1, 10, 0, tzinfo=timezone.utc)
AUTHOR = ("Aiko Tanaka", "aiko@example.com")
TEMPLATES = files("actor_rollback.deployments.sample").joinpath("files")
CORE = "modules/actor-core"


@dataclass
class SampleWorkspace:
    root: Path  # the folder holding both repositories
    repo: Path  # the working clone
    origin: Path  # the bare remote


def template(stage: str, rel: str) -> str:
    """The text of `rel` (a path in the workspace) as of `stage` (base, phase0 … phase4)."""
    parts = ["dot-" + part[1:] if part.startswith(".") else part for part in rel.split("/")]
    text = TEMPLATES.joinpath(stage, *parts).read_text()
    return text.replace("@DEBIAN_CARGO_REGISTRY@", str(DEBIAN_CARGO_REGISTRY))


def stage_files(stage: str) -> list[str]:
    """Every workspace path `stage` holds, sorted."""
    found: list[str] = []

    def walk(folder, prefix: str) -> None:
        for entry in folder.iterdir():
            name = "." + entry.name[4:] if entry.name.startswith("dot-") else entry.name
            if entry.is_dir():
                walk(entry, f"{prefix}{name}/")
            else:
                found.append(prefix + name)

    walk(TEMPLATES.joinpath(stage), "")
    return sorted(found)


class History:
    """Commits and merges on the sample's clone, dated one a day, through GitPython (as the steps use git)."""

    def __init__(self, repo: Path) -> None:
        self.repo = Repo.init(repo, initial_branch=MAIN_BRANCH)
        self.path = repo
        self.day = 0
        with self.repo.config_writer() as config:
            config.set_value("user", "name", AUTHOR[0])
            config.set_value("user", "email", AUTHOR[1])

    def git(self, *args: str) -> str:
        stamp = (START_DATE + timedelta(days=self.day)).isoformat()
        env = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp,
               "GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1],
               "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1]}
        return self.repo.git.execute(["git", *args], env={**os.environ, **env}, strip_newline_in_stdout=True)

    def commit(self, stage: str, paths: list[str], message: str, texts: dict[str, str] | None = None) -> str:
        """Write `paths` as of `stage` (and `texts` as given), commit them with `message`."""
        for rel, text in [*((rel, template(stage, rel)) for rel in paths), *(texts or {}).items()]:
            path = self.path / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if rel.endswith((".sh", "actor_system.py")):
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.day += 1
        return self.git("rev-parse", "HEAD")

    def phase_branch(self, branch: str, commits: list[tuple[str, list[str], str]], merge_message: str) -> str:
        """A phase's branch off main with its commits, merged back with --no-ff (as a forge's pull request)."""
        self.git("checkout", "-q", "-b", branch, MAIN_BRANCH)
        for stage, paths, message in commits:
            self.commit(stage, paths, message)
        self.git("checkout", "-q", MAIN_BRANCH)
        self.git("merge", "-q", "--no-ff", "-m", merge_message, branch)
        self.day += 1
        return self.git("rev-parse", "HEAD")


def create_sample_workspace(root: Path) -> SampleWorkspace:
    """Create `root/actor-framework` (a clone) and `root/origin.git` (its bare remote)."""
    root = Path(root).resolve()
    repo, origin = root / "actor-framework", root / "origin.git"
    if repo.exists() or origin.exists():
        raise FileExistsError(f"{root} already holds a sample workspace; choose an empty folder (--dir PATH)")
    repo.mkdir(parents=True)
    h = History(repo)
    benches = [f"{CORE}/benches/mailbox_throughput.rs", f"{CORE}/benches/scheduler_latency.rs"]
    adrs = ["docs/adr/template.md", "docs/adr/0001-scheduler-refactor-behind-flag.md"]
    h.commit("base", [p for p in stage_files("base") if p not in (*benches, *adrs)], "Initial actor-core workspace")
    h.commit("base", benches, "Add mailbox_throughput and scheduler_latency benches")
    h.commit("base", adrs, "docs: ADR template and ADR-0001")
    h.commit("phase0", ["benchmarks/baseline_before_refactor.md", "docs/design/actor_scheduler_refactor.md",
                        f"{CORE}/Cargo.toml"],
             "Phase 0 start: record the benchmark baseline and declare the new-scheduler flag")

    # The PoC of Phase 0 stays on its own branch, never merged.
    h.git("checkout", "-q", "-b", POC_BRANCH)
    h.commit("phase0", [f"{CORE}/src/poc/coordinator_sketch.rs"], "PoC: ReadyQueueCoordinator sketch")
    h.commit("phase0", [f"{CORE}/src/poc/NOTES.md"], "PoC: notes on fairness")
    h.git("checkout", "-q", MAIN_BRANCH)

    h.commit("phase1", ["docs/implementation/phase1_implementation_guide.md"],
             "docs: Phase 1 implementation guide for ReadyQueueCoordinator")
    h.phase_branch("refactor/ready-queue-coordinator", [
        ("phase1", [f"{CORE}/src/scheduler/ready_queue_coordinator.rs"], "Add ReadyQueueCoordinator with fairness accounting"),
        ("phase1", [f"{CORE}/src/scheduler/mod.rs"], "Select ReadyQueueCoordinator when new-scheduler is on"),
    ], "Merge pull request #12 from acme/refactor/ready-queue-coordinator\n\n"
       "Phase 1: integrate ReadyQueueCoordinator behind the new-scheduler flag")
    h.commit("phase1", ["config/actor_system.toml"], "config: ready-queue-coordinator settings (Phase 1 follow-up)")
    h.commit("phase1", ["docs/features.md"], "test: document ReadyQueueCoordinator feature matrix")

    h.phase_branch("refactor/worker-executor", [
        ("phase2a", [f"{CORE}/src/executor.rs"], "Add WorkerExecutor"),
        ("phase2a", [f"{CORE}/src/lib.rs"], "Export the executor module"),
    ], "Merge pull request #15 from acme/refactor/worker-executor\n\nPhase 2A: run actors on WorkerExecutor worker tasks")
    h.commit("phase2a", ["config/actor_system.toml"], "config: switch production to worker-executor (Phase 2A rollout)")

    h.phase_branch("refactor/message-invoker", [
        ("phase2b", [f"{CORE}/src/api/message_invoker.rs", f"{CORE}/src/api/mod.rs"],
         "Add MessageInvoker with a middleware chain"),
        ("phase2b", [f"{CORE}/src/api/actor_cell.rs"], "ActorCell delegates to MessageInvoker"),
    ], "Merge pull request #18 from acme/refactor/message-invoker\n\nPhase 2B: separate MessageInvoker from ActorCell")
    h.commit("phase2b", ["README.md"], "README: link the design notes")

    h.phase_branch("refactor/runtime-abstraction", [
        ("phase3", [f"{CORE}/src/runtime.rs", f"{CORE}/src/lib.rs"], "Add a runtime abstraction over Tokio and Embassy"),
        ("phase3", [".github/workflows/ci.yml"], "CI: build for thumbv7em-none-eabihf"),
    ], "Merge pull request #21 from acme/refactor/runtime-abstraction\n\nPhase 3: runtime abstraction and no_std support")

    h.phase_branch("refactor/final-optimization", [
        ("phase4", [f"{CORE}/src/lock_free.rs", f"{CORE}/src/lib.rs"], "Lock-free ready counters"),
    ], "Merge pull request #24 from acme/refactor/final-optimization\n\n"
       "Phase 4: lock-free optimisations and final integration")
    h.commit("phase4", [f"{CORE}/Cargo.toml"], "Phase 4: enable new-scheduler by default")
    h.commit("phase4", ["CHANGELOG.md"], "Add CHANGELOG for 0.4.0")
    h.commit("phase4", ["modules/actor-utils/src/lib.rs"], "actor-utils: tidy docs")

    Repo.init(origin, bare=True, initial_branch=MAIN_BRANCH)
    h.git("remote", "add", "origin", str(origin))
    h.git("push", "-q", "origin", MAIN_BRANCH, POC_BRANCH)
    h.git("branch", "-q", f"--set-upstream-to=origin/{MAIN_BRANCH}", MAIN_BRANCH)
    # Phase branches were deleted after merging, as on a hosted forge.
    for branch in ("refactor/ready-queue-coordinator", "refactor/worker-executor", "refactor/message-invoker",
                   "refactor/runtime-abstraction", "refactor/final-optimization"):
        h.git("branch", "-q", "-D", branch)
    return SampleWorkspace(root=root, repo=repo, origin=origin)
