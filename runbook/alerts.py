"""Alerts → incidents: Alertmanager (webhook format 4), Grafana alerting webhooks, a generic incident.

Pure and strict: a payload is read whole before anything is acted on, and any alert in it that
cannot become an incident (unknown phase, no kind, no regression size) refuses the whole payload
with a message naming the alert and the fix. The alert's own `severity` label is evidence only:
the runbook's matrix decides (runbook/severity.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from actor_rollback.runbook.config import INCIDENT_KINDS, ConfigError, ReceiverConfig, normalize_phase
from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import Incident, check_started_at

Source = Literal["alertmanager", "grafana"]
PREFIX = {"alertmanager": "am", "grafana": "gf", "generic": "in"}


class AlertError(BadInputError):
    """A payload that cannot be used; `status` is the HTTP answer (400 malformed, 422 unusable)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReceivedAlert:
    incident: Incident
    status: Literal["firing", "resolved"]
    key: str  # deduplication: the same alert firing again maps to the same triage run


RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _time(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise AlertError(f"{where}: startsAt must be an RFC 3339 time, got {str(text)[:80]!r}", 400)
    if not RFC3339.fullmatch(text):
        raise AlertError(f"{where}: startsAt {text[:80]!r} is not an RFC 3339 time (e.g. 2026-12-05T03:00:00Z)", 400)
    whole, _, fraction = text.upper().replace("Z", "+00:00").partition(".")
    if fraction:  # Python reads at most microseconds; Go (Alertmanager) writes nanoseconds
        digits = re.match(r"\d+", fraction).group()
        whole = f"{whole}.{digits[:6].ljust(6, '0')}{fraction[len(digits):]}"
    try:
        return check_started_at(datetime.fromisoformat(whole))
    except ValueError as exc:
        raise AlertError(f"{where}: startsAt {text!r}: {exc}", 400) from None


def _number(value: Any, what: str, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(str(value).strip().rstrip("%"))
    except ValueError:
        raise AlertError(f"{where}: {what} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise AlertError(f"{where}: {what} {value!r} is not a finite number")
    return number


def _strings(value: Any, what: str, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise AlertError(f"{where}: {what} must be an object of strings", 400)
    return value


def alerts_to_incidents(payload: Any, source: Source, cfg: ReceiverConfig) -> list[ReceivedAlert]:
    """Every alert of an Alertmanager or Grafana webhook body, as an incident."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise AlertError(f"not a {source} webhook: expected an object with an 'alerts' list", 400)
    if source == "alertmanager" and payload.get("version") != "4":
        raise AlertError(f"Alertmanager webhook version {payload.get('version')!r}; this receiver reads version '4'", 400)
    if source == "grafana" and "orgId" not in payload:
        raise AlertError("not a Grafana alerting webhook: no orgId (Alertmanager posts to /alerts/alertmanager)", 400)
    if not payload["alerts"]:
        raise AlertError(f"the {source} webhook has no alerts", 400)
    received = [_one(alert, n, source, cfg) for n, alert in enumerate(payload["alerts"])]
    return received


def _one(alert: Any, n: int, source: Source, cfg: ReceiverConfig) -> ReceivedAlert:
    where = f"alerts[{n}]"
    if not isinstance(alert, dict):
        raise AlertError(f"{where}: expected an object", 400)
    status = alert.get("status")
    if status not in ("firing", "resolved"):
        raise AlertError(f"{where}: status {status!r}; expected 'firing' or 'resolved'", 400)
    labels = _strings(alert.get("labels", {}), "labels", where)
    annotations = _strings(alert.get("annotations", {}), "annotations", where)
    fingerprint = alert.get("fingerprint")
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[A-Za-z0-9]{1,64}", fingerprint):
        raise AlertError(f"{where}: fingerprint {fingerprint!r} must be 1–64 letters or digits", 400)
    started = _time(alert.get("startsAt"), where)
    name = labels.get("alertname", "alert")
    where = f"{where} ({name})"
    phase_text = labels.get(cfg.phase_label) or cfg.default_phase
    if not phase_text:
        raise AlertError(f"{where}: no '{cfg.phase_label}' label; add it to the alert rule or set receiver.default_phase")
    try:
        phase = normalize_phase(phase_text)
    except ConfigError as exc:
        raise AlertError(f"{where}: {exc}") from None
    kind = labels.get(cfg.kind_label) or cfg.alertnames.get(name)
    if kind not in INCIDENT_KINDS:
        raise AlertError(f"{where}: kind {kind!r} is not one of {', '.join(INCIDENT_KINDS)}; add a "
                         f"'{cfg.kind_label}' label or map the alertname in receiver.alertnames")
    regression = _number(annotations.get(cfg.regression_annotation, labels.get(cfg.regression_annotation)),
                         cfg.regression_annotation, where)
    crashes = _number(annotations.get(cfg.crashes_annotation, labels.get(cfg.crashes_annotation)),
                      cfg.crashes_annotation, where)
    if kind == "perf-regression" and regression is None and status == "firing":
        raise AlertError(f"{where}: a perf-regression alert needs its size in the '{cfg.regression_annotation}' "
                         "annotation (e.g. {{ $value }})")
    stamp = started.strftime("%Y%m%dT%H%M%S")
    ident = f"{PREFIX[source]}-{fingerprint}-{stamp}"
    evidence = [f"{source} alert {name} {status} since {started.isoformat()}",
                "labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))]
    evidence += [f"{k}: {v}" for k, v in sorted(annotations.items())]
    for extra in ("generatorURL", "dashboardURL", "valueString"):
        if alert.get(extra):
            evidence.append(f"{extra}: {alert[extra]}")
    try:
        incident = Incident(id=ident, source=source, phase=phase, kind=kind, regression_pct=regression,
                            crashes_per_hour=crashes, summary=annotations.get("summary", name), labels=labels,
                            evidence=evidence, started_at=started)
    except ValidationError as exc:
        names = {"crashes_per_hour": cfg.crashes_annotation, "regression_pct": cfg.regression_annotation}
        raise AlertError(f"{where}: " + "; ".join(f"{names.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}"
                                                  for e in exc.errors())) from None
    return ReceivedAlert(incident=incident, status=status, key=f"{ident}")


def generic_incident(payload: Any) -> ReceivedAlert:
    """A JSON incident posted by a person's script or another tool: the Incident fields themselves."""
    if not isinstance(payload, dict):
        raise AlertError("expected a JSON object with the incident's fields (id, phase, kind, ...)", 400)
    try:
        incident = Incident.model_validate({**payload, "source": "generic"})  # the endpoint says where it came from
        incident = incident.model_copy(update={"phase": normalize_phase(incident.phase)})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise AlertError(f"not an incident: {problems}") from None
    except ConfigError as exc:
        raise AlertError(str(exc)) from None
    if incident.kind is None:
        raise AlertError(f"incident {incident.id}: give its kind, one of {', '.join(INCIDENT_KINDS)}")
    return ReceivedAlert(incident=incident, status="firing", key=f"{PREFIX['generic']}-{incident.id}")
