"""A workspace shaped like a real public actor framework, not like the project's own sample:
the root is a package *and* the workspace (`members = [".", "modules/*"]`), the Phase 1 merge is
the commit that declares the flag, CI is written as people write it (`branches: [ main ]`, a
no_std job that runs a script, an embedded job for other thumb targets), benches need features.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT_MANIFEST = """\
[package]
name = "actor-rt"
version = "0.3.1"
edition = "2021"

[workspace]
members = [".", "modules/*"]
resolver = "2"

[features]
# Meta-features:
default = ["std", "valuable?/std"]
std = ["actor-core/std"]

[dependencies]
actor-core = { path = "modules/actor-core", default-features = false }
valuable = { version = "0.1", optional = true }
"""

CORE_MANIFEST = """\
[package]
name = "actor-core"
version = "0.3.1"
edition = "2021"

[features]
default = ["std"]
std = []

[[bench]]
name = "mailbox"
harness = false
required-features = ["std"]
"""

CORE_MANIFEST_PHASE1 = CORE_MANIFEST.replace(
    'default = ["std"]\nstd = []\n',
    'default = ["std", "new-scheduler"]\nstd = []\nnew-scheduler = []   # Phase 1: ReadyQueueCoordinator\n')

SCHEDULER_RS = """\
pub struct ReadyQueueScheduler;

pub type Scheduler = ReadyQueueScheduler;
"""

SCHEDULER_RS_PHASE1 = """\
pub struct ReadyQueueScheduler;

#[cfg(feature = "new-scheduler")]
pub type Scheduler = crate::coordinator::ReadyQueueCoordinator;
#[cfg(not(feature = "new-scheduler"))]
pub type Scheduler = ReadyQueueScheduler;
"""

CI_YML = """\
name: CI

on:
  push:
    branches: [ main ]
  pull_request:
    branches: [ main ]

jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: cargo test --workspace

  no_std:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: ./scripts/ci-check.sh no-std

  embedded:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: rustup target add thumbv6m-none-eabi thumbv7m-none-eabi
      - run: cargo build -p actor-core --no-default-features --target thumbv6m-none-eabi
      - run: cargo build -p actor-core --no-default-features --target thumbv7m-none-eabi
"""

BASELINE_MD = """\
# Benchmarks before the refactor

| Benchmark | Mean | Std Dev |
|---|---|---|
| mailbox/enqueue | 41.2 ns | 0.8 ns |
"""


@dataclass
class RealisticWorkspace:
    repo: Path
    origin: Path
    merge: str  # the Phase 1 merge: the commit that declared new-scheduler


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> None:
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        _git(repo, "add", rel)
    _git(repo, "commit", "-q", "-m", message)


def create_realistic_workspace(root: Path) -> RealisticWorkspace:
    repo, origin = root / "actor-rt", root / "actor-rt.git"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.name", "Rin Sato")
    _git(repo, "config", "user.email", "rin@example.org")
    _commit(repo, {
        "Cargo.toml": ROOT_MANIFEST,
        "src/lib.rs": "pub use actor_core::*;\n",
        "modules/actor-core/Cargo.toml": CORE_MANIFEST,
        "modules/actor-core/src/lib.rs": "pub mod scheduler;\n",
        "modules/actor-core/src/scheduler.rs": SCHEDULER_RS,
        "modules/actor-core/benches/mailbox.rs": "fn main() {}\n",
        "modules/actor-macros/Cargo.toml": '[package]\nname = "actor-macros"\nversion = "0.3.1"\nedition = "2021"\n',
        "modules/actor-macros/src/lib.rs": "",
        "modules/README.md": "Workspace members live here.\n",
        ".github/workflows/ci.yml": CI_YML,
        "scripts/ci-check.sh": "#!/bin/sh\ncargo build -p actor-core --no-default-features --target \"$TARGET\"\n",
        "scripts/deploy.sh": "#!/bin/sh\necho deployed \"$@\"\n",
        "benchmarks/before_refactor.md": BASELINE_MD,
    }, "actor-rt 0.3.1")
    _git(repo, "checkout", "-q", "-b", "feat/ready-queue-coordinator")
    _commit(repo, {
        "modules/actor-core/Cargo.toml": CORE_MANIFEST_PHASE1,
        "modules/actor-core/src/lib.rs": "pub mod scheduler;\n#[cfg(feature = \"new-scheduler\")]\npub mod coordinator;\n",
        "modules/actor-core/src/coordinator.rs": "pub struct ReadyQueueCoordinator;\n",
        "modules/actor-core/src/scheduler.rs": SCHEDULER_RS_PHASE1,
    }, "ReadyQueueCoordinator behind new-scheduler")
    _git(repo, "checkout", "-q", "main")
    _commit(repo, {"CHANGELOG.md": "# Changelog\n"}, "changelog")
    _git(repo, "merge", "-q", "--no-ff", "feat/ready-queue-coordinator", "-m",
         "Merge pull request #31 from rin/feat/ready-queue-coordinator\n\nPhase 1: ReadyQueueCoordinator")
    merge = _git(repo, "rev-parse", "HEAD")
    _git(repo, "branch", "-q", "-D", "feat/ready-queue-coordinator")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    _git(repo, "remote", "add", "origin", str(origin))
    _git(repo, "push", "-q", "-u", "origin", "main")
    return RealisticWorkspace(repo=repo, origin=origin, merge=merge)
