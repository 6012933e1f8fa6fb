"""A.6 steps: re-apply a rolled-back phase (revert its revert), run a canary with the flag on, and
judge the canary against the stable service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from git import GitCommandError

from actor_rollback.runbook.errors import BadInputError, ConflictError, StepError
from actor_rollback.runbook.model import StepResult
from actor_rollback.runbook.postmortem import TO_FILL
from actor_rollback.tasks.adr import adr_files, adr_slug
from actor_rollback.tasks.commands import command_record, run_bounded, secret_names
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.git_repo import (_abort_revert, _commit, find_phase_merge, find_revert_of, head_text, open_workspace,
                            run_git, sync_with_remote)
from actor_rollback.tasks.metrics import SourceUnreachable, judge, rates_between, regression_pct, scrape


def check_adr(ctx: StepContext) -> StepResult:
    """A.5: the phase's ADR (the improvement plan) exists and has no unfilled section."""
    repo = open_workspace(ctx.repo)
    folder = ctx.cfg.after.adr_dir.strip("/")
    mine = [n for n in adr_files(ctx) if adr_slug(ctx.phase) in n]
    if not mine:
        raise BadInputError(f"no ADR for phase {ctx.phase} in {folder}/: write the improvement plan first (A.5; "
                            f"`actor-rollback postmortem INCIDENT` drafts it)")
    unfilled = [n for n in mine if TO_FILL in (head_text(repo, f"{folder}/{n}") or "")]
    if unfilled:
        raise BadInputError(f"{folder}/{unfilled[0]} still has sections marked {TO_FILL}: fill in the decision and "
                            "its consequences before the phase comes back")
    return StepResult(id="A.5", name="adr", status="done", evidence=[f"{folder}/{n}: filled in" for n in mine])


def reapply_phase(ctx: StepContext) -> StepResult:
    """Revert the rollback's revert of the phase merge (once; a conflict restores the tree)."""
    found = find_phase_merge(ctx)
    merge = found.data["merge"]
    repo = open_workspace(ctx.repo)
    evidence = [*found.evidence, *sync_with_remote(repo, ctx)]
    revert = find_revert_of(repo, ctx, merge)
    if revert is None:
        return StepResult(id="A.6", name="reapply", status="already-done", data={"merge": merge},
                          evidence=[*evidence, f"the merge {merge[:10]} is in effect (no revert of it stands)"])
    before = repo.head.commit.hexsha
    try:
        run_git(repo, "revert", "--no-commit", revert)
    except GitCommandError:
        conflicts = run_git(repo, "diff", "--name-only", "--diff-filter=U").split()
        _abort_revert(repo, before)
        raise ConflictError(f"re-applying phase {ctx.phase} (reverting {revert[:10]}) conflicts in "
                            f"{', '.join(conflicts)}; the tree is restored. Re-apply it by hand") from None
    subject = run_git(repo, "log", "-1", "--format=%s", revert)
    _commit(repo, ctx, f'Revert "{subject}"\n\nThis reverts commit {revert}.\n\n'
            + ctx.commit_message(f"re-apply phase {ctx.phase} behind the flag (A.6)"))
    sha = repo.head.commit.hexsha
    return StepResult(id="A.6", name="reapply", status="done", data={"merge": merge, "reapplied": sha},
                      evidence=[*evidence, f"git revert {revert[:10]} → {sha[:10]}: phase {ctx.phase} is back"])


def _command(ctx: StepContext, command: str, name: str, env: dict[str, str]) -> StepResult:
    r = ctx.cfg.reintroduce
    text = command.format(version=_version(ctx))
    outcome = run_bounded(text, ctx.repo, r.timeout_seconds, env={**ctx.command_env(), **env}, secrets=secret_names(ctx.cfg),
                          record=command_record(ctx, name, text))
    if outcome.returncode != 0:
        raise StepError(f"`{text}` " + ("timed out" if outcome.returncode is None else f"exited {outcome.returncode}")
                        + ": " + " | ".join(outcome.tail[-3:]))
    return StepResult(id="A.6", name=name, status="done", evidence=[f"$ {text}", *outcome.tail[-2:]])


def _version(ctx: StepContext) -> str:
    return ctx.cfg.reintroduce.version.format(phase=ctx.phase.lower())


def _on_kubernetes(ctx: StepContext) -> bool:
    return ctx.cfg.deploy.backend == "kubernetes"


def deploy_canary(ctx: StepContext) -> StepResult:
    if _on_kubernetes(ctx):
        from actor_rollback.tasks.kubernetes_deploy import deploy_canary_to_kubernetes

        return deploy_canary_to_kubernetes(ctx, _version(ctx))
    return _command(ctx, ctx.cfg.reintroduce.canary_command, "canary", ctx.cfg.reintroduce.canary_env)


def stop_canary(ctx: StepContext) -> StepResult:
    if _on_kubernetes(ctx):
        from actor_rollback.tasks.kubernetes_deploy import stop_canary_on_kubernetes

        return stop_canary_on_kubernetes(ctx)
    return _command(ctx, ctx.cfg.reintroduce.canary_stop_command, "stop-canary", ctx.cfg.reintroduce.canary_env)


def promote(ctx: StepContext) -> StepResult:
    """The re-applied code everywhere (the production deploy, the reintroduction's version);
    the flag stays off by default: turning it on is a reviewed change, not this flow's."""
    if _on_kubernetes(ctx):
        from actor_rollback.tasks.kubernetes_deploy import deploy_to_kubernetes

        result = deploy_to_kubernetes(ctx.for_step("A.6"), version=_version(ctx), name="promote")
    else:
        result = _command(ctx, ctx.cfg.deploy.command, "promote", {})
    result.evidence.append(f"the flag stays off by default: turning {ctx.cfg.flag} on is a reviewed change")
    return result


def watch_canary(ctx: StepContext) -> StepResult:
    """The canary's throughput, latency and error rate over the window, against the stable service's."""
    import time

    r, m = ctx.cfg.reintroduce, ctx.cfg.monitoring
    urls = {"canary": r.canary_metrics_url, "stable": m.metrics_url}
    try:
        with ThreadPoolExecutor(2) as pool:
            first = dict(zip(urls, pool.map(lambda url: scrape(url, m.ca_bundle), urls.values())))
            started = time.monotonic()
            time.sleep(r.canary_window_seconds)
            last = dict(zip(urls, pool.map(lambda url: scrape(url, m.ca_bundle), urls.values())))
    except SourceUnreachable as exc:
        return StepResult(id="A.6", name="watch-canary", status="needs-human",
                          evidence=[f"cannot read the canary or the stable service ({exc}); judge by hand"])
    seconds = time.monotonic() - started
    names = m.metrics.model_dump()
    canary, stable = (rates_between(first[k], last[k], seconds, names) for k in ("canary", "stable"))
    readings = judge(canary, stable, ctx)
    failed = [x for x in readings if x.verdict == "fail"]
    evidence = [f"canary {r.canary_metrics_url} against stable {m.metrics_url} over {r.canary_window_seconds} s",
                *(x.line() for x in readings)]
    if failed:
        worst = regression_pct(readings, ctx)
        return StepResult(id="A.6", name="watch-canary", status="failed", failure="fault", evidence=evidence,
                          data={"regression_pct": f"{worst:.2f}" if worst is not None else ""})
    return StepResult(id="A.6", name="watch-canary", status="done", evidence=evidence)
