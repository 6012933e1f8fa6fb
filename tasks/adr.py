"""ADR stubs in the target workspace (P0.3, A.2, A.5): numbered and dated like its existing ADRs,
from its `docs/adr/template.md` when there is one."""

from __future__ import annotations

import posixpath
import re
from datetime import datetime, timezone

from git import GitCommandError

from actor_rollback.runbook.model import StepResult
from actor_rollback.runbook.postmortem import DATED_ADR, adr_file_slug, next_adr, render_adr
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.git_repo import head_text, open_workspace, publish_new_files, run_git


def adr_slug(phase: str, incident: str = "") -> str:
    """The part of an ADR's file name that ties it to a phase's rollback (and to one incident)."""
    return re.sub(r"[^a-z0-9]+", "-", f"phase {phase} rollback {incident}".lower()).strip("-")


def adr_files(ctx: StepContext) -> list[str]:
    """The file names in the target's ADR folder at HEAD (none when it has no such folder)."""
    try:
        return run_git(open_workspace(ctx.repo), "ls-tree", "--name-only", f"HEAD:{ctx.cfg.after.adr_dir.strip('/')}").split()
    except GitCommandError:
        return []


def adr_stub(ctx: StepContext, title: str, context: str, link: str) -> tuple[str, str]:
    """(path, text) of the ADR for this incident: its existing file when a rerun finds one, else the next number."""
    repo = open_workspace(ctx.repo)
    folder = ctx.cfg.after.adr_dir.strip("/")
    existing = adr_files(ctx)
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    slug = adr_file_slug(adr_slug(ctx.phase, ctx.incident))
    number, name = next_adr(existing, slug, day)
    ordered = sorted(n for n in existing if n != "template.md")
    mine = next((n for n in ordered if n.endswith(f"-{slug}.md") and re.match(r"\d", n)), None)  # a rerun's own ADR
    if mine:
        number, name = (int(mine.split("-")[0]) if not DATED_ADR.match(mine) else ordered.index(mine) + 1), mine
    template = head_text(repo, f"{folder}/template.md")
    return f"{folder}/{name}", render_adr(template, number, title, day, context, link)


@declare_step("adr", describe=lambda spec, cfg, phase: [
    f"write {cfg.after.adr_dir}/NNNN-<title>.md from the ADR template"])
def record_design_change(ctx: StepContext) -> StepResult:
    """P0.3: the prototype's design change as an ADR stub, committed and pushed once."""
    title = f"Phase {ctx.phase} rollback {ctx.incident}: design change"
    tag = ctx.facts.get("archive_tag")  # what P0.1 did in this run (or found done): only then is it said
    done = (f"The phase {ctx.phase} prototype was archived as {tag}" if tag else
            f"The phase {ctx.phase} prototype was not archived by this rollback (P0.1 did not run)")
    rel, text = adr_stub(ctx, title, f"{done} ({ctx.incident}): {ctx.reason}",
                         posixpath.relpath(ctx.cfg.after.postmortem_dir.strip("/"), ctx.cfg.after.adr_dir.strip("/")) + "/")
    result = publish_new_files(ctx, {rel: text}, f"ADR stub for the phase {ctx.phase} design change")
    return result.model_copy(update={"id": ctx.step_id, "name": "adr", "data": {"adr": rel}})
