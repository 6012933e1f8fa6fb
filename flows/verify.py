"""Scheduled verification (R1.1): the metrics and the benchmarks against their baselines, on a
schedule; a regression becomes an incident with its evidence and goes to triage.

The checks are the phase flows' own `monitor` and `benchmarks` steps, so a scheduled run judges
exactly as a rollback does. Nothing is changed by a verification run; only triage acts.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from actor_rollback.flows.outcome import add_tags, outcome_state, pause_for_a_person, run_flow
from actor_rollback.flows.triage import triage
from actor_rollback.runbook.config import effective_config, normalize_phase
from actor_rollback.runbook.model import LEADS, Incident, StepResult, worst
from actor_rollback.runbook.phases import PHASE_STEPS
from actor_rollback.tasks.context import StepContext, artifact_key
from actor_rollback.tasks.registry import execute_step
from actor_rollback.tasks.steps import step_call


def _run_name() -> str:
    return f"verify-phase-{flow_run.parameters.get('phase') or 'scheduled'}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


@flow(name="verify", flow_run_name=_run_name, log_prints=True, persist_result=False,
      on_completion=[pause_for_a_person])
def verify(repo: str, config: str = "", phase: str = "", start_triage: bool = True) -> dict:
    """Check the live metrics and the benchmarks against their baselines; on a regression, start triage.

    Args:
        repo: Path of the target workspace's git clone.
        config: Path of a rollback.toml; when empty, the repository's own rollback.toml, else the shipped one.
        phase: The phase whose rollout is verified; verification.phase from the config when empty.
        start_triage: Start triage on a regression (off: only report it).
    """
    cfg = effective_config(config, repo)
    key = normalize_phase(phase or cfg.verification.phase)
    stamp = datetime.now(timezone.utc)
    ctx = StepContext(repo=Path(repo).resolve(), cfg=cfg, phase=key, incident=f"verify-{stamp:%Y%m%d-%H%M%S}",
                      reason="scheduled verification")
    specs = {s.name: s for s in PHASE_STEPS[key]}
    results: list[StepResult] = []
    for check in cfg.verification.checks:
        spec = specs.get(check)
        if spec is None:  # e.g. phase 3 has no benchmarks step
            results.append(StepResult(id="R1.1", name=check, status="skipped", evidence=[f"phase {key} has no {check} check"]))
            continue
        results.append(execute_step(spec, ctx.for_step(spec.id), step_call(check)))
    regressed = [r for r in results if r.status == "failed"]
    incident = None
    if regressed:
        sizes = [float(r.data["regression_pct"]) for r in regressed if "regression_pct" in r.data]
        incident = Incident(
            id=f"verify-{key.lower()}-{stamp:%Y%m%dT%H%M%S}", source="schedule", phase=key, kind="perf-regression",
            regression_pct=max(sizes) if sizes else None, started_at=stamp,
            summary=f"scheduled verification: {', '.join(r.name for r in regressed)} regressed",
            evidence=[f"{r.id} {r.name}: {line}" for r in regressed for line in r.evidence])
    lines = [f"# Verification of phase {key} — {stamp:%Y-%m-%d %H:%M:%S} UTC", ""]
    for r in results:
        lines += [f"- **{r.status}** {r.id} {r.name}", *(f"  - {e}" for e in r.evidence)]
    lines += ["", f"Regression: **{'yes' if incident else 'no'}**"
              + (f" ({incident.regression_pct:.2f} %)" if incident and incident.regression_pct is not None else "")]
    create_markdown_artifact(markdown="\n".join(lines), key=artifact_key("verify-phase", key),
                             description=f"Scheduled verification of phase {key}")
    outcome = worst(r.outcome for r in results)
    report = {"phase": key, "checks": [r.public() for r in results], "incident": None, "triage": None,
              "outcome": outcome}
    message = (f"verify phase {key}: done — " + ", ".join(f"{r.name} {r.status}" for r in results) if outcome == "done"
               else f"verify phase {key}: {LEADS[outcome]} — " + "; ".join(r.headline() for r in results
                                                                          if r.outcome == outcome))
    if incident is not None:
        report["incident"] = incident.model_dump(mode="json")
        if incident.regression_pct is None:
            get_run_logger().error("a check failed without a measurable size; a person triages: %s", incident.evidence)
            message += "; no measurable size: a person triages"
        elif start_triage:
            report["triage"] = run_flow(triage, incident=incident, repo=repo, config=config)
            message += f"; triage {incident.id}: {report['triage']['decision']['severity']}"
    add_tags("actor-rollback", "verify", f"phase:{key}", f"outcome:{outcome}")
    return outcome_state(outcome, message, report)
