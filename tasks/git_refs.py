"""Ref-level git steps: archive the unmerged PoC branch (P0.1) and the last resort (P4.3).

The last resort rewrites the remote's main. It runs only with a person's approval that types
the branch name back, pushes a backup ref of the remote head first, and uses
--force-with-lease against that exact head, so commits pushed meanwhile are never destroyed.
"""

from __future__ import annotations

from git import GitCommandError

from actor_rollback.runbook.errors import BadInputError, StepError, TransientError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.context import Approval, StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.git_repo import ensure_safe_to_change, fetch, open_workspace, remote_ref, run_git, unpushed_commits


def _resolve(repo, ref: str) -> str | None:
    try:
        return run_git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitCommandError:
        return None


def _remote_sha(repo, ctx: StepContext, ref: str) -> str | None:
    out = run_git(repo, "ls-remote", ctx.cfg.remote, ref)
    return out.split()[0] if out else None


def _plan_archive(repo, ctx: StepContext, branch: str, tag: str) -> StepResult:
    """P0.1 read-only: where the branch is (here, the remote-tracking ref, the remote), or that it is archived."""
    remote = ctx.cfg.remote
    try:
        remote_tip, remote_tag = _remote_sha(repo, ctx, f"refs/heads/{branch}"), _remote_sha(repo, ctx, f"refs/tags/{tag}")
        seen = f"on {remote}"
    except GitCommandError:  # unreachable: judge from what this clone last fetched
        remote_tip, remote_tag = _resolve(repo, f"refs/remotes/{remote}/{branch}"), None
        seen = f"in {remote}/{branch} as last fetched ({remote} unreachable now)"
    local_tip = _resolve(repo, f"refs/heads/{branch}")
    tip = remote_tip or local_tip
    if tip is None:
        if remote_tag or _resolve(repo, f"refs/tags/{tag}"):
            return StepResult(id=ctx.step_id, name="archive", status="already-done",
                              evidence=[f"{branch} is gone; {tag} keeps it"])
        raise BadInputError(f"branch {branch} exists neither here nor on {remote}, and no {tag} tag: "
                            f"check phases.{ctx.phase}.branch in the config")
    where = seen if remote_tip else "only in this clone"
    return StepResult(id=ctx.step_id, name="archive", status="planned", evidence=[
        f"{branch} at {tip[:10]} ({where})", f"git tag {tag} {tip[:10]}", f"git push {remote} refs/tags/{tag}",
        f"git push --force-with-lease=refs/heads/{branch}:{tip[:10]} {remote} --delete {branch}",
        f"git branch -D {branch}"])


def _describe_archive(spec, cfg, phase) -> list[str]:
    branch, remote = cfg.phase(phase).branch, cfg.remote
    return [f"git tag archive/{branch} {remote}/{branch}", f"git push {remote} archive/{branch}",
            f"git push {remote} --delete {branch}"]


@declare_step("archive", describe=_describe_archive, changes_target=True)
def archive_branch(ctx: StepContext) -> StepResult:
    """P0.1: tag archive/<branch> at its tip, push the tag, delete the branch here and on the remote."""
    repo = open_workspace(ctx.repo)
    branch, remote = ctx.phase_cfg.branch, ctx.cfg.remote
    tag = f"archive/{branch}"
    if ctx.dry_run:
        return _plan_archive(repo, ctx, branch, tag)
    try:
        fetch(repo, ctx)
        remote_tip = _remote_sha(repo, ctx, f"refs/heads/{branch}")
        remote_tag = _remote_sha(repo, ctx, f"refs/tags/{tag}")
    except GitCommandError as exc:
        raise TransientError(f"cannot reach {remote}: {exc.stderr}") from None
    local_tip = _resolve(repo, f"refs/heads/{branch}")
    tip = remote_tip or local_tip
    if tip is None:
        if remote_tag:
            return StepResult(id=ctx.step_id, name="archive", status="already-done",
                              evidence=[f"{branch} is gone; {tag} keeps {remote_tag[:10]}"],
                              data={"archive_tag": tag, "archived": remote_tag})
        raise BadInputError(f"branch {branch} exists neither here nor on {remote}, and no {tag} tag: "
                            "check phases.0.branch in the config")
    if local_tip and remote_tip and local_tip != remote_tip:
        raise BadInputError(f"{branch} differs here ({local_tip[:10]}) and on {remote} ({remote_tip[:10]}); "
                            "push or reconcile it first so no commit is left out of the archive")
    existing = _resolve(repo, f"refs/tags/{tag}")
    if (existing or remote_tag) and (existing or remote_tag) != tip:
        raise BadInputError(f"tag {tag} already exists at another commit; rename it or delete it by hand")
    evidence = []
    if not existing:
        run_git(repo, "tag", "-a", tag, tip, "-m", f"archive of {branch} ({ctx.incident}): {ctx.reason}")
        evidence.append(f"tagged {tag} at {tip[:10]}")
    if not remote_tag:
        run_git(repo, "push", "--quiet", remote, f"refs/tags/{tag}")
        evidence.append(f"pushed {tag} to {remote}")
    if remote_tip:
        try:  # with a lease on the archived tip: a teammate's commit pushed meanwhile is never deleted
            run_git(repo, "push", "--quiet", f"--force-with-lease=refs/heads/{branch}:{remote_tip}", remote,
                    "--delete", branch)
        except GitCommandError as exc:
            raise StepError(f"{branch} moved on {remote} since {remote_tip[:10]} was archived ({exc.stderr.strip()}); "
                            f"nothing was deleted: rerun to archive the new tip") from None
        evidence.append(f"deleted {branch} on {remote} (lease on {remote_tip[:10]})")
    if local_tip:
        run_git(repo, "branch", "-D", branch)
        evidence.append(f"deleted local {branch}")
    reachable = run_git(repo, "rev-list", "-n1", tag)
    evidence.append(f"{tag} → {reachable[:10]}: the branch's commits stay reachable")
    return StepResult(id=ctx.step_id, name="archive", status="done", evidence=evidence,
                      data={"archive_tag": tag, "archived": tip})


def _describe_reset(spec, cfg, phase) -> list[str]:
    p, main, remote = cfg.phase(phase), cfg.main_branch, cfg.remote
    return [f'git tag {p.baseline_tag} <commit whose message contains "{p.baseline_commit_pattern}">',
            f"git push {remote} {main}:refs/backup/<incident>",
            f"git reset --hard {p.baseline_tag}",
            f"git push --force-with-lease={main}:<remote head> {remote} {main}  (after human approval)"]


@declare_step("reset", describe=_describe_reset, changes_target=True)
def reset_to_phase_0_baseline(ctx: StepContext, approval: Approval | None = None) -> StepResult:
    """P4.3, the last resort: main back to the "Phase 0 start" commit, only with a person's approval."""
    approval = approval or ctx.approval
    repo = open_workspace(ctx.repo)
    p, main, remote = ctx.phase_cfg, ctx.cfg.main_branch, ctx.cfg.remote
    pattern = p.baseline_commit_pattern
    if not pattern or not p.baseline_tag:
        raise BadInputError(f"phase {ctx.phase} needs baseline_commit_pattern and baseline_tag in the config")
    fetch(repo, ctx)
    found = run_git(repo, "log", remote_ref(ctx), "--fixed-strings", f"--grep={pattern}", "--format=%H").split()
    if not found:
        raise BadInputError(f'no commit on {remote_ref(ctx)} contains "{pattern}"; the last resort has no '
                            "baseline to return to — roll back phase by phase instead")
    baseline = found[-1]  # the oldest one: the real start of Phase 0
    remote_head = run_git(repo, "rev-parse", remote_ref(ctx))
    plan = [f"git tag {p.baseline_tag} {baseline[:10]}", f"git push {remote} {remote_head[:10]}:refs/backup/{ctx.incident}",
            f"git reset --hard {p.baseline_tag}",
            f"git push --force-with-lease=refs/heads/{main}:{remote_head[:10]} {remote} {main}"]
    if remote_head == baseline:
        return StepResult(id=ctx.step_id, name="reset", status="already-done",
                          evidence=[f"{remote_ref(ctx)} is already at the Phase 0 baseline {baseline[:10]}"])
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="reset", status="planned", evidence=plan)
    if approval is None:
        why = ctx.facts.get("approval_note", "")
        return StepResult(id=ctx.step_id, name="reset", status="needs-human", evidence=[
            *(why.splitlines() if why else []),
            "the last resort rewrites the remote's history: it needs a person's approval "
            f"(approver, and {main!r} typed back); nothing was changed", *plan])
    if approval.typed_branch != main or not approval.approver.strip():
        raise BadInputError(f"approval refused: the approver must be named and type the branch name {main!r} back "
                            f"(got {approval.typed_branch!r}); nothing was changed")
    ensure_safe_to_change(repo, ctx)
    if unpushed_commits(repo, ctx):
        raise BadInputError(f"{main} has commits that are not on {remote}; push or drop them first, "
                            "the reset would hide them")
    evidence = [*ctx.facts.get("approval_note", "").splitlines()[:-1],
                f"approved by {approval.approver}" + (f": {approval.comment}" if approval.comment else "")]
    existing = _resolve(repo, f"refs/tags/{p.baseline_tag}")
    if existing and existing != baseline:
        raise BadInputError(f"tag {p.baseline_tag} already points at {existing[:10]}, not at {baseline[:10]}")
    if not existing:
        run_git(repo, "tag", p.baseline_tag, baseline)
    run_git(repo, "push", "--quiet", remote, f"refs/tags/{p.baseline_tag}")
    backup = f"refs/backup/{ctx.incident}"
    run_git(repo, "push", "--quiet", remote, f"{remote_head}:{backup}")
    evidence += [f"tagged {p.baseline_tag} at {baseline[:10]}", f"pushed backup {backup} = {remote_head[:10]}"]
    before = repo.head.commit.hexsha
    run_git(repo, "reset", "--hard", "--quiet", p.baseline_tag)
    try:
        run_git(repo, "push", "--quiet", f"--force-with-lease=refs/heads/{main}:{remote_head}", remote,
                f"HEAD:refs/heads/{main}")
    except GitCommandError as exc:
        run_git(repo, "reset", "--hard", "--quiet", before)
        raise StepError(f"the remote's {main} moved since {remote_head[:10]} (or refused the push): {exc.stderr.strip()}; "
                        f"nothing was overwritten, the local branch is back at {before[:10]}; rerun to try again") from None
    evidence.append(f"{remote} {main}: {remote_head[:10]} → {baseline[:10]} (force-with-lease)")
    return StepResult(id=ctx.step_id, name="reset", status="done", evidence=evidence,
                      data={"backup_ref": backup, "previous_head": remote_head, "baseline": baseline})
