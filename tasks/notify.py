"""Notifications to the runbook's roles (X.1) through Prefect notification blocks.

A role's contact names the blocks that reach that person (`[contacts.<role>] notify = [...]`),
so secrets (webhook URLs, keys) live in the blocks, never in the config, logs or messages.
Every message carries the flow run and the dashboard links (X.2).
"""

from __future__ import annotations

from prefect.blocks.core import Block

from actor_rollback.runbook.config import RollbackConfig


def links(cfg: RollbackConfig, flow_run_url: str | None = None) -> list[str]:
    shown = [f"flow run: {flow_run_url}"] if flow_run_url else []
    return shown + [f"{name}: {url}" for name, url in cfg.dashboards.model_dump().items() if url]


def notify_roles(cfg: RollbackConfig, roles: list[str], subject: str, body: str,
                 flow_run_url: str | None = None) -> list[str]:
    """Send to every block of every role; returns evidence lines, one per delivery or gap."""
    message = "\n".join([body, "", *links(cfg, flow_run_url)])
    evidence = []
    for role in roles:
        contact = cfg.contacts.get(role)
        if contact is None or not contact.notify:
            who = contact.name if contact else "nobody"
            evidence.append(f"{role} ({who}): no notification block configured — tell them by hand")
            continue
        for block_name in contact.notify:
            try:
                block = Block.load(block_name)
                block.notify(message, subject=subject)
            except Exception as exc:  # one unreachable channel must not hide the others
                evidence.append(f"{role} ({contact.name}) via {block_name}: FAILED ({type(exc).__name__})")
            else:
                evidence.append(f"{role} ({contact.name}) via {block_name}: sent")
    return evidence
