"""F.4: register an issue for the next release — a markdown file in the target workspace, or a
POST to an issue tracker.

The file sink commits `docs/issues/<incident>.md` on the main branch and pushes it like a rollback
commit (never forced); a rerun finds the file at HEAD and does nothing. The HTTP sink sends the
incident id as the idempotency key, so a tracker that honours it files one issue per incident.
"""

from __future__ import annotations

import json

import httpx

from actor_rollback.runbook.errors import BadInputError, StepError, TransientError
from actor_rollback.runbook.model import Decision, Incident, StepResult
from actor_rollback.runbook.secrets import secret
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.git_repo import publish_new_files


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
    result = publish_new_files(ctx, {rel: text}, f"register issue {incident.id} for the next release")
    return result.model_copy(update={"id": "F.4", "name": "register-issue", "data": {"issue": rel}})


def _post_issue(ctx: StepContext, incident: Incident, text: str) -> StepResult:
    cfg = ctx.cfg.triage
    if ctx.dry_run:
        return StepResult(id="F.4", name="register-issue", status="planned", evidence=[f"POST {cfg.issue_url}"])
    headers = {"Content-Type": "application/json", "Idempotency-Key": incident.id}
    if cfg.issue_token_env:
        token = secret(cfg.issue_token_env)
        if not token:
            raise BadInputError(f"triage.issue_token_env names {cfg.issue_token_env}, which is not set; give it in "
                                f"the file {cfg.issue_token_env}_FILE names, or export it")
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"title": text.splitlines()[0].lstrip("# "), "body": text, "labels": ["actor-rollback", f"phase:{incident.phase}"],
                       "incident": incident.id}).encode()
    try:
        response = httpx.post(cfg.issue_url, content=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:  # unreachable, refused, timed out, TLS: the URL is shown, the token never
        raise TransientError(f"the issue tracker {cfg.issue_url} is unreachable ({type(exc).__name__}: {exc})") \
            from None
    if response.status_code >= 500:
        raise TransientError(f"the issue tracker {cfg.issue_url} answered {response.status_code}")
    if not response.is_success:  # a refusal, or a redirect: no issue was made where it was asked for
        raise StepError(f"the issue tracker {cfg.issue_url} refused the issue: HTTP {response.status_code}")
    answer = response.text[:2000]
    return StepResult(id="F.4", name="register-issue", status="done",
                      evidence=[f"POST {cfg.issue_url}: {answer[:200]}"], data={"issue": cfg.issue_url})
