"""Each run's own git work tree: every write to a target happens in it, never in the shared clone.

A run (under the target's lock) works in `<clone's git dir>/actor-rollback/work/<incident>` on the branch
`actor-rollback/<incident>`, made from the remote's branch. A person's dirty files or unpushed commits in the
shared clone, or another incident's half-finished run, therefore never block a Critical flag-off. A run whose work
is all on the remote removes its tree; one that is not (a crash, a conflict, a refused push) keeps it for the rerun
of the same incident, which goes on there, and says how to finish or drop it.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from git import GitCommandError

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.git_repo import _has_ref, _stderr, dirty_paths, fetch, open_workspace, remote_ref, run_git

WORK_FOLDER = ("actor-rollback", "work")


@dataclass(frozen=True)
class WorkTree:
    clone: Path
    path: Path
    branch: str
    reused: bool  # a rerun of the same incident going on where its last run stopped

    def drop_command(self) -> str:
        return (f"git -C {self.clone} worktree remove --force {self.path} && "
                f"git -C {self.clone} branch -D {self.branch}")


def git_common_dir(repo: Path) -> Path:
    """The clone's own .git folder, also when `repo` is one of its work trees."""
    return Path(run_git(open_workspace(repo), "rev-parse", "--path-format=absolute", "--git-common-dir"))


def _registered(clone, path: Path) -> bool:
    listing = run_git(clone, "worktree", "list", "--porcelain")
    return any(line == f"worktree {path}" for line in listing.splitlines())


def open_run_work_tree(ctx: StepContext, purpose: str = "") -> WorkTree:
    """The incident's work tree: the one its last run left (a rerun goes on there), else a new one made from the
    remote's branch as last fetched (the first change step fetches and fast-forwards it). `purpose` names a
    second tree of the incident (its files: issue, postmortem, ADR), apart from a rollback's unpushed commits."""
    clone = open_workspace(ctx.repo)
    name = f"{ctx.incident}+{purpose}" if purpose else ctx.incident  # '+' is never in an incident id
    path = git_common_dir(ctx.repo).joinpath(*WORK_FOLDER, name)
    branch = f"actor-rollback/{name}"
    if path.is_dir() and _registered(clone, path):
        return WorkTree(ctx.repo, path, branch, reused=True)
    run_git(clone, "worktree", "prune")  # a tree whose folder was deleted by hand
    start = remote_ref(ctx)
    if not _has_ref(clone, start):
        fetch(clone, ctx)
        if not _has_ref(clone, start):
            raise BadInputError(f"the remote {ctx.cfg.remote} has no branch {ctx.cfg.main_branch}; "
                                "check main_branch/remote in the config")
    kept = _has_ref(clone, f"refs/heads/{branch}")  # its tree was removed by hand: the branch still holds its commits
    try:
        if kept:
            run_git(clone, "worktree", "add", "--quiet", str(path), branch)
        else:
            run_git(clone, "worktree", "add", "--quiet", "--no-track", "-b", branch, str(path), start)
    except GitCommandError as exc:
        raise BadInputError(f"could not make the run's work tree {path}: {_stderr(exc)}; free the disk or remove "
                            f"it (git -C {ctx.repo} worktree remove --force {path}) and rerun") from None
    return WorkTree(ctx.repo, path, branch, reused=kept)


def unpublished(ctx: StepContext, tree: WorkTree) -> tuple[list[str], list[str]]:
    """What only the work tree has: commits on no branch of the remote (as last fetched), and changed files."""
    repo = open_workspace(tree.path)
    commits = run_git(repo, "rev-list", "HEAD", "--not", f"--remotes={ctx.cfg.remote}").split()
    return commits, dirty_paths(repo)


def leftover_note(ctx: StepContext, tree: WorkTree, commits: list[str], dirty: list[str]) -> str:
    what = [f"{len(commits)} unpushed commit(s) ({', '.join(c[:10] for c in commits[:5])})"] if commits else []
    what += [f"uncommitted changes in {', '.join(dirty[:5])}"] if dirty else []
    return (f"work tree kept: {tree.path} (branch {tree.branch}) has {' and '.join(what)}; finish it by rerunning "
            f"incident {ctx.incident} (it goes on there), or drop it: {tree.drop_command()}")


def close_run_work_tree(ctx: StepContext, tree: WorkTree) -> list[str]:
    """Remove the tree when everything in it is on the remote and bring the shared clone's branch up to it (only a
    fast-forward of a clean clone on that branch); otherwise keep it. Returns what a person should know."""
    commits, dirty = unpublished(ctx, tree)
    if commits or dirty:
        return [leftover_note(ctx, tree, commits, dirty)]
    clone = open_workspace(tree.clone)
    run_git(clone, "worktree", "remove", "--force", str(tree.path))  # its untracked files are the run's own output
    run_git(clone, "branch", "-D", "--quiet", tree.branch)
    return _fast_forward_clone(ctx, clone)


def _fast_forward_clone(ctx: StepContext, clone) -> list[str]:
    main, upstream = ctx.cfg.main_branch, remote_ref(ctx)
    if clone.head.is_detached or clone.active_branch.name != main:
        return []
    if run_git(clone, "rev-list", "--count", f"HEAD..{upstream}") == "0":
        return []
    try:
        run_git(clone, "merge", "--ff-only", "--quiet", upstream)
    except GitCommandError as exc:
        return [f"the clone {clone.working_tree_dir} was left as it is ({main} not fast-forwarded to {upstream}: "
                f"{_stderr(exc)[:200]}); `git pull --ff-only` there when its own changes allow"]
    return []


@contextmanager
def working_in_own_tree(ctx: StepContext, log=print, purpose: str = "") -> Iterator[WorkTree]:
    """Switch `ctx` to the run's own work tree for the block (taken under the target's lock), and back."""
    tree = open_run_work_tree(ctx, purpose)
    if tree.reused:
        log(f"going on in the work tree {tree.path} that an earlier run of {ctx.incident} left")
    before = (ctx.repo, ctx.clone, ctx.work_branch)
    ctx.repo, ctx.clone, ctx.work_branch = tree.path, before[0], tree.branch
    try:
        yield tree
    finally:
        ctx.repo, ctx.clone, ctx.work_branch = before
        for line in close_run_work_tree(ctx, tree):
            log(line)
