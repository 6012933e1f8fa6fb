"""A drill's sandbox: the repository and its remote copied, so a rehearsed rollback touches nothing real.

`<drills dir>/<name>/` holds `remote.git` (a bare copy of every branch of the real remote, read once) and `work/`
(a clone of that copy, its remote of the configured name pointing at it): the phase flow's commits and pushes land
in the copy. Git objects are borrowed from the real clone (`--reference-if-able`, read-only), so a copy of a large
repository costs a checkout, not a download. A sandbox is named after its drill and records the process that owns
it; the next drill removes any sandbox whose owner is gone (a drill killed with SIGKILL leaves one behind).

`fingerprint` is what "touches nothing real" is checked against: the clone's refs, HEAD, index and status, and
the real remote's refs, before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from actor_rollback.runbook.config import RollbackConfig
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.tasks.commands import run_bounded
from actor_rollback.tasks.pids import pid_alive
from actor_rollback.tasks.supervise import start_ticks

OWNER = "owner.json"
GIT_TIMEOUT = 600


def drills_dir(cfg: RollbackConfig) -> Path:
    if cfg.drill.sandbox_dir:
        return Path(cfg.drill.sandbox_dir).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "actor-rollback" / "drills"


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}  # status writes no index
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT, env=env)
    if done.returncode != 0:
        raise BadInputError(f"git {' '.join(args[:3])}… failed: {done.stderr.strip()[-400:]}")
    return done.stdout


def _owner_alive(folder: Path) -> bool:
    try:
        owner = json.loads((folder / OWNER).read_text())
    except (OSError, ValueError):
        return False
    pid = int(owner.get("pid", 0))
    return pid_alive(pid) and start_ticks(pid) == owner.get("started")  # a reused pid has another start


@dataclass(frozen=True)
class Sandbox:
    root: Path
    remote: Path  # the bare copy of the real remote: every push of the drill lands here
    work: Path  # the drill's clone of it, where the phase flow runs

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def sweep_stale(folder: Path) -> list[str]:
    """Remove the sandboxes whose drill is gone (killed, or its host restarted); their names."""
    removed = []
    if not folder.is_dir():
        return removed
    for sandbox in sorted(folder.iterdir()):
        if sandbox.is_dir() and not _owner_alive(sandbox):
            shutil.rmtree(sandbox, ignore_errors=True)
            removed.append(sandbox.name)
    return removed


def remote_url(repo: Path, cfg: RollbackConfig) -> str:
    try:
        return _git("remote", "get-url", cfg.remote, cwd=repo).strip()
    except BadInputError:
        raise BadInputError(f"{repo} has no remote {cfg.remote!r} to copy for the drill; set `remote` in the config "
                            "to the remote a rollback pushes to") from None


def make_sandbox(repo: Path, cfg: RollbackConfig, name: str) -> Sandbox:
    """Copy the real remote (read-only: a clone) and clone the copy; the real clone's objects are borrowed."""
    root = drills_dir(cfg) / name
    if root.exists():
        raise BadInputError(f"a sandbox {root} exists already: another drill with the id {name} is running; "
                            "give this one another --incident")
    root.mkdir(parents=True)
    (root / OWNER).write_text(json.dumps({"pid": os.getpid(), "started": start_ticks(os.getpid())}))
    sandbox = Sandbox(root, root / "remote.git", root / "work")
    try:
        reference = _git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=repo).strip()
        # every branch and tag of the remote (a baseline tag, the Phase 0 branch), read once
        _clone(root, "--bare", f"--reference-if-able={reference}", remote_url(repo, cfg), str(sandbox.remote))
        _clone(root, f"--reference-if-able={reference}", "--origin", cfg.remote, "--branch", cfg.main_branch,
               str(sandbox.remote), str(sandbox.work))
        _git("config", "user.name", "actor-rollback drill", cwd=sandbox.work)
        _git("config", "user.email", "actor-rollback@localhost", cwd=sandbox.work)
    except BaseException:
        sandbox.remove()
        raise
    return sandbox


def _clone(where: Path, *args: str) -> None:
    """`git clone` run bounded: ended with its whole tree at the timeout or when the drill dies. It reads the remote
    a rollback pushes to, so GITHUB_TOKEN (which a credential helper may read for it) stays; no other secret does."""
    token = {"GITHUB_TOKEN": os.environ["GITHUB_TOKEN"]} if os.environ.get("GITHUB_TOKEN") else {}
    done = run_bounded(shlex.join(["git", "clone", "--quiet", *args]), where, GIT_TIMEOUT,
                       env={"GIT_TERMINAL_PROMPT": "0", **token})
    if done.returncode != 0:
        said = " | ".join(done.tail[-3:]) or ("timed out" if done.returncode is None else f"exit {done.returncode}")
        raise BadInputError(f"git clone {args[-2]} failed: {said}")


def fingerprint(repo: Path, cfg: RollbackConfig) -> dict[str, str]:
    """What must be the same after a drill: the clone's refs and HEAD, its index and status, the remote's refs."""
    git_dir = Path(_git("rev-parse", "--path-format=absolute", "--git-dir", cwd=repo).strip())
    index = git_dir / "index"
    return {
        "clone refs": _digest(_git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo)),
        "clone HEAD": _git("symbolic-ref", "-q", "HEAD", cwd=repo).strip() if _is_symbolic(repo) else
        _git("rev-parse", "HEAD", cwd=repo).strip(),
        "clone index": _digest(index.read_bytes() if index.exists() else b""),
        "clone status": _digest(_git("status", "--porcelain=v1", "-z", "--untracked-files=all", cwd=repo)),
        "remote refs": _remote_refs(repo, cfg),
    }


def _remote_refs(repo: Path, cfg: RollbackConfig) -> str:
    try:
        return _digest(_git("ls-remote", "--heads", "--tags", cfg.remote, cwd=repo))
    except (BadInputError, subprocess.TimeoutExpired) as exc:  # the drill then fails copying it, and says why
        return f"unreadable ({str(exc)[:200]})"


def _is_symbolic(repo: Path) -> bool:
    return subprocess.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=repo, capture_output=True, timeout=60).returncode == 0


def _digest(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]
