"""ADR stubs in the target workspace (P0.3, A.2, A.5): numbered and dated like its existing ADRs,
from its `docs/adr/template.md` when there is one."""

from __future__ import annotations

import posixpath
import re
from datetime import datetime, timezone

from git import GitCommandError

from runbook.model import StepResult
from runbook.postmortem import next_adr, render_adr
from tasks.context import StepContext
from tasks.git_repo import head_text, open_workspace, publish_new_files, run_git


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
    number, name = next_adr(existing, adr_slug(ctx.phase, ctx.incident))
    mine = next((n for n in existing if n.split("-", 1)[-1] == name.split("-", 1)[1]), None)  # a rerun's own ADR
    if mine:
        number, name = int(mine.split("-")[0]), mine
    template = head_text(repo, f"{folder}/template.md")
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return f"{folder}/{name}", render_adr(template, number, title, day, context, link)


def record_design_change(ctx: StepContext) -> StepResult:
    """P0.3: the prototype's design change as an ADR stub, committed and pushed once."""
    title = f"Phase {ctx.phase} rollback {ctx.incident}: design change"
    rel, text = adr_stub(ctx, title, f"The phase {ctx.phase} prototype was archived ({ctx.incident}): {ctx.reason}",
                         posixpath.relpath(ctx.cfg.after.postmortem_dir.strip("/"), ctx.cfg.after.adr_dir.strip("/")) + "/")
    result = publish_new_files(ctx, {rel: text}, f"ADR stub for the phase {ctx.phase} design change")
    return result.model_copy(update={"id": ctx.step_id, "name": "adr", "data": {"adr": rel}})
