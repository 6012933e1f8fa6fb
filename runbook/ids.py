"""Incident ids: one rule for every entry (CLI, UI form, receiver, triage), checked before anything changes.

An id becomes part of branch names (`rollback/<id>`), refs (`refs/backup/<id>`), file names, run
names and commit trailers, so it must be a valid git ref component, short, and printable — a
newline in it would forge trailers (`Runbook-Step: P4.3`) in every commit message.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from actor_rollback.runbook.errors import BadInputError

MAX_LENGTH = 96
ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class IncidentIdError(BadInputError, ValueError):
    pass


def check_incident_id(text: str) -> str:
    """The id itself, or IncidentIdError saying which rule it breaks and what an id looks like."""
    shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
    example = "e.g. INC-123 or inc-20261129-0312"
    if not text:
        raise IncidentIdError(f"the incident id is empty; give one ({example})")
    if len(text) > MAX_LENGTH:
        raise IncidentIdError(f"the incident id {shown} is {len(text)} characters; at most {MAX_LENGTH}")
    if not ALLOWED.fullmatch(text):
        bad = sorted({c for c in text if not re.fullmatch(r"[A-Za-z0-9._-]", c)}, key=ord)
        named = ", ".join(repr(c) for c in bad) if bad else "its first character"
        raise IncidentIdError(f"the incident id {shown} may hold letters, digits, '.', '_' and '-' only, starting with "
                              f"a letter or digit (not {named}); {example}")
    if ".." in text or text.endswith((".", ".lock")):
        raise IncidentIdError(f"the incident id {shown} is not a valid git ref name ('..', a trailing '.' or "
                              f"'.lock'); {example}")
    return text


def derived_id(base: str, suffix: str) -> str:
    """An id made from another (`<id>-canary`) that always fits the rule: a base too long for the suffix is cut and
    given 8 hex digits of its hash, so two long ids never derive the same one."""
    if len(base) + len(suffix) <= MAX_LENGTH:
        return check_incident_id(base + suffix)
    import hashlib

    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    head = base[:MAX_LENGTH - len(suffix) - len(digest) - 1].rstrip("._-")
    return check_incident_id(f"{head}-{digest}{suffix}")


def new_incident_id() -> str:
    """For a run started without an incident id: named after when it started (UTC)."""
    return "inc-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
