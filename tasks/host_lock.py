"""The host-level lock of a target, and the target's key and name — without Prefect.

A file per target in `concurrency.host_lock_dir`, held with flock(2): two writers on one host exclude each other
whatever Prefect server they talk to, and the kernel drops it when its process dies. flows/target_lock.py takes it
first for a rollback, then Prefect's limit; the alert receiver's flag-off first (tasks/flag_off_first.py) takes it
alone — this module imports nothing of Prefect, so that path can run before Prefect is even loaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from actor_rollback.runbook.config import RollbackConfig
from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.tasks.git_repo import open_workspace, run_git


class TargetBusy(StepError):
    failure = "busy"  # locked out is not bad input: the outcome says busy (exit 4), naming the holder


def _remote_url(repo: Path, cfg: RollbackConfig) -> str:
    """The remote's URL (normalised) identifies the target; a clone without that remote, its path."""
    try:
        url = run_git(open_workspace(repo), "remote", "get-url", cfg.remote)
    except Exception:
        url = str(Path(repo).resolve())
    return re.sub(r"(\.git)?/*$", "", url.strip())


def target_key(repo: Path, cfg: RollbackConfig) -> str:
    return hashlib.sha256(_remote_url(repo, cfg).lower().encode()).hexdigest()[:16]


def target_name(repo: Path, cfg: RollbackConfig) -> str:
    """The target as people name it, for tags and events: `github.com/org/repo` (no scheme, no credentials)."""
    url = re.sub(r"^[a-z][a-z0-9+.-]*://", "", _remote_url(repo, cfg), flags=re.I)
    url = re.sub(r"^[^@/]*@", "", url)  # user:token@ or git@
    url = re.sub(r"^([^/:]+):(?!\d+/)", r"\1/", url)  # scp-like host:org/repo
    return url.lower()[-120:]


class HostLock:
    """flock(2) on `<dir>/<target key>.lock`; the holder writes who it is into the file for those who wait."""

    def __init__(self, folder: Path, key: str) -> None:
        self.path = folder / f"{key}.lock"
        self.fd: int | None = None

    def try_acquire(self, holder: dict) -> bool:
        try:
            self.path.parent.mkdir(mode=0o1777, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)  # never inherited by commands
        except OSError as exc:
            raise BadInputError(f"cannot open the host lock {self.path} ({exc.strerror}); make its folder writable "
                                "or set concurrency.host_lock_dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd
        return True

    def holder(self) -> dict:
        try:
            held = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return held if isinstance(held, dict) else {}

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


@contextmanager
def holding_host_lock(repo: Path, cfg: RollbackConfig, incident: str, purpose: str,
                      wait_seconds: float = 0.0) -> Iterator[None]:
    """The host lock alone, within `wait_seconds` or not at all (TargetBusy): for the work that must not wait for
    Prefect (F.1's flag-off first). Across hosts, the push is a compare-and-swap (fetch and replay, never force)."""
    lock = HostLock(Path(cfg.concurrency.host_lock_dir), target_key(repo, cfg))
    holder = {"incident": incident, "flow_run_id": None, "pid": os.getpid(), "server": purpose}
    deadline = time.monotonic() + wait_seconds
    while not lock.try_acquire(holder):
        if time.monotonic() >= deadline:
            raise TargetBusy(f"another rollback holds {repo} on this host ({lock.holder().get('incident', '?')})")
        time.sleep(0.05)  # an issue file's commit holds it for a moment: the flag goes off right after
    try:
        yield
    finally:
        lock.release()
