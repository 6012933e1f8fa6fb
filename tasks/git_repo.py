"""Git side of the rollback: find the phase merge, revert it, push — on the real repository.

Safety rules: refuse a dirty work tree or a detached HEAD; work on the branch as the remote
has it; never push commits that are not rollback commits; never force; a failed revert or
replay is aborted so the tree is exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git
from git import GitCommandError, Repo

from actor_rollback.runbook.errors import BadInputError, ConflictError, StepError, TransientError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.paths import writable



@dataclass(frozen=True)
class Commit:
    sha: str
    date: str
    subject: str

    def line(self) -> str:
        return f"{self.sha[:10]} {self.date} {self.subject}"


def open_workspace(path: Path | str) -> Repo:
    try:
        return Repo(Path(path), search_parent_directories=False)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError):
        raise BadInputError(f"{path} is not a git repository; pass --repo with the workspace's clone") from None


def run_git(repo: Repo, *args: str) -> str:
    return repo.git.execute(["git", *args], with_extended_output=False, strip_newline_in_stdout=True)


def _log(repo: Repo, *args: str) -> list[Commit]:
    out = run_git(repo, "log", "--format=%H%x1f%ad%x1f%s", "--date=short", *args)
    return [Commit(*line.split("\x1f", 2)) for line in out.splitlines() if line]


def files_at(repo: Repo, ref: str, folder: str) -> dict[str, str]:
    """The files of `folder` at `ref` (name → text); none when the folder is not there."""
    try:
        names = run_git(repo, "ls-tree", "--name-only", f"{ref}:{folder.strip('/')}").split()
    except GitCommandError:
        return {}
    return {name: run_git(repo, "show", f"{ref}:{folder.strip('/')}/{name}") for name in names}


def dirty_paths(repo: Repo) -> list[str]:
    """Tracked files with uncommitted changes (staged or not); untracked files are not at risk."""
    out = run_git(repo, "status", "--porcelain=v1", "--untracked-files=no")
    return [line[3:] for line in out.splitlines() if line.strip()]


def head_text(repo: Repo, rel: str) -> str | None:
    """A file's bytes as committed at HEAD (None when it is not there)."""
    try:
        return repo.git.execute(["git", "show", f"HEAD:{rel}"], strip_newline_in_stdout=False)
    except GitCommandError:
        return None


def ensure_safe_to_change(repo: Repo, ctx: StepContext, resumable: dict[str, str] | None = None) -> None:
    """Refuse states in which a rollback could lose someone's work.

    `resumable` maps files to the exact text this step would write: a tree dirty only with that
    text is an interrupted run of the same step, which may go on and commit it.
    """
    expected = ctx.work_branch or ctx.cfg.main_branch  # the run's own work tree is on a branch of its own
    if repo.head.is_detached:
        raise BadInputError(
            f"{ctx.repo}: HEAD is detached; check out {expected} (git checkout {expected}) and rerun"
        )
    branch = repo.active_branch.name
    if branch != expected:
        raise BadInputError(
            f"{ctx.repo}: on branch {branch}, but the rollback works on {expected}; git checkout {expected} and rerun"
        )
    if any((Path(repo.git_dir) / name).exists() for name in ("MERGE_HEAD", "REVERT_HEAD", "rebase-merge")):
        raise BadInputError(f"{ctx.repo}: a merge or revert is in progress; finish or abort it (git revert --abort)")
    resumable = resumable or {}
    dirty = [p for p in dirty_paths(repo)
             if not (p in resumable and (ctx.repo / p).exists() and (ctx.repo / p).read_text() == resumable[p])]
    if dirty:
        raise BadInputError(
            f"{ctx.repo}: the work tree has uncommitted changes in {', '.join(dirty)}; "
            "commit or stash them (git stash) and rerun — the rollback never touches a dirty tree"
        )


def fetch(repo: Repo, ctx: StepContext) -> None:
    try:
        run_git(repo, "fetch", "--quiet", ctx.cfg.remote)
    except GitCommandError as exc:
        raise TransientError(f"git fetch {ctx.cfg.remote} failed: {_stderr(exc)}") from None


def _stderr(exc: GitCommandError) -> str:
    return " ".join(str(exc.stderr or exc).strip().replace("stderr:", "").split())[:500]


def remote_ref(ctx: StepContext) -> str:
    return f"{ctx.cfg.remote}/{ctx.cfg.main_branch}"


def unpushed_commits(repo: Repo, ctx: StepContext) -> list[str]:
    out = run_git(repo, "rev-list", "--reverse", f"{remote_ref(ctx)}..HEAD")
    return out.split()


def rollback_commit_owner(repo: Repo, ctx: StepContext, sha: str) -> tuple[str, str] | None:
    """(incident, runbook step) of a commit this tool made — by the configured author, with parsed (not merely
    mentioned) `Rollback-Incident:` and `Runbook-Step:` trailers, the same parser as `git interpret-trailers
    --parse` — or None for anyone else's commit."""
    out = run_git(repo, "log", "-1", "--format=%an <%ae>%x1f%(trailers:key=Rollback-Incident,valueonly,separator=%x1e)"
                  "%x1f%(trailers:key=Runbook-Step,valueonly,separator=%x1e)", sha)
    author, _, rest = out.partition("\x1f")
    incident_values, _, step_values = rest.partition("\x1f")
    incidents = [value.strip() for value in incident_values.split("\x1e") if value.strip()]
    steps = [value.strip() for value in step_values.split("\x1e") if value.strip()]
    if author != ctx.cfg.git.commit_author or len(incidents) != 1:
        return None
    return incidents[0], steps[0] if len(steps) == 1 else ""


def first_change_of_incident(repo: Repo, ctx: StepContext) -> datetime | None:
    """When this incident first changed the target: the commit time of its oldest commit on the remote's branch
    (this tool's, with the incident's trailer) — None when it changed nothing there (A.4 counts from here)."""
    try:
        out = run_git(repo, "log", remote_ref(ctx), "--fixed-strings", f"--grep=Rollback-Incident: {ctx.incident}",
                      "--format=%H %cI", "-n", "50")
    except GitCommandError:
        return None
    mine = [line.split()[1] for line in out.splitlines() if line and is_rollback_commit(repo, ctx, line.split()[0])]
    return datetime.fromisoformat(mine[-1]) if mine else None


def is_rollback_commit(repo: Repo, ctx: StepContext, sha: str) -> bool:
    """A commit this tool made for this incident."""
    owner = rollback_commit_owner(repo, ctx, sha)
    return owner is not None and owner[0] == ctx.incident


def sync_with_remote(repo: Repo, ctx: StepContext, resumable: dict[str, str] | None = None) -> list[str]:
    """Bring the branch up to date with the remote, keeping only our own unpushed rollback commits.

    Returns evidence lines. Local commits that are not rollback commits are refused: pushing
    them along with the rollback would publish someone's unreviewed work.
    """
    ensure_safe_to_change(repo, ctx, resumable)
    fetch(repo, ctx)
    upstream = remote_ref(ctx)
    try:
        run_git(repo, "rev-parse", "--verify", "--quiet", upstream)
    except GitCommandError:
        raise BadInputError(f"the remote {ctx.cfg.remote} has no branch {ctx.cfg.main_branch}; check main_branch/remote in the config") from None
    ahead = unpushed_commits(repo, ctx)
    owners = {sha: rollback_commit_owner(repo, ctx, sha) for sha in ahead}
    foreign = [sha for sha in ahead if owners[sha] is None or owners[sha][0] != ctx.incident]
    if foreign:
        raise BadInputError(
            f"{ctx.work_branch or ctx.cfg.main_branch} has {len(foreign)} local commit(s) that are not on {upstream} and are not "
            f"this incident's rollback commits ({', '.join(s[:10] for s in foreign)}); push or move them to another "
            "branch first — a rollback never publishes unreviewed work"
        )
    behind = run_git(repo, "rev-list", "--count", f"HEAD..{upstream}")
    branch = ctx.work_branch or ctx.cfg.main_branch
    if behind == "0":
        return [f"{branch} is up to date with {upstream}"]
    if not ahead:
        run_git(repo, "merge", "--ff-only", "--quiet", upstream)
        return [f"fast-forwarded {branch} by {behind} commit(s) to {upstream}"]
    replay_onto_remote(repo, ctx)
    return [f"replayed {len(ahead)} unpushed rollback commit(s) onto {upstream} ({behind} new remote commit(s))"]


def replay_onto_remote(repo: Repo, ctx: StepContext) -> None:
    before = repo.head.commit.hexsha
    try:
        run_git(repo, "rebase", "--quiet", remote_ref(ctx))
    except GitCommandError as exc:
        conflicts = run_git(repo, "diff", "--name-only", "--diff-filter=U").split()
        run_git(repo, "rebase", "--abort")
        if repo.head.commit.hexsha != before:
            run_git(repo, "reset", "--hard", before)
        raise ConflictError(
            f"the remote moved and the rollback commits do not apply on it (conflicts: "
            f"{', '.join(conflicts) or _stderr(exc)}); the branch is as before: resolve by hand"
        ) from None


# ---------------------------------------------------------------- P1.2a find the phase merge


def _describe_find_merge(spec, cfg, phase) -> list[str]:
    greps = " ".join(f'--grep="{pattern}"' for pattern in cfg.phase(phase).merge_patterns)
    return [f"git fetch {cfg.remote}",
            f"git log {cfg.main_branch} --first-parent --merges -i --fixed-strings {greps}  (exactly one match)"]


@declare_step("find-merge", describe=_describe_find_merge)
def find_phase_merge(ctx: StepContext) -> StepResult:
    """The phase's merge: merge commits on the first-parent history matching any pattern."""
    repo = open_workspace(ctx.repo)
    patterns = ctx.phase_cfg.merge_patterns
    if not patterns:
        raise BadInputError(f"phase {ctx.phase} has no merge_patterns in the config; it was never merged")
    if not ctx.dry_run:
        fetch(repo, ctx)
    branch = remote_ref(ctx) if _has_ref(repo, remote_ref(ctx)) else ctx.cfg.main_branch
    greps = [f"--grep={p}" for p in patterns]
    shown = " ".join(f'--grep="{p}"' for p in patterns)
    if ctx.merge_override:
        return _chosen_merge(repo, ctx, branch)
    merges = _log(repo, branch, "--first-parent", "--merges", "-i", "--fixed-strings", *greps)
    if len(merges) == 1:
        merge = merges[0]
        return StepResult(
            id=ctx.step_id, name="find-merge", status="done",
            evidence=[f"git log {branch} --first-parent --merges -i {shown}", f"merge: {merge.line()}"],
            data={"merge": merge.sha},
        )
    if not merges:
        near = _log(repo, branch, "--no-merges", "-i", "--fixed-strings", "-n", "5", *greps)
        hint = "; nearest non-merge matches: " + " | ".join(c.line() for c in near) if near else ""
        raise BadInputError(
            f"no merge commit on {branch} matches {shown}{hint}. If the phase was merged with another message, "
            "pass --merge SHA; if it was never merged there is nothing to revert"
        )
    raise BadInputError(
        f"{len(merges)} merge commits on {branch} match {shown}: "
        + " | ".join(c.line() for c in merges)
        + ". Choose one with --merge SHA"
    )


def _has_ref(repo: Repo, ref: str) -> bool:
    try:
        run_git(repo, "rev-parse", "--verify", "--quiet", ref)
        return True
    except GitCommandError:
        return False


def _chosen_merge(repo: Repo, ctx: StepContext, branch: str) -> StepResult:
    try:
        sha = run_git(repo, "rev-parse", "--verify", f"{ctx.merge_override}^{{commit}}")
    except GitCommandError:
        raise BadInputError(f"--merge {ctx.merge_override}: no such commit in {ctx.repo}") from None
    parents = run_git(repo, "rev-list", "--parents", "-n", "1", sha).split()[1:]
    if len(parents) < 2:
        raise BadInputError(f"--merge {ctx.merge_override}: {sha[:10]} is not a merge commit; git revert -m 1 needs one")
    first_parent = run_git(repo, "rev-list", "--first-parent", branch).split()
    if sha not in first_parent:
        raise BadInputError(f"--merge {ctx.merge_override}: {sha[:10]} is not on the first-parent history of {branch}")
    commit = _log(repo, "-1", sha)[0]
    return StepResult(id=ctx.step_id, name="find-merge", status="done",
                      evidence=[f"merge chosen with --merge: {commit.line()}"], data={"merge": sha})


# ---------------------------------------------------------------- P1.2b revert and push


def find_revert_of(repo: Repo, ctx: StepContext, sha: str) -> str | None:
    """The commit that reverted `sha` and is still in effect (its own revert would re-apply it)."""
    for commit in _log(repo, "HEAD", "--fixed-strings", f"--grep=This reverts commit {sha}"):
        undone = _log(repo, "HEAD", "--fixed-strings", f"--grep=This reverts commit {commit.sha}")
        if not undone:
            return commit.sha
    return None


@declare_step("revert", changes_target=True, describe=lambda spec, cfg, phase: [
    "git revert -m 1 <merge>  (skipped when 'This reverts commit <merge>' is already in the history)"])
def revert_merge(ctx: StepContext) -> StepResult:
    """`git revert -m 1 <merge>`, once: an existing revert of the merge means already done."""
    repo = open_workspace(ctx.repo)
    sha = ctx.facts.get("merge")
    if not sha:
        raise BadInputError("no merge to revert: the find-merge step did not run or found none (use --merge SHA)")
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="revert", status="planned",
                          evidence=[f"git revert -m 1 {sha[:10]}"], data={"merge": sha})
    evidence = sync_with_remote(repo, ctx)
    existing = find_revert_of(repo, ctx, sha)
    if existing:
        return StepResult(id=ctx.step_id, name="revert", status="already-done",
                          evidence=[*evidence, f"{existing[:10]} already reverts {sha[:10]}; not reverting twice"],
                          data={"merge": sha, "revert": existing})
    subject = run_git(repo, "log", "-1", "--format=%s", sha)
    before = repo.head.commit.hexsha
    try:
        run_git(repo, "revert", "-m", "1", "--no-commit", sha)
    except GitCommandError as exc:
        conflicts = run_git(repo, "diff", "--name-only", "--diff-filter=U").split()
        _abort_revert(repo, before)
        raise ConflictError(
            f"git revert -m 1 {sha[:10]} conflicts in {', '.join(conflicts) or _stderr(exc)}"
            f"{_changed_since(repo, sha, conflicts)}; the work tree is restored as it was. Resolve the conflict by "
            "hand (a later commit changed the same lines), or roll back the later phase first"
        ) from None
    if not run_git(repo, "diff", "--cached", "--name-only"):
        _abort_revert(repo, before)
        return StepResult(id=ctx.step_id, name="revert", status="already-done",
                          evidence=[*evidence, f"reverting {sha[:10]} changes nothing: its changes are already undone"],
                          data={"merge": sha})
    parent = run_git(repo, "rev-parse", f"{sha}^1")
    message = (
        f'Revert "{subject}"\n\nThis reverts commit {sha}, reversing\nchanges made to {parent}.\n\n'
        + ctx.commit_message(f"revert the phase {ctx.phase} merge")
    )
    try:
        _commit(repo, ctx, message)
    except BaseException:  # no REVERT_HEAD, no staged revert left behind: the tree as the step found it
        _abort_revert(repo, before)
        raise
    revert_sha = repo.head.commit.hexsha
    files = run_git(repo, "diff", "--stat", "--format=", f"{revert_sha}^", revert_sha).splitlines()
    return StepResult(id=ctx.step_id, name="revert", status="done",
                      evidence=[*evidence, f"git revert -m 1 {sha[:10]} → {revert_sha[:10]}", *files[-6:]],
                      data={"merge": sha, "revert": revert_sha})


def _changed_since(repo: Repo, merge: str, files: list[str]) -> str:
    """Which later commit last changed each conflicted file: what a person resolving it reads first."""
    found = []
    for path in files[:5]:
        line = run_git(repo, "log", "-1", "--format=%h %ad %s", "--date=short", f"{merge}..HEAD", "--", path)
        if line:
            found.append(f"{path} last changed after the merge by commit {line}")
    return f" ({'; '.join(found)})" if found else ""


def _abort_revert(repo: Repo, before: str) -> None:
    try:
        run_git(repo, "revert", "--abort")
    except GitCommandError:
        pass
    if repo.head.commit.hexsha != before or dirty_paths(repo):
        run_git(repo, "reset", "--hard", "--quiet", before)


def commit_files(ctx: StepContext, paths: list[str], summary: str) -> str:
    """Stage and commit `paths`; if the commit fails (a hook, signing, a full disk), the index is back as it was —
    the callers put the files' contents back."""
    repo = open_workspace(ctx.repo)
    head = repo.head.commit.hexsha
    try:
        run_git(repo, "add", "--", *paths)
        _commit(repo, ctx, ctx.commit_message(summary))
    except BaseException:
        if repo.head.commit.hexsha == head:
            tracked = [p for p in paths if head_text(repo, p) is not None]
            untracked = [p for p in paths if p not in tracked]
            if tracked:
                run_git(repo, "reset", "--quiet", head, "--", *tracked)
            if untracked:
                run_git(repo, "rm", "--cached", "--quiet", "--ignore-unmatch", "--", *untracked)
        raise
    return repo.head.commit.hexsha


def publish_new_files(ctx: StepContext, files: dict[str, str], summary: str) -> StepResult:
    """Commit the files that are not at HEAD yet and push like a rollback commit (never forced).

    A file already at HEAD is left alone — people may have edited it since — so a rerun changes
    nothing; a file written but not committed by an interrupted run is committed.
    """
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="publish", status="planned",
                          evidence=[f"commit {', '.join(files)} and push"])
    repo = open_workspace(ctx.repo)
    evidence = sync_with_remote(repo, ctx, resumable=files)
    new = {rel: text for rel, text in files.items() if head_text(repo, rel) is None}
    for rel in files:  # first: a dangling link "does not exist" and would be written through; a committed one
        writable(ctx.repo, rel)  # would be "already at HEAD"
    evidence += [f"{rel} is already at {repo.head.commit.hexsha[:10]}: left as it is" for rel in files if rel not in new]
    theirs = [rel for rel, text in new.items()
              if (ctx.repo / rel).exists() and (ctx.repo / rel).read_bytes() != text.encode()]
    if theirs:  # someone's uncommitted file (a hand-written postmortem): never overwritten, never committed
        raise BadInputError(f"{', '.join(theirs)} already exist(s), uncommitted and not written by actor-rollback for "
                            f"{ctx.incident}; nothing was written: commit or move it, then rerun")
    if new:
        created = [rel for rel in new if not (ctx.repo / rel).exists()]
        try:
            for rel, text in new.items():
                (ctx.repo / rel).parent.mkdir(parents=True, exist_ok=True)
                (ctx.repo / rel).write_text(text)
            sha = commit_files(ctx, list(new), summary)
        except BaseException:
            for rel in created:  # what this step created goes; nothing else was touched
                (ctx.repo / rel).unlink(missing_ok=True)
            raise
        evidence.append(f"{', '.join(new)} committed as {sha[:10]}")
    pushed = push_rollback(ctx)
    if pushed.status == "failed":
        return pushed
    return StepResult(id=ctx.step_id, name="publish", status="done" if new else "already-done",
                      evidence=[*evidence, *pushed.evidence], data={"published": ",".join(files)})


def _commit(repo: Repo, ctx: StepContext, message: str) -> None:
    author = ctx.cfg.git.commit_author
    name, email = re.fullmatch(r"(.+) <(.+)>", author).groups()  # validated by the config
    repo.git.execute(
        ["git", "-c", f"user.name={name}", "-c", f"user.email={email}", "commit", "--quiet", "--no-verify",
         "-m", message]
    )


def _describe_push(spec, cfg, phase) -> list[str]:
    target = cfg.main_branch if cfg.git.push == "direct" else "rollback/<incident>"
    return [f"git push {cfg.remote} HEAD:{target}  (on rejection: fetch, replay, retry up to "
            f"{cfg.git.push_attempts} times; never --force)"]


@declare_step("push", describe=_describe_push, milestone="pushed")
def push_rollback(ctx: StepContext) -> StepResult:
    """Push the rollback commits; on a non-fast-forward, fetch, replay and retry. Never force."""
    repo = open_workspace(ctx.repo)
    direct = ctx.cfg.git.push == "direct"
    target = ctx.cfg.main_branch if direct else f"rollback/{ctx.incident}"
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="push", status="planned",
                          evidence=[f"git push {ctx.cfg.remote} HEAD:{target}"])
    evidence = sync_with_remote(repo, ctx)
    if direct and not unpushed_commits(repo, ctx):
        return StepResult(id=ctx.step_id, name="push", status="already-done",
                          evidence=[*evidence, f"{remote_ref(ctx)} already contains {repo.head.commit.hexsha[:10]}"],
                          data={"pushed": repo.head.commit.hexsha})
    attempts = ctx.cfg.git.push_attempts
    for attempt in range(1, attempts + 1):
        try:
            run_git(repo, "push", "--porcelain", ctx.cfg.remote, f"HEAD:refs/heads/{target}")
        except GitCommandError as exc:
            text = f"{exc.stdout or ''} {exc.stderr or ''}"
            if "[remote rejected]" in text or "hook declined" in text:
                raise StepError(
                    f"the remote refused the push to {target}: {_stderr(exc)}. The branch is kept locally as "
                    f"{remote_ref(ctx)} plus the rollback commits; ask for the push to be allowed, "
                    "or set git.push = \"branch\" to push rollback/<incident> for review"
                ) from None
            if "[rejected]" in text or "non-fast-forward" in text or "fetch first" in text:
                if not direct:
                    raise BadInputError(f"{target} already exists on {ctx.cfg.remote} with other commits; delete it or use another incident id") from None
                evidence.append(f"push attempt {attempt}: the remote moved; fetching and replaying")
                fetch(repo, ctx)
                replay_onto_remote(repo, ctx)
                continue
            raise TransientError(f"git push {ctx.cfg.remote} failed: {_stderr(exc)}") from None
        head = repo.head.commit.hexsha
        if direct:
            fetch(repo, ctx)
        return StepResult(id=ctx.step_id, name="push", status="done",
                          evidence=[*evidence, f"pushed {head[:10]} to {ctx.cfg.remote} {target}"],
                          data={"pushed": head, "target": target})
    raise TransientError(
        f"the remote kept moving: {attempts} push attempts were rejected as non-fast-forward; rerun to try again"
    )
