"""F.4: register an issue for the next release — a markdown file in the target workspace, or a
POST to an issue tracker.

The file sink commits `docs/issues/<incident>.md` on the main branch and pushes it like a rollback
commit (never forced); a rerun finds the file at HEAD and does nothing. The HTTP sink sends the
incident id as the idempotency key, so a tracker that honours it files one issue per incident.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from runbook.errors import BadInputError, StepError, TransientError
from runbook.model import Decision, Incident, StepResult
from tasks.context import StepContext
from tasks.git_repo import commit_files, head_text, open_workspace, push_rollback, sync_with_remote


def issue_markdown(incident: Incident, decision: Decision, run_url: str | None) -> str:
    lines = [f"# {incident.summary or incident.kind} (phase {incident.phase}) — {incident.id}", "",
             f"- severity: **{decision.severity}** ({decision.rule}: {decision.reason})",
             f"- action: fix in the next release; owner: {decision.owner}; by {decision.deadline.isoformat()}",
             f"- decided by: {decision.decided_by}", f"- source: {incident.source}"]
    if run_url:
        lines.append(f"- triage run: {run_url}")
    if incident.evidence:
        lines += ["", "## Evidence", "", *(f"- {e}" for e in incident.evidence)]
    return "\n".join(lines) + "\n"


def register_issue(ctx: StepContext, incident: Incident, decision: Decision, run_url: str | None = None) -> StepResult:
    text = issue_markdown(incident, decision, run_url)
    cfg = ctx.cfg.triage
    if cfg.issue_sink == "http":
        return _post_issue(ctx, incident, text)
    rel = f"{cfg.issue_dir.strip('/')}/{incident.id}.md"
    if ctx.dry_run:
        return StepResult(id="F.4", name="register-issue", status="planned", evidence=[f"commit {rel} and push"])
    repo = open_workspace(ctx.repo)
    evidence = sync_with_remote(repo, ctx, resumable={rel: text})
    if head_text(repo, rel) is not None:
        evidence.append(f"{rel} is already registered at {repo.head.commit.hexsha[:10]}")
        status = "already-done"
    else:
        path = ctx.repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        sha = commit_files(ctx, [rel], f"register issue {incident.id} for the next release")
        evidence.append(f"{rel} committed as {sha[:10]}")
        status = "done"
    pushed = push_rollback(ctx)
    if pushed.status == "failed":
        return pushed
    return StepResult(id="F.4", name="register-issue", status=status, evidence=[*evidence, *pushed.evidence],
                      data={"issue": rel})


def _post_issue(ctx: StepContext, incident: Incident, text: str) -> StepResult:
    cfg = ctx.cfg.triage
    if ctx.dry_run:
        return StepResult(id="F.4", name="register-issue", status="planned", evidence=[f"POST {cfg.issue_url}"])
    headers = {"Content-Type": "application/json", "Idempotency-Key": incident.id}
    if cfg.issue_token_env:
        token = os.environ.get(cfg.issue_token_env)
        if not token:
            raise BadInputError(f"triage.issue_token_env names {cfg.issue_token_env}, which is not set; export it")
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"title": text.splitlines()[0].lstrip("# "), "body": text, "labels": ["actor-rollback", f"phase:{incident.phase}"],
                       "incident": incident.id}).encode()
    request = urllib.request.Request(cfg.issue_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:  # the URL is shown, the token never
        if exc.code >= 500:
            raise TransientError(f"the issue tracker {cfg.issue_url} answered {exc.code}") from None
        raise StepError(f"the issue tracker {cfg.issue_url} refused the issue: HTTP {exc.code}") from None
    except OSError as exc:
        raise TransientError(f"the issue tracker {cfg.issue_url} is unreachable ({exc})") from None
    return StepResult(id="F.4", name="register-issue", status="done",
                      evidence=[f"POST {cfg.issue_url}: {answer[:200]}"], data={"issue": cfg.issue_url})
