"""After the rollback (A.1, A.2, A.5, P0.3): the postmortem draft and the ADR stub, and the
48-hour deadline watch.

The draft is written from Prefect's own record of the incident (flows/history.py) into the
target workspace — `docs/postmortem/YYYY-MM-DD-phase-X-rollback-<incident>.md` and the next ADR — and
committed and pushed like a rollback commit (`git.push`: straight to main, or a branch for
review). A file already there is never overwritten: people edit it after the draft.
"""

from __future__ import annotations

import posixpath
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from actor_rollback.flows.history import incident_history
from actor_rollback.flows.target_lock import holding_target
from actor_rollback.flows.outcome import add_tags, outcome_state, pause_for_a_person
from actor_rollback.runbook.config import effective_config, parse_duration
from actor_rollback.runbook.postmortem import deadline_of, postmortem_path, render_postmortem, unfilled_sections
from actor_rollback.tasks.adr import adr_stub
from actor_rollback.tasks.context import StepContext, artifact_key
from actor_rollback.tasks.git_repo import files_at, open_workspace, publish_new_files, run_git
from actor_rollback.tasks.notify import notify_roles


@flow(name="postmortem", flow_run_name="postmortem-{ref}", log_prints=True, persist_result=False,
      on_completion=[pause_for_a_person])
def postmortem(ref: str, repo: str, config: str = "") -> dict:
    """Draft the postmortem (A.1/A.2) and the ADR stub (A.5) of a rollback from its Prefect record.

    Args:
        ref: The rollback's flow run id or name, or the incident id.
        repo: Path of the target workspace's git clone.
        config: Path of a rollback.toml; when empty, the repository's own rollback.toml, else the shipped one.
    """
    cfg = effective_config(config, repo)
    history = incident_history(ref, cfg)
    target = Path(repo).resolve()
    pm_rel = postmortem_path(cfg.after.postmortem_dir, history)
    ctx = StepContext(repo=target, cfg=cfg, phase=history.phase, incident=history.incident,
                      reason=f"postmortem draft of {history.incident}", step_id="A.2")
    adr_folder = cfg.after.adr_dir.strip("/")
    with holding_target(ctx, log=get_run_logger().warning):  # the ADR's number and the commit: no rollback beside
        adr_rel, adr_text = adr_stub(ctx, f"Phase {history.phase} rollback {history.incident}: design correction",
                                     f"Phase {history.phase} was rolled back ({history.incident}): {history.reason}",
                                     posixpath.relpath(pm_rel, adr_folder))
        pm_text = render_postmortem(history, cfg.after.postmortem_hours,
                                    posixpath.relpath(adr_rel, posixpath.dirname(pm_rel)))
        result = publish_new_files(ctx, {pm_rel: pm_text, adr_rel: adr_text},
                                   f"postmortem draft and ADR stub for {history.incident}")
    get_run_logger().info("A.2 %s: %s", result.status, "; ".join(result.evidence))
    create_markdown_artifact(markdown=pm_text, key=artifact_key("postmortem", history.incident),
                             description=f"Postmortem draft of {history.incident} ({pm_rel})")
    add_tags("actor-rollback", "postmortem", f"phase:{history.phase}", f"incident:{history.incident}",
             f"outcome:{result.outcome}")
    return outcome_state(result.outcome, f"postmortem {history.incident}: {result.headline()}", {
        "postmortem": pm_rel, "adr": adr_rel, "status": result.status, "evidence": result.evidence,
        "rollback_run_id": history.rollback_run_id, "outcome": result.outcome})


@flow(name="postmortem-deadlines", log_prints=True, persist_result=False)
def postmortem_deadlines(repo: str, config: str = "", now: Optional[datetime] = None) -> dict:
    """A.1: the drafts on the remote that still have unfilled sections near (or past) their 48-hour deadline
    are sent to their owners.

    Args:
        repo: Path of the target workspace's git clone (only fetched; the work tree is not touched).
        config: Path of a rollback.toml; when empty, the repository's own rollback.toml, else the shipped one.
        now: Judge at this time instead of now (what-if, tests).
    """
    cfg = effective_config(config, repo)
    target = Path(repo).resolve()
    git = open_workspace(target)
    run_git(git, "fetch", "--quiet", cfg.remote)
    ref = f"{cfg.remote}/{cfg.main_branch}"
    at = now or datetime.now(timezone.utc)
    remind = parse_duration(cfg.after.postmortem_remind_before)
    found = []
    for name, text in files_at(git, ref, cfg.after.postmortem_dir).items():
        rel = f"{cfg.after.postmortem_dir.strip('/')}/{name}"
        missing, deadline = unfilled_sections(text), deadline_of(text)
        if not missing or deadline is None or at < deadline - remind:
            continue
        late = at >= deadline
        subject = f"[actor-rollback] postmortem {'OVERDUE' if late else 'due'}: {rel}"
        body = (f"{rel} is due {deadline.isoformat()} (A.1: within {cfg.after.postmortem_hours} h) and still "
                f"has unfilled sections: {', '.join(missing)}.")
        sent = notify_roles(cfg, cfg.after.postmortem_notify, subject, body)
        found.append({"file": rel, "deadline": deadline.isoformat(), "overdue": late, "unfilled": missing,
                      "notified": sent})
    return {"checked_at": at.isoformat(), "reminded": found}
