"""A.1 / A.2 / A.5 / P0.3: the postmortem draft and the ADR stub, rendered from an incident's history.

Pure text: the history is read from Prefect by flows/history.py. What people must write is
marked `<!-- TO FILL -->` so the 48-hour check (flows/postmortem.py) can tell a draft from a
finished postmortem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

TO_FILL = "<!-- TO FILL -->"
AGENDA = [  # the runbook's postmortem agenda (A.1)
    ("Root cause", "What in the phase's change caused the incident?"),
    ("Why detection was late", "Which signal came first, and why did it not come earlier?"),
    ("Prevention: design", "What changes in the design (see the ADR)?"),
    ("Prevention: tests", "Which test would have caught it before the merge?"),
    ("Prevention: feature-flag strategy", "How is the next attempt staged (flag default, canary, A.6)?"),
]


@dataclass
class TimelineEntry:
    at: datetime
    what: str
    seconds: float | None = None
    status: str = ""


@dataclass
class IncidentHistory:
    """What Prefect recorded about one incident: the triage, the rollback run, its steps and checklist."""

    incident: str
    phase: str
    rollback_run: str  # flow run name
    rollback_run_id: str
    rollback_url: str
    started: datetime
    ended: datetime | None
    outcome: str
    trigger: str  # who or what started it
    reason: str
    decision: dict[str, str] = field(default_factory=dict)  # severity, rule, reason, owner, deadline, decided_by
    triage_url: str = ""
    timeline: list[TimelineEntry] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)  # the steps table: id, step, status, seconds, evidence, data
    checklist: str = ""  # the checklist artifact's markdown
    links: dict[str, str] = field(default_factory=dict)
    mitigation: list[dict] = field(default_factory=list)  # time to mitigation: milestone, at, seconds

    def fact(self, key: str) -> str:
        for row in self.steps:
            value = row.get("data", {}).get(key)
            if value:
                return value
        return ""


def postmortem_path(directory: str, history: IncidentHistory) -> str:
    """The runbook's `YYYY-MM-DD-phase-X-rollback.md`, with the incident's id: one draft per incident, so a second
    rollback of the phase on the same day gets its own (ids are file-name safe: runbook/ids.py)."""
    day = (history.ended or history.started).strftime("%Y-%m-%d")
    return f"{directory.strip('/')}/{day}-phase-{history.phase.lower()}-rollback-{history.incident}.md"


def render_postmortem(history: IncidentHistory, deadline_hours: int, adr_link: str = "") -> str:
    h = history
    end = h.ended or h.started
    deadline = end + timedelta(hours=deadline_hours)
    revert, pushed = h.fact("revert"), h.fact("pushed")
    lines = [f"# Postmortem: phase {h.phase} rollback — {h.incident}", "",
             f"- Deadline: {deadline.isoformat()} ({deadline_hours} h after the rollback, A.1)",
             f"- Outcome: {h.outcome}", f"- Triggered by: {h.trigger}", f"- Reason: {h.reason}"]
    if h.decision:
        d = h.decision
        lines.append(f"- Triage: **{d.get('severity', '?')}** by {d.get('rule', '?')} ({d.get('reason', '')}); "
                     f"owner {d.get('owner', '?')}, decided by {d.get('decided_by', '?')}")
    if revert:
        lines.append(f"- Revert commit: `{revert}`")
    if pushed:
        lines.append(f"- Pushed: `{pushed}`")
    if h.started and h.ended:
        lines.append(f"- Rollback duration: {(h.ended - h.started).total_seconds():.1f} s")
    marks = {m["milestone"]: m["seconds"] for m in h.mitigation}
    if "pushed" in marks or "deploy done" in marks:
        since = "the incident's start" if "incident started" in marks else "the run's start"
        lines.append("- Time to mitigation (from " + since + "): " + ", ".join(
            f"{name} +{marks[name]:.2f} s" for name in ("flag off committed", "pushed", "deploy done") if name in marks))
    lines += ["", "## Timeline (UTC, from Prefect's record)", "", "| time | event | duration | status |",
              "|---|---|---|---|"]
    for entry in sorted(h.timeline, key=lambda e: e.at):
        took = f"{entry.seconds:.2f} s" if entry.seconds is not None else ""
        lines.append(f"| {entry.at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" | {entry.what} | {took} | {entry.status} |")
    lines += ["", "## Steps and evidence", "", "| step | status | seconds | evidence |", "|---|---|---|---|"]
    for row in h.steps:
        evidence = str(row.get("evidence", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row.get('id')} {row.get('step')} | {row.get('status')} | {row.get('seconds')} | {evidence} |")
    if h.checklist:
        body = h.checklist.split("## Checklist", 1)[-1].split("\n## ", 1)[0].strip()
        lines += ["", "## Checklist", "", body]
    lines += ["", "## Links", "", f"- rollback run: {h.rollback_url}"]
    if h.triage_url:
        lines.append(f"- triage run: {h.triage_url}")
    lines += [f"- {name}: {url}" for name, url in h.links.items() if url]
    if adr_link:
        lines.append(f"- design correction: [{adr_link.rsplit('/', 1)[-1]}]({adr_link})")
    lines += ["", "## Agenda (A.1) — for the people in the postmortem", ""]
    for title, question in AGENDA:
        lines += [f"### {title}", "", f"{question}", "", TO_FILL, ""]
    return "\n".join(lines).rstrip() + "\n"


def unfilled_sections(text: str) -> list[str]:
    """The agenda sections still marked TO FILL."""
    missing, current = [], ""
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
        elif line.strip() == TO_FILL and current:
            missing.append(current)
    return missing


def deadline_of(text: str) -> datetime | None:
    match = re.search(r"^- Deadline: (\S+)", text, re.M)
    return datetime.fromisoformat(match.group(1)) if match else None


# ---------------------------------------------------------------- ADRs (P0.3, A.2, A.5)

ADR_NAME = re.compile(r"^(\d{3,5})-[a-z0-9-]+\.md$")
STANDARD_ADR = """# ADR-NNNN: Title

- Status: proposed
- Date: YYYY-MM-DD

## Context

## Decision

## Consequences
"""


def next_adr(existing: list[str], title: str) -> tuple[int, str]:
    """The next number after the target's ADRs, zero-padded like them, and the file name."""
    numbers = [(int(m.group(1)), len(m.group(1))) for name in existing if (m := ADR_NAME.match(name))]
    width = max((w for _, w in numbers), default=4)
    number = max((n for n, _ in numbers), default=0) + 1
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]
    return number, f"{number:0{width}d}-{slug}.md"


def render_adr(template: str | None, number: int, title: str, day: str, context: str, postmortem_link: str) -> str:
    text = template or STANDARD_ADR
    width = 4
    text = re.sub(r"ADR-N+", f"ADR-{number:0{width}d}", text, count=1)
    text = re.sub(r"(# ADR-\d+: ).*", lambda m: m.group(1) + title, text, count=1)
    text = text.replace("YYYY-MM-DD", day, 1)
    text = re.sub(r"Status: .*", "Status: proposed", text, count=1)
    sections = {
        "## Context": f"{context}\n\nPostmortem: [{postmortem_link.rsplit('/', 1)[-1]}]({postmortem_link})",
        "## Decision": f"The design correction and the improvement plan (A.5).\n\n{TO_FILL}",
        "## Consequences": f"How the phase is reintroduced: behind the flag, off by default, with a canary (A.6).\n\n{TO_FILL}",
    }
    for heading, body in sections.items():
        if heading in text:
            text = text.replace(heading, f"{heading}\n\n{body}", 1)
        else:
            text = text.rstrip() + f"\n\n{heading}\n\n{body}\n"
    return text.rstrip() + "\n"
