"""A person's approval for the last resort (P4.3): the whole team is told, one person says yes.

On a Prefect server the flow pauses for a `LastResortApproval` — answered in the Prefect UI's
form or with `actor-rollback approve RUN_ID` — with a timeout. On the embedded (ephemeral)
server nobody else can reach the run, so the CLI asks at its terminal before the run and hands
the answer in; without a terminal there is no approval. No answer, a rejection, or a wrong
branch name typed back: nothing is force-pushed, and the run says why.
"""

from __future__ import annotations

from prefect.context import get_settings_context
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.runtime import deployment, flow_run
from pydantic import Field

from actor_rollback.flows.outcome import pause_key
from actor_rollback.runbook.config import ROLES, RollbackConfig
from actor_rollback.tasks.context import Approval
from actor_rollback.tasks.notify import notify_roles


class LastResortApproval(RunInput):
    approved: bool = Field(description="Approve resetting the main branch to the Phase 0 baseline (force-with-lease)")
    approver: str = Field(description="Your name: recorded in the audit trail")
    typed_branch: str = Field(description="Type the name of the branch that will be reset, to confirm")
    comment: str = Field(default="", description="Why, and who else was told")


def server_reachable_by_others() -> bool:
    """An ephemeral server lives inside this process; nobody else can answer a pause there."""
    return bool(get_settings_context().settings.api.url)


def ask_for_approval(cfg: RollbackConfig, incident: str, reason: str, given: dict | None) -> tuple[Approval | None, list[str]]:
    """Notify every contact, then get the approval: given by the CLI's terminal, or by pausing the run."""
    subject = f"[actor-rollback] LAST RESORT requested for {incident}: reset {cfg.main_branch} to the Phase 0 baseline"
    body = (f"Reason: {reason}\nThe run waits up to {cfg.approval.timeout_seconds} s for a person's approval "
            f"(actor-rollback approve {flow_run.get_id()} --approver NAME --branch {cfg.main_branch}).")
    evidence = notify_roles(cfg, list(ROLES), subject, body, flow_run.get_flow_run_ui_url())
    from_deployment = deployment.get_id() is not None
    if given and not from_deployment:
        approval = Approval(given.get("approver", ""), given.get("typed_branch", ""), given.get("comment", ""))
        return approval, [*evidence, f"asked at the terminal: {approval.approver} answered"]
    if not server_reachable_by_others():
        return None, [*evidence, "no approval: on the embedded server nobody else can answer, and there was no "
                                 "terminal to ask at; run it at a terminal or against a Prefect server"]
    try:
        answer = pause_flow_run(wait_for_input=LastResortApproval, timeout=cfg.approval.timeout_seconds,
                                poll_interval=1, key=pause_key("last-resort", incident))
    except FlowPauseTimeout:
        running_again("no approval in time")
        return None, [*evidence, f"no approval within {cfg.approval.timeout_seconds} s: nothing is force-pushed"]
    if not answer.approved:
        note = f"rejected by {answer.approver}" + (f": {answer.comment}" if answer.comment else "")
        return None, [*evidence, note + "; nothing is force-pushed"]
    return Approval(answer.approver, answer.typed_branch, answer.comment), [*evidence, f"approved by {answer.approver}"]


def running_again(why: str) -> None:
    """After a pause ran out the run goes on; without this it stays Paused on the server, which then turns
    its final state (whatever the outcome) into Failed "never resumed" — the state would stop telling the truth."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    run_id = flow_run.get_id()
    if run_id:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Running(message=f"{why}: the run goes on"), force=True)
