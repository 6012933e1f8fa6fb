"""The sample workspace: a realistic Rust actor-framework repository and its bare `origin`.

Used by `actor-rollback demo` and by every test that needs a target. Its history follows the
refactoring phases of the runbook: a "Phase 0 start" commit, `--no-ff` merges of each phase
branch, ordinary commits that mention the phases (so a naive `git log --grep` is ambiguous),
follow-up commits that switch config and enable the flag by default, unrelated work after
them, and an unmerged PoC branch. Every phase merge reverts cleanly at the head because each
phase touches its own files and its own marked section of shared files.

The `new-scheduler` path (`ReadyQueueCoordinator`) does extra fairness bookkeeping per
scheduling decision, which makes the criterion benches measurably slower with the flag on.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.resources import files
from pathlib import Path

DEBIAN_CARGO_REGISTRY = Path("/usr/share/cargo/registry")
MAIN_BRANCH = "main"
POC_BRANCH = "feature/ready-queue-coordinator-poc"
START_DATE = datetime(2025, 9, 1, 10, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SampleWorkspace:
    root: Path  # the folder holding both repositories
    repo: Path  # the working clone
    origin: Path  # the bare remote


# ---------------------------------------------------------------- file contents, by history

ROOT_CARGO = """\
[workspace]
# Every crate of the framework lives under modules/.
members = ["modules/*"]
resolver = "2"

[workspace.package]
edition = "2021"
license = "MIT OR Apache-2.0"
"""

CARGO_CONFIG = f"""\
# Offline builds against Debian's packaged crate sources (no crates.io here).
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{DEBIAN_CARGO_REGISTRY}"

[net]
offline = true
"""

GITIGNORE = "/target\n/.deploy\n/Cargo.lock\n"
SERVICE_PY = files("tasks").joinpath("sample_files", "actor_system.py").read_text()


def actor_core_manifest(default: str, with_flag: bool) -> str:
    flag = (
        "# Phase 1+: the refactored scheduler, off by default until it is proven.\n"
        "new-scheduler = []\n"
        if with_flag
        else ""
    )
    return f"""\
[package]
name = "actor-core"
version = "0.4.0"
edition.workspace = true
license.workspace = true
description = "Actor cells, mailboxes and the ready-queue scheduler"

[features]
default = {default}   # keep in sync with docs/features.md
std = []
{flag}runtime-tokio = ["std"]
runtime-embassy = []

[dependencies]

[dev-dependencies]
criterion = {{ version = "0.3", default-features = false }}

[[bench]]
name = "mailbox_throughput"
harness = false

[[bench]]
name = "scheduler_latency"
harness = false
"""


ACTOR_UTILS_MANIFEST = """\
[package]
name = "actor-utils"
version = "0.4.0"
edition.workspace = true
license.workspace = true

[features]
default = ["std"]
std = ["actor-core/std"]

[dependencies]
actor-core = { path = "../actor-core", default-features = false }
"""

ACTOR_UTILS_LIB = """\
//! Small helpers shared by the framework's crates.

/// Splits `total` messages into batches of at most `batch` messages.
pub fn batches(total: usize, batch: usize) -> usize {
    if batch == 0 {
        return 0;
    }
    (total + batch - 1) / batch
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_round_up() {
        assert_eq!(super::batches(10, 4), 3);
        assert_eq!(super::batches(0, 4), 0);
    }
}
"""


def actor_core_lib(executor: bool = False, runtime: bool = False, lock_free: bool = False) -> str:
    gated = '#[cfg(feature = "new-scheduler")]\n'
    executor_line = gated + "pub mod executor;" if executor else "// (none yet)"
    runtime_line = "pub mod runtime;" if runtime else "// (none yet)"
    lock_free_line = gated + "pub mod lock_free;" if lock_free else "// (none yet)"
    return f"""\
//! actor-core: actor cells, mailboxes and the ready-queue scheduler.

pub mod api;
pub mod mailbox;
pub mod scheduler;

// -- worker execution (Phase 2A) --
{executor_line}
// -- end worker execution --

// -- runtime abstraction (Phase 3) --
{runtime_line}
// -- end runtime abstraction --

// -- optimisations (Phase 4) --
{lock_free_line}
// -- end optimisations --

pub use mailbox::{{Envelope, Mailbox}};
pub use scheduler::{{ActiveScheduler, Scheduler}};

/// Delivers every queued message of `mailbox`, letting `scheduler` pick the order.
pub fn drain<S: Scheduler>(mailbox: &mut Mailbox, scheduler: &mut S) -> u64 {{
    let mut checksum = 0u64;
    while let Some(envelope) = mailbox.dequeue() {{
        scheduler.schedule(envelope.actor);
        if let Some(actor) = scheduler.next_ready() {{
            checksum = checksum.wrapping_add(envelope.payload ^ actor as u64);
        }}
    }}
    checksum
}}
"""


MAILBOX_RS = """\
//! A FIFO mailbox per actor.

use std::collections::VecDeque;

/// One message addressed to one actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub actor: usize,
    pub payload: u64,
}

/// Messages waiting for their actor, oldest first.
#[derive(Default)]
pub struct Mailbox {
    queue: VecDeque<Envelope>,
}

impl Mailbox {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { queue: VecDeque::with_capacity(capacity) }
    }

    pub fn enqueue(&mut self, envelope: Envelope) {
        self.queue.push_back(envelope);
    }

    pub fn dequeue(&mut self) -> Option<Envelope> {
        self.queue.pop_front()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_is_fifo() {
        let mut mailbox = Mailbox::with_capacity(2);
        mailbox.enqueue(Envelope { actor: 1, payload: 10 });
        mailbox.enqueue(Envelope { actor: 2, payload: 20 });
        assert_eq!(mailbox.dequeue().map(|e| e.payload), Some(10));
        assert_eq!(mailbox.len(), 1);
    }
}
"""

SCHEDULER_MOD_BEFORE = """\
//! Scheduling of ready actors.

mod ready_queue_scheduler;

pub use ready_queue_scheduler::ReadyQueueScheduler;

/// What every scheduler offers to the dispatcher.
pub trait Scheduler: Default {
    /// Marks `actor` as having work.
    fn schedule(&mut self, actor: usize);
    /// The next actor to run, if any.
    fn next_ready(&mut self) -> Option<usize>;
}

/// The scheduler the dispatcher uses.
pub type ActiveScheduler = ReadyQueueScheduler;
"""

SCHEDULER_MOD_PHASE1 = """\
//! Scheduling of ready actors.

mod ready_queue_scheduler;
#[cfg(feature = "new-scheduler")]
mod ready_queue_coordinator;

pub use ready_queue_scheduler::ReadyQueueScheduler;
#[cfg(feature = "new-scheduler")]
pub use ready_queue_coordinator::ReadyQueueCoordinator;

/// What every scheduler offers to the dispatcher.
pub trait Scheduler: Default {
    /// Marks `actor` as having work.
    fn schedule(&mut self, actor: usize);
    /// The next actor to run, if any.
    fn next_ready(&mut self) -> Option<usize>;
}

/// The scheduler the dispatcher uses: the coordinator only behind the flag.
#[cfg(feature = "new-scheduler")]
pub type ActiveScheduler = ReadyQueueCoordinator;
#[cfg(not(feature = "new-scheduler"))]
pub type ActiveScheduler = ReadyQueueScheduler;
"""

READY_QUEUE_SCHEDULER_RS = """\
//! The original scheduler: a plain FIFO of ready actors.

use std::collections::VecDeque;

use super::Scheduler;

#[derive(Default)]
pub struct ReadyQueueScheduler {
    ready: VecDeque<usize>,
}

impl Scheduler for ReadyQueueScheduler {
    fn schedule(&mut self, actor: usize) {
        self.ready.push_back(actor);
    }

    fn next_ready(&mut self) -> Option<usize> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_actors_in_order() {
        let mut scheduler = ReadyQueueScheduler::default();
        scheduler.schedule(3);
        scheduler.schedule(5);
        assert_eq!(scheduler.next_ready(), Some(3));
        assert_eq!(scheduler.next_ready(), Some(5));
        assert_eq!(scheduler.next_ready(), None);
    }
}
"""

READY_QUEUE_COORDINATOR_RS = """\
//! The refactored scheduler: a ready queue with per-actor fairness accounting.
//!
//! Each decision updates a fairness score for the actor's shard; the bookkeeping costs
//! a measurable share of the dispatch time (the reason Phase 1 may be rolled back).

use std::collections::VecDeque;

use super::Scheduler;

const SHARDS: usize = 64;
const FAIRNESS_ROUNDS: u32 = 6;

pub struct ReadyQueueCoordinator {
    ready: VecDeque<usize>,
    fairness: [u64; SHARDS],
}

impl Default for ReadyQueueCoordinator {
    fn default() -> Self {
        Self { ready: VecDeque::new(), fairness: [0; SHARDS] }
    }
}

impl ReadyQueueCoordinator {
    fn account(&mut self, actor: usize) {
        let shard = actor % SHARDS;
        let mut score = self.fairness[shard] ^ actor as u64;
        for round in 0..FAIRNESS_ROUNDS {
            score = score.rotate_left(round % 7 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(round);
        }
        self.fairness[shard] = score;
    }
}

impl Scheduler for ReadyQueueCoordinator {
    fn schedule(&mut self, actor: usize) {
        self.account(actor);
        self.ready.push_back(actor);
    }

    fn next_ready(&mut self) -> Option<usize> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fifo_order() {
        let mut coordinator = ReadyQueueCoordinator::default();
        coordinator.schedule(1);
        coordinator.schedule(2);
        assert_eq!(coordinator.next_ready(), Some(1));
        assert_eq!(coordinator.next_ready(), Some(2));
    }
}
"""

API_MOD_RS = """\
//! The public actor API.

pub mod actor_cell;
"""

API_MOD_PHASE2B = """\
//! The public actor API.

pub mod actor_cell;
#[cfg(feature = "new-scheduler")]
pub mod message_invoker;
"""

ACTOR_CELL_BEFORE = """\
//! ActorCell: owns an actor and delivers its messages.

use crate::mailbox::{Envelope, Mailbox};

/// What user code implements.
pub trait Actor {
    fn receive(&mut self, message: Envelope) -> Result<(), ActorError>;
}

#[derive(Debug, PartialEq, Eq)]
pub enum ActorError {
    Stopped,
}

pub struct ActorCell<A: Actor> {
    actor: A,
    mailbox: Mailbox,
}

impl<A: Actor> ActorCell<A> {
    pub fn new(actor: A) -> Self {
        Self { actor, mailbox: Mailbox::default() }
    }

    pub fn tell(&mut self, message: Envelope) {
        self.mailbox.enqueue(message);
    }

    /// Delivers one message straight to the actor.
    pub fn invoke_message(&mut self, message: Envelope) -> Result<(), ActorError> {
        self.actor.receive(message)
    }

    /// Delivers every queued message; returns how many were handled.
    pub fn run(&mut self) -> Result<usize, ActorError> {
        let mut handled = 0;
        while let Some(message) = self.mailbox.dequeue() {
            self.invoke_message(message)?;
            handled += 1;
        }
        Ok(handled)
    }
}
"""

ACTOR_CELL_PHASE2B = """\
//! ActorCell: owns an actor and delivers its messages.

use crate::mailbox::{Envelope, Mailbox};
#[cfg(feature = "new-scheduler")]
use crate::api::message_invoker::{MessageInvoker, MiddlewareChain};

/// What user code implements.
pub trait Actor {
    fn receive(&mut self, message: Envelope) -> Result<(), ActorError>;
}

#[derive(Debug, PartialEq, Eq)]
pub enum ActorError {
    Stopped,
}

pub struct ActorCell<A: Actor> {
    actor: A,
    mailbox: Mailbox,
    #[cfg(feature = "new-scheduler")]
    invoker: MessageInvoker,
}

impl<A: Actor> ActorCell<A> {
    pub fn new(actor: A) -> Self {
        Self {
            actor,
            mailbox: Mailbox::default(),
            #[cfg(feature = "new-scheduler")]
            invoker: MessageInvoker::new(MiddlewareChain::default()),
        }
    }

    pub fn tell(&mut self, message: Envelope) {
        self.mailbox.enqueue(message);
    }

    /// Delivers one message through the middleware chain of the MessageInvoker.
    #[cfg(feature = "new-scheduler")]
    fn process_message(&mut self, message: Envelope) -> Result<(), ActorError> {
        let message = self.invoker.before(message);
        self.actor.receive(message)
    }

    /// Delivers one message straight to the actor.
    #[cfg(not(feature = "new-scheduler"))]
    fn process_message(&mut self, message: Envelope) -> Result<(), ActorError> {
        self.actor.receive(message)
    }

    /// Delivers every queued message; returns how many were handled.
    pub fn run(&mut self) -> Result<usize, ActorError> {
        let mut handled = 0;
        while let Some(message) = self.mailbox.dequeue() {
            self.process_message(message)?;
            handled += 1;
        }
        Ok(handled)
    }
}
"""

MESSAGE_INVOKER_RS = """\
//! MessageInvoker: message delivery split out of ActorCell, with a middleware chain.

use crate::mailbox::Envelope;

/// Hooks run before a message reaches the actor.
#[derive(Default)]
pub struct MiddlewareChain {
    stages: Vec<fn(Envelope) -> Envelope>,
}

impl MiddlewareChain {
    pub fn push(&mut self, stage: fn(Envelope) -> Envelope) {
        self.stages.push(stage);
    }
}

pub struct MessageInvoker {
    chain: MiddlewareChain,
}

impl MessageInvoker {
    pub fn new(chain: MiddlewareChain) -> Self {
        Self { chain }
    }

    pub fn before(&self, message: Envelope) -> Envelope {
        self.chain.stages.iter().fold(message, |m, stage| stage(m))
    }
}
"""

EXECUTOR_RS = """\
//! WorkerExecutor: runs ready actors on a fixed pool of worker tasks.

use crate::scheduler::Scheduler;

pub struct WorkerExecutor<S: Scheduler> {
    scheduler: S,
    workers: usize,
}

impl<S: Scheduler> WorkerExecutor<S> {
    pub fn new(workers: usize) -> Self {
        Self { scheduler: S::default(), workers }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn submit(&mut self, actor: usize) {
        self.scheduler.schedule(actor);
    }
}
"""

RUNTIME_RS = """\
//! Runtime abstraction: spawn on Tokio or Embassy behind one interface.

#[cfg(not(feature = "new-scheduler"))]
pub fn runtime_name() -> &'static str {
    "tokio"
}

#[cfg(feature = "new-scheduler")]
pub fn runtime_name() -> &'static str {
    if cfg!(feature = "runtime-embassy") { "embassy" } else { "tokio" }
}
"""

LOCK_FREE_RS = """\
//! Lock-free ready-queue counters (Phase 4 optimisation).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct ReadyCounter(AtomicU64);

impl ReadyCounter {
    pub fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}
"""

BENCH_COMMON = """\
use std::time::Duration;

use criterion::Criterion;

/// Short runs when ACTOR_BENCH_QUICK is set (tests and demos); criterion's defaults otherwise.
fn config() -> Criterion {
    let quick_ms: Option<u64> = std::env::var("ACTOR_BENCH_QUICK").ok().and_then(|v| v.parse().ok());
    match quick_ms {
        Some(ms) => Criterion::default()
            .warm_up_time(Duration::from_millis(ms / 2 + 1))
            .measurement_time(Duration::from_millis(ms + 1))
            .sample_size(10),
        None => Criterion::default(),
    }
}
"""

MAILBOX_BENCH = BENCH_COMMON + """
use actor_core::{drain, ActiveScheduler, Envelope, Mailbox};
use criterion::{black_box, criterion_group, criterion_main, Throughput};

fn mailbox_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("mailbox");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("throughput_1000", |b| {
        b.iter(|| {
            let mut mailbox = Mailbox::with_capacity(1000);
            for i in 0..1000u64 {
                mailbox.enqueue(Envelope { actor: (i % 97) as usize, payload: i });
            }
            let mut scheduler = ActiveScheduler::default();
            black_box(drain(&mut mailbox, &mut scheduler))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = mailbox_throughput
}
criterion_main!(benches);
"""

SCHEDULER_BENCH = BENCH_COMMON + """
use actor_core::{ActiveScheduler, Scheduler};
use criterion::{black_box, criterion_group, criterion_main};

fn scheduler_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler");
    group.bench_function("schedule_to_run", |b| {
        let mut scheduler = ActiveScheduler::default();
        let mut actor = 0usize;
        b.iter(|| {
            actor = (actor + 1) % 97;
            scheduler.schedule(black_box(actor));
            black_box(scheduler.next_ready())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = scheduler_latency
}
criterion_main!(benches);
"""


def actor_system_toml(kind: str, workers: int, throughput: int) -> str:
    return f"""\
# Runtime settings of the actor system (read at start-up).

[system]
name = "actor-system"
mailbox_capacity = 1024   # messages per actor

[scheduler]
type = "{kind}"  # ready-queue-scheduler | ready-queue-coordinator | worker-executor
worker_count = {workers}
throughput = {throughput}   # messages per actor turn

[logging]
level = "info"
"""


def ci_yml(no_std: bool) -> str:
    no_std_job = """
  # Embedded targets build without std (Phase 3).
  no-std:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: rustup target add thumbv7em-none-eabihf
      - name: Build for thumbv7em
        run: cargo build -p actor-core --no-default-features --target thumbv7em-none-eabihf
""" if no_std else ""
    needs = "[test, no-std]" if no_std else "[test]"
    return f"""\
name: CI

on:
  push:
    branches: [main]
  pull_request:

jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - name: Unit tests
        run: cargo test --workspace
      - name: Benches compile
        run: cargo bench --no-run
{no_std_job}
  release:
    needs: {needs}
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: cargo build --release
"""


DEPLOY_SH = """\
#!/usr/bin/env bash
# Deploys the actor system: ./scripts/deploy.sh ENVIRONMENT --version=VERSION   (or --stop)
# Here "deploying" restarts service/actor_system.py with what the workspace now builds: whether
# new-scheduler is in the default features, and config/actor_system.toml.
set -euo pipefail
env_name="${1:?usage: deploy.sh ENVIRONMENT --version=VERSION | --stop}"
version="" stop="" override=""
for arg in "${@:2}"; do
  case "$arg" in
    --version=*) version="${arg#--version=}" ;;
    --stop) stop=1 ;;
    --new-scheduler=on|--new-scheduler=off) override="${arg#--new-scheduler=}" ;;  # a canary with the flag on
    *) echo "deploy.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "$0")/.." && pwd)"
state="${ACTOR_DEPLOY_STATE:-$here/.deploy}"
port="${ACTOR_SERVICE_PORT:-19100}"
mkdir -p "$state"

stop_service() {
  [ -f "$state/service.pid" ] || return 0
  pid="$(cat "$state/service.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/service.pid"
}
if [ -n "$stop" ]; then stop_service; echo "stopped actor-system in $env_name"; exit 0; fi
[ -n "$version" ] || { echo "deploy.sh: --version=VERSION is required" >&2; exit 2; }

commit="$(git -C "$here" rev-parse --short HEAD)"
features="$(grep -E '^default *=' "$here/modules/actor-core/Cargo.toml" | head -n 1)"
case "$features" in *new-scheduler*) scheduler=on ;; *) scheduler=off ;; esac
[ -n "$override" ] && scheduler="$override"
python="${ACTOR_SERVICE_PYTHON:-${ACTOR_ROLLBACK_PYTHON:-python3}}"

stop_service
[ -f "$state/actor-system.log" ] && mv "$state/actor-system.log" "$state/actor-system.log.1"
setsid "$python" "$here/service/actor_system.py" --port "$port" --version "$version" \\
  --new-scheduler "$scheduler" --config "$here/config/actor_system.toml" --log "$state/actor-system.log" \\
  </dev/null >"$state/service.out" 2>&1 &
echo $! > "$state/service.pid"
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$(cat "$state/service.pid")" 2>/dev/null || { echo "deploy.sh: the service did not start:" >&2; cat "$state/service.out" >&2; exit 1; }
  sleep 0.1
done
echo "$version" > "$state/$env_name.version"
printf '%s %s version=%s commit=%s new-scheduler=%s\\n' "$(date -u +%FT%TZ)" "$env_name" "$version" "$commit" "$scheduler" >> "$state/deploys.log"
echo "deployed actor-system to $env_name: version=$version commit=$commit new-scheduler=$scheduler port=$port"
"""

BASELINE_MD = """\
# Benchmark baseline before the scheduler refactor

Recorded at the "Phase 0 start" commit with `cargo bench --features std`
(criterion 0.3, release profile). Times are the mean of criterion's samples.

| Benchmark | Mean | Std Dev |
|-----------|------|---------|
| mailbox/throughput_1000 | 3.1 µs | 0.06 µs |
| scheduler/schedule_to_run | 4.2 ns | 0.09 ns |
"""

DESIGN_MD = """\
# ActorScheduler refactor

Phases: 0 prototype, 1 ReadyQueueCoordinator, 2A WorkerExecutor, 2B MessageInvoker,
3 runtime abstraction and no_std, 4 optimisation and final integration. Every phase ships
behind the Cargo feature `new-scheduler`, off by default until it is proven.
"""

ADR_TEMPLATE = """\
# ADR-NNNN: Title

- Status: proposed | accepted | superseded
- Date: YYYY-MM-DD

## Context

## Decision

## Consequences
"""

ADR_0001 = """\
# ADR-0001: Refactor the scheduler behind a feature flag

- Status: accepted
- Date: 2025-09-08

## Context
The ready-queue scheduler does not scale to many workers.

## Decision
Refactor in phases behind the Cargo feature `new-scheduler`.

## Consequences
Every phase can be rolled back by turning the flag off and reverting its merge.
"""

README_MD = """\
# actor-framework

An actor framework for Rust: actor cells, mailboxes and a ready-queue scheduler.
Build with `cargo build`; benchmarks with `cargo bench --features std`.
"""

POC_RS = """\
//! PoC only: a coordinator sketch, never merged.
pub struct CoordinatorSketch;
"""


# ---------------------------------------------------------------- building the history


class _Git:
    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.day = 0
        self.env = {
            **os.environ,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Aiko Tanaka",
            "GIT_AUTHOR_EMAIL": "aiko@example.com",
            "GIT_COMMITTER_NAME": "Aiko Tanaka",
            "GIT_COMMITTER_EMAIL": "aiko@example.com",
        }

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=self.repo, env=self._dated(), check=True,
            capture_output=True, text=True,
        )
        return out.stdout.strip()

    def _dated(self) -> dict[str, str]:
        # One commit a day from 2025-09-01, so dates read like a real project's.
        stamp = (START_DATE + timedelta(days=self.day)).isoformat()
        return {**self.env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}

    def commit(self, files: dict[str, str], message: str, delete: tuple[str, ...] = ()) -> str:
        for rel, text in files.items():
            path = self.repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            if rel.endswith((".sh", "actor_system.py")):
                path.chmod(0o755)
        for rel in delete:
            (self.repo / rel).unlink()
        self("add", "-A")
        self("commit", "-q", "-m", message)
        self.day += 1
        return self("rev-parse", "HEAD")

    def merge(self, branch: str, message: str) -> str:
        self("merge", "-q", "--no-ff", "-m", message, branch)
        self.day += 1
        return self("rev-parse", "HEAD")


def _phase_branch(git: _Git, branch: str, commits: list[tuple[dict[str, str], str]], merge_message: str) -> str:
    git("checkout", "-q", "-b", branch, MAIN_BRANCH)
    for files, message in commits:
        git.commit(files, message)
    git("checkout", "-q", MAIN_BRANCH)
    return git.merge(branch, merge_message)


def create_sample_workspace(root: Path) -> SampleWorkspace:
    """Create `root/actor-framework` (a clone) and `root/origin.git` (its bare remote)."""
    root = Path(root).resolve()
    repo, origin = root / "actor-framework", root / "origin.git"
    if repo.exists() or origin.exists():
        raise FileExistsError(
            f"{root} already holds a sample workspace; choose an empty folder (--dir PATH)"
        )
    repo.mkdir(parents=True)
    git = _Git(repo)
    git("init", "-q", "-b", MAIN_BRANCH)
    git("config", "user.name", "Aiko Tanaka")
    git("config", "user.email", "aiko@example.com")

    core = "modules/actor-core"
    git.commit({
        "Cargo.toml": ROOT_CARGO,
        ".cargo/config.toml": CARGO_CONFIG,
        ".gitignore": GITIGNORE,
        "README.md": README_MD,
        f"{core}/Cargo.toml": actor_core_manifest('["std"]', with_flag=False),
        f"{core}/src/lib.rs": actor_core_lib(),
        f"{core}/src/mailbox.rs": MAILBOX_RS,
        f"{core}/src/scheduler/mod.rs": SCHEDULER_MOD_BEFORE,
        f"{core}/src/scheduler/ready_queue_scheduler.rs": READY_QUEUE_SCHEDULER_RS,
        f"{core}/src/api/mod.rs": API_MOD_RS,
        f"{core}/src/api/actor_cell.rs": ACTOR_CELL_BEFORE,
        "modules/actor-utils/Cargo.toml": ACTOR_UTILS_MANIFEST,
        "modules/actor-utils/src/lib.rs": ACTOR_UTILS_LIB,
        "config/actor_system.toml": actor_system_toml("ready-queue-scheduler", 4, 32),
        ".github/workflows/ci.yml": ci_yml(no_std=False),
        "scripts/deploy.sh": DEPLOY_SH,
        "service/actor_system.py": SERVICE_PY,
    }, "Initial actor-core workspace")
    git.commit({
        f"{core}/benches/mailbox_throughput.rs": MAILBOX_BENCH,
        f"{core}/benches/scheduler_latency.rs": SCHEDULER_BENCH,
    }, "Add mailbox_throughput and scheduler_latency benches")
    git.commit({"docs/adr/template.md": ADR_TEMPLATE, "docs/adr/0001-scheduler-refactor-behind-flag.md": ADR_0001},
               "docs: ADR template and ADR-0001")
    git.commit({
        "benchmarks/baseline_before_refactor.md": BASELINE_MD,
        "docs/design/actor_scheduler_refactor.md": DESIGN_MD,
        f"{core}/Cargo.toml": actor_core_manifest('["std"]', with_flag=True),
    }, "Phase 0 start: record the benchmark baseline and declare the new-scheduler flag")

    # The PoC of Phase 0 stays on its own branch, never merged.
    git("checkout", "-q", "-b", POC_BRANCH)
    git.commit({f"{core}/src/poc/coordinator_sketch.rs": POC_RS}, "PoC: ReadyQueueCoordinator sketch")
    git.commit({f"{core}/src/poc/NOTES.md": "Fairness per shard looks promising.\n"}, "PoC: notes on fairness")
    git("checkout", "-q", MAIN_BRANCH)

    git.commit({"docs/implementation/phase1_implementation_guide.md":
                "# Phase 1 implementation guide\n\nIntroduce ReadyQueueCoordinator behind `new-scheduler`.\n"},
               "docs: Phase 1 implementation guide for ReadyQueueCoordinator")
    _phase_branch(git, "refactor/ready-queue-coordinator", [
        ({f"{core}/src/scheduler/ready_queue_coordinator.rs": READY_QUEUE_COORDINATOR_RS},
         "Add ReadyQueueCoordinator with fairness accounting"),
        ({f"{core}/src/scheduler/mod.rs": SCHEDULER_MOD_PHASE1},
         "Select ReadyQueueCoordinator when new-scheduler is on"),
    ], "Merge pull request #12 from acme/refactor/ready-queue-coordinator\n\n"
       "Phase 1: integrate ReadyQueueCoordinator behind the new-scheduler flag")
    git.commit({"config/actor_system.toml": actor_system_toml("ready-queue-coordinator", 4, 32)},
               "config: ready-queue-coordinator settings (Phase 1 follow-up)")
    git.commit({"docs/features.md": "# Features\n\n- `std`\n- `new-scheduler`: ReadyQueueCoordinator\n"},
               "test: document ReadyQueueCoordinator feature matrix")

    _phase_branch(git, "refactor/worker-executor", [
        ({f"{core}/src/executor.rs": EXECUTOR_RS}, "Add WorkerExecutor"),
        ({f"{core}/src/lib.rs": actor_core_lib(executor=True)}, "Export the executor module"),
    ], "Merge pull request #15 from acme/refactor/worker-executor\n\n"
       "Phase 2A: run actors on WorkerExecutor worker tasks")
    git.commit({"config/actor_system.toml": actor_system_toml("worker-executor", 8, 64)},
               "config: switch production to worker-executor (Phase 2A rollout)")

    _phase_branch(git, "refactor/message-invoker", [
        ({f"{core}/src/api/message_invoker.rs": MESSAGE_INVOKER_RS, f"{core}/src/api/mod.rs": API_MOD_PHASE2B},
         "Add MessageInvoker with a middleware chain"),
        ({f"{core}/src/api/actor_cell.rs": ACTOR_CELL_PHASE2B}, "ActorCell delegates to MessageInvoker"),
    ], "Merge pull request #18 from acme/refactor/message-invoker\n\n"
       "Phase 2B: separate MessageInvoker from ActorCell")
    git.commit({"README.md": README_MD + "\nSee docs/design for the scheduler refactor.\n"},
               "README: link the design notes")

    _phase_branch(git, "refactor/runtime-abstraction", [
        ({f"{core}/src/runtime.rs": RUNTIME_RS, f"{core}/src/lib.rs": actor_core_lib(executor=True, runtime=True)},
         "Add a runtime abstraction over Tokio and Embassy"),
        ({".github/workflows/ci.yml": ci_yml(no_std=True)}, "CI: build for thumbv7em-none-eabihf"),
    ], "Merge pull request #21 from acme/refactor/runtime-abstraction\n\n"
       "Phase 3: runtime abstraction and no_std support")

    _phase_branch(git, "refactor/final-optimization", [
        ({f"{core}/src/lock_free.rs": LOCK_FREE_RS,
          f"{core}/src/lib.rs": actor_core_lib(executor=True, runtime=True, lock_free=True)},
         "Lock-free ready counters"),
    ], "Merge pull request #24 from acme/refactor/final-optimization\n\n"
       "Phase 4: lock-free optimisations and final integration")
    git.commit({f"{core}/Cargo.toml": actor_core_manifest('["std", "new-scheduler"]', with_flag=True)},
               "Phase 4: enable new-scheduler by default")
    git.commit({"CHANGELOG.md": "# Changelog\n\n## 0.4.0\n- Scheduler refactor (phases 1-4).\n"},
               "Add CHANGELOG for 0.4.0")
    git.commit({"modules/actor-utils/src/lib.rs": ACTOR_UTILS_LIB.replace("Small helpers", "Helpers")},
               "actor-utils: tidy docs")

    subprocess.run(["git", "init", "-q", "--bare", "-b", MAIN_BRANCH, str(origin)], check=True)
    git("remote", "add", "origin", str(origin))
    git("push", "-q", "origin", MAIN_BRANCH, POC_BRANCH)
    git("branch", "-q", f"--set-upstream-to=origin/{MAIN_BRANCH}", MAIN_BRANCH)
    # Phase branches were deleted after merging, as on a hosted forge.
    for branch in ("refactor/ready-queue-coordinator", "refactor/worker-executor", "refactor/message-invoker",
                   "refactor/runtime-abstraction", "refactor/final-optimization"):
        git("branch", "-q", "-D", branch)
    return SampleWorkspace(root=root, repo=repo, origin=origin)
