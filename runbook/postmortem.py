"""A.1 / A.2 / A.5 / P0.3: the postmortem draft and the ADR stub, rendered from an incident's history.

Pure text: the history is read from Prefect by flows/history.py. What people must write is
marked `<!-- TO FILL -->` so the 48-hour check (flows/postmortem.py) can tell a draft from a
finished postmortem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

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
    marks = {m["milestone"]: m["seconds"] for m in h.mitigation}  # in the order reached
    reached = {name: seconds for name, seconds in marks.items() if name not in ("run started", "incident started")}
    if reached:  # the marks the steps declare (tasks/declare.py: flag off committed, pushed, deploy done)
        since = "the incident's start" if "incident started" in marks else "the run's start"
        lines.append("- Time to mitigation (from " + since + "): " + ", ".join(
            f"{name} +{seconds:.2f} s" for name, seconds in reached.items()))
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


DATED_ADR = re.compile(r"^(\d{4}-\d{2}-\d{2})-[a-z0-9-]+\.md$")


def adr_file_slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]


def next_adr(existing: list[str], title: str, day: str = "") -> tuple[int, str]:
    """The next ADR's number and file name, named as the target names its ADRs: `NNNN-title.md` (zero-padded like
    them) or, where most are dated, `YYYY-MM-DD-title.md` (numbered by count in the text)."""
    dated = [name for name in existing if DATED_ADR.match(name)]
    numbers = [(int(m.group(1)), len(m.group(1))) for name in existing
               if not DATED_ADR.match(name) and (m := ADR_NAME.match(name))]
    slug = adr_file_slug(title)
    if len(dated) > len(numbers):
        return len(dated) + 1, f"{day or datetime.now(timezone.utc).strftime('%Y-%m-%d')}-{slug}.md"
    width = max((w for _, w in numbers), default=4)
    number = max((n for n, _ in numbers), default=0) + 1
    return number, f"{number:0{width}d}-{slug}.md"


PLACEHOLDER = re.compile(r"\[(?![ xX]\])[^\]\n]{2,}\](?!\()")  # [what to write]: neither a link nor a checkbox
COMMENT = re.compile(r"<!--(?! TO FILL -->).*?-->", re.S)
FILLED = {"context": ("context", "context and problem statement"), "decision": ("decision", "decision outcome"),
          "consequences": ("consequences",)}


def _title_line(line: str, number: int, title: str) -> str:
    """The template's H1 in its own form: `# ADR-0007: …`, adr-tools' `# 7. …`, or `# …`."""
    if "ADR-" in line:
        return f"# ADR-{number:04d}: {title}"
    if re.match(r"#\s*(NUMBER|N+|\d+)\.", line):
        return f"# {number}. {title}"
    return f"# {title}"


def render_adr(template: str | None, number: int, title: str, day: str, context: str, postmortem_link: str) -> str:
    """The ADR from the target's template: its title, date and status set, the Context filled, Decision and
    Consequences marked TO FILL — and none of the template's own placeholders ([…], prompts, comments) left in:
    each becomes a TO FILL marker, so the reintroduction's gate (A.5) sees what is still to write."""
    text = COMMENT.sub("", template or STANDARD_ADR)
    text = re.sub(r"\[[^\]\n]*YYYY-MM-DD[^\]\n]*\]", day, text).replace("YYYY-MM-DD", day)
    text = re.sub(r"\bDATE\b", day, text)
    bodies = {
        "context": f"{context}\n\nPostmortem: [{postmortem_link.rstrip('/').rsplit('/', 1)[-1]}]({postmortem_link})",
        "decision": f"The design correction and the improvement plan (A.5).\n\n{TO_FILL}",
        "consequences": f"How the phase is reintroduced: behind the flag, off by default, with a canary (A.6).\n\n{TO_FILL}",
    }
    lines = [line.rstrip() for line in text.splitlines()]
    headings = {i: line.lstrip("#").strip().lower() for i, line in enumerate(lines) if line.startswith("##")}
    where: dict[int, str] = {}  # heading line → the section this ADR fills there: the exact name, else a prefix
    for key, names in FILLED.items():
        at = next((i for i, h in headings.items() if h in names), None)
        at = at if at is not None else next((i for i, h in headings.items() if h.startswith(key) and i not in where), None)
        if at is not None:
            where[at] = key
    out: list[str] = []
    titled, filled, section = False, set(), ""
    for i, line in enumerate(lines):
        if line.startswith("# ") and not titled:
            out.append(_title_line(line, number, title))
            titled = True
            continue
        if line.startswith("#"):
            name = line.lstrip("#").strip().lower()
            section = where.get(i, "")
            out.append(line)
            if section:
                filled.add(section)
                out += ["", bodies[section], ""]
            elif name == "status":
                section = "status"
                out += ["", "proposed", ""]
            continue
        if section:  # the template's text in a section this ADR fills is instructions, not content
            continue
        if re.match(r"\s*[-*]?\s*Status:", line):
            out.append(re.sub(r"Status:.*", "Status: proposed", line))
        elif line.strip().endswith("?") and not line.lstrip().startswith(("-", "*", "|")):
            out.append(TO_FILL)  # a prompt ("What is the change that we're proposing?")
        else:
            out.append(PLACEHOLDER.sub(TO_FILL, line))
    if not titled:
        out.insert(0, f"# ADR-{number:04d}: {title}")
    text = "\n".join(out)
    for key, body in bodies.items():
        if key not in filled:
            text = text.rstrip() + f"\n\n## {key.capitalize()}\n\n{body}\n"
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"
