"""P1.3b / P1.C4 / P2A.4 / P2A.5 / X.3: watch the service after the deploy.

Two sources. With `monitoring.prometheus_url`, the configured PromQL queries run (through
prometheus-api-client) over the post-deploy window and over a pre-incident baseline window;
with only `monitoring.metrics_url` (the embedded default), the service's /metrics is read at the
start and the end of the window and rates come from the counters' deltas. Each metric gets a
verdict against its threshold or its baseline; a source that cannot be reached or a query that
returns nothing leaves the metric `unverified` — never `pass`.
"""

from __future__ import annotations

import math
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
from prometheus_client.parser import text_string_to_metric_families

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.model import StepResult
from actor_rollback.tasks.attempts import with_attempts
from actor_rollback.tasks.context import StepContext
from actor_rollback.tasks.declare import declare_step
from actor_rollback.tasks.progress import StepProgress, wait_with_progress

Verdict = str  # "pass" | "fail" | "unverified"


@dataclass
class Reading:
    metric: str
    value: float | None  # None: no data
    baseline: float | None = None
    verdict: Verdict = "unverified"
    rule: str = ""

    def line(self) -> str:
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        base = "" if self.baseline is None else f" (baseline {self.baseline:.4g})"
        return f"{self.verdict.upper():10} {self.metric} = {shown}{base}  {self.rule}".rstrip()


class SourceUnreachable(Exception):
    pass


# ---------------------------------------------------------------- reading the service directly


def tls_verify(ca_bundle: str) -> ssl.SSLContext | bool:
    """Certificates are checked: against the system's CAs, or `monitoring.ca_bundle` (a PEM file) for a private
    CA. There is no setting that turns the check off."""
    if not ca_bundle:
        return True
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise BadInputError(f"monitoring.ca_bundle = {ca_bundle!r} cannot be read as PEM certificates ({exc}); "
                            "point it at your CA's certificate file") from None


def _unreachable(url: str, exc: Exception, detail: bool = True) -> SourceUnreachable:
    text = f"{url}: {exc}" if detail else f"{url}: {type(exc).__name__}"
    if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
        text = (f"{url}: its TLS certificate is not trusted (certificate verify failed): set monitoring.ca_bundle to "
                "the PEM file of the CA that signed it")
    return SourceUnreachable(text)


def scrape(url: str, ca_bundle: str = "") -> dict[str, float]:
    """One /metrics read: sample name (with its labels) → value."""
    try:
        response = httpx.get(url, timeout=5, verify=tls_verify(ca_bundle))
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise _unreachable(url, exc) from None
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts (linear within a bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 0)
        lower, below = bound, count
    return lower


def rates_between(first: dict[str, float], last: dict[str, float], seconds: float, names: dict[str, str]) -> dict:
    def delta(name: str) -> float | None:
        if name in first and name in last:
            return last[name] - first[name]
        return None

    processed, errors = delta(names["processed"]), delta(names["errors"])
    buckets = {}
    prefix = names["latency"] + "_bucket{le="
    for key, value in last.items():
        if key.startswith(prefix) and key in first:
            bound = key[len(prefix):-1]
            buckets[float("inf") if bound == "+Inf" else float(bound)] = value - first[key]
    cpu = delta("process_cpu_seconds_total")
    return {
        "throughput": processed / seconds if processed is not None else None,
        "error_rate": errors / processed if processed and errors is not None else None,
        "latency_p99": histogram_quantile(0.99, buckets),
        "cpu": cpu / seconds if cpu is not None else None,
        "memory": last.get("process_resident_memory_bytes"),
        "worker_tasks": last.get(names["worker_tasks"]),
        "pending_messages": last.get(names["pending_messages"]),
    }


def watching(ctx: StepContext) -> StepProgress:
    return StepProgress(ctx, "monitor", ctx.cfg.monitoring.window_seconds, "metrics window opened")


def watch_scrape(ctx: StepContext) -> tuple[dict, dict | None, list[str]]:
    m = ctx.cfg.monitoring
    first = with_attempts(lambda: scrape(m.metrics_url, m.ca_bundle), m.attempts, SourceUnreachable)
    started = time.monotonic()
    wait_with_progress(watching(ctx), m.window_seconds, f"watching {m.metrics_url}")
    last = with_attempts(lambda: scrape(m.metrics_url, m.ca_bundle), m.attempts, SourceUnreachable)
    values = rates_between(first, last, time.monotonic() - started, m.metrics.model_dump())
    return values, None, [f"read {m.metrics_url} over {m.window_seconds} s (no history: no baseline window)"]


# ---------------------------------------------------------------- Prometheus


def _prometheus(url: str, ca_bundle: str = ""):
    import requests
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    session = requests.Session()
    session.verify = ca_bundle or True  # checked (tls_verify refuses an unreadable bundle first)
    tls_verify(ca_bundle)
    return PrometheusConnect(url=url, session=session, retry=Retry(total=0), timeout=5)


def window_means(url: str, queries: dict[str, str], start: datetime, end: datetime, step: str,
                 ca_bundle: str = "") -> dict[str, float | None]:
    """Each query's mean over [start, end] (pandas over the returned series; None when empty)."""
    import numpy as np  # here, not at the top: the receiver's flag-off first loads the step registry, fast
    import pandas as pd
    from prometheus_api_client.exceptions import PrometheusApiClientException
    from requests.exceptions import RequestException

    prom, means = _prometheus(url, ca_bundle), {}
    for name, query in queries.items():
        try:
            series = prom.custom_query_range(query, start_time=start, end_time=end, step=step)
        except RequestException as exc:
            raise _unreachable(url, exc, detail=False) from None
        except PrometheusApiClientException as exc:
            raise BadInputError(f"Prometheus rejected the {name} query {query!r}: {exc}") from None
        points = [float(v) for s in series for _, v in s.get("values", [])]
        frame = pd.DataFrame({"value": points}).replace([math.inf, -math.inf], math.nan).dropna()
        with np.errstate(over="ignore"):  # an overflowing sum is caught below, not a warning
            mean = float(frame["value"].mean()) if not frame.empty else None
        means[name] = mean if mean is None or math.isfinite(mean) else math.nan  # overflowed: judged unverified
    return means


def watch_prometheus(ctx: StepContext) -> tuple[dict, dict | None, list[str]]:
    m = ctx.cfg.monitoring
    started = datetime.now(timezone.utc)
    wait_with_progress(watching(ctx), m.window_seconds, "post-deploy window")
    end = datetime.now(timezone.utc)
    incident_start = ctx.facts.get("incident_started_at")
    base_end = datetime.fromisoformat(incident_start) if incident_start else started - timedelta(
        seconds=m.baseline_offset_seconds)
    base_start = base_end - timedelta(seconds=m.window_seconds)
    step = f"{m.step_seconds}s"
    def means(start: datetime, stop: datetime) -> dict[str, float | None]:
        return with_attempts(lambda: window_means(m.prometheus_url, m.queries, start, stop, step, m.ca_bundle),
                             m.attempts, SourceUnreachable)

    post, base = means(started, end), means(base_start, base_end)
    return post, base, [f"Prometheus {m.prometheus_url}: post-deploy window {started:%H:%M:%S}–{end:%H:%M:%S}, "
                        f"baseline {base_start:%H:%M:%S}–{base_end:%H:%M:%S}"]


# ---------------------------------------------------------------- a plan's read-only probe


def probe_metrics(ctx: StepContext) -> StepResult:
    """What a plan knows of the monitor step: the source answers now, and each metric it will judge has data —
    else the step is `needs-human` (the run would leave those metrics unverified), or `would-fail` for a query
    Prometheus rejects (the run would fail on it). One read, no window, nothing written."""
    m = ctx.cfg.monitoring
    try:
        found, missing = _probe_prometheus(m) if m.prometheus_url else _probe_scrape(m)
    except SourceUnreachable as exc:
        return StepResult(id=ctx.step_id, name="monitor", status="needs-human", evidence=[
            f"the metrics source does not answer now ({exc}): unless it is up after the deploy, the run leaves "
            "throughput, latency and error rate unverified and a person watches the dashboards"],
            data={"metrics_source": "unreachable"})
    if missing:
        return StepResult(id=ctx.step_id, name="monitor", status="needs-human", evidence=[
            f"no data now for {', '.join(missing)}: the run would judge them unverified; check the "
            f"{'queries' if m.prometheus_url else 'metric names'} in the config", *found])
    return StepResult(id=ctx.step_id, name="monitor", status="planned", evidence=[
        f"watch {m.window_seconds:g} s after the deploy; each metric answers now:", *found])


def _probe_scrape(m) -> tuple[list[str], list[str]]:
    samples = scrape(m.metrics_url, m.ca_bundle)
    names = m.metrics
    wanted = dict(zip(JUDGED, (names.processed, names.latency + "_bucket", names.errors)))
    found, missing = [], []
    for metric, name in wanted.items():
        present = [key for key in samples if key == name or key.startswith(name + "{")]
        (found if present else missing).append(f"{metric} ({name})" + (f": {len(present)} series" if present else ""))
    return [f"{m.metrics_url}: {line}" for line in found], missing


def _probe_prometheus(m) -> tuple[list[str], list[str]]:
    from prometheus_api_client.exceptions import PrometheusApiClientException
    from requests.exceptions import RequestException

    prom, found, missing = _prometheus(m.prometheus_url, m.ca_bundle), [], []
    for name, query in m.queries.items():
        judged = name in JUDGED
        try:
            series = prom.custom_query(query)
        except RequestException as exc:
            raise _unreachable(m.prometheus_url, exc, detail=False) from None
        except PrometheusApiClientException as exc:
            raise BadInputError(f"Prometheus rejected the {name} query {query!r}: {exc}") from None
        if series:
            found.append(f"{m.prometheus_url}: {name} = {query}: {len(series)} series")
        elif judged:
            missing.append(f"{name} ({query})")
        else:  # evidence only (X.3), or judged only where the service has it (P2A.4/P2A.5)
            found.append(f"{m.prometheus_url}: {name} = {query}: no data now (not judged without it)")
    return found, missing


JUDGED = ("throughput", "latency_p99", "error_rate")  # what every phase's monitor judges; a plan needs their data


# ---------------------------------------------------------------- verdicts


def judge(values: dict, baseline: dict | None, ctx: StepContext) -> list[Reading]:
    t = ctx.cfg.monitoring.thresholds
    base = baseline or {}
    readings = []

    def add(metric: str, passes, rule: str) -> None:
        value, against = values.get(metric), base.get(metric)
        finite = [v for v in (value, against) if v is not None and not math.isfinite(v)] == []
        reading = Reading(metric, value, against if finite else None,
                          rule=rule if finite else f"{rule} — not judged: a value that is not a finite number")
        verdict = passes(value, reading.baseline) if value is not None and finite else None
        reading.verdict = "unverified" if verdict is None else ("pass" if verdict else "fail")
        readings.append(reading)

    add("error_rate", lambda v, b: v <= t.error_rate_max, f"<= {t.error_rate_max:g}")
    add("latency_p99", lambda v, b: v <= t.latency_p99_max_seconds, f"<= {t.latency_p99_max_seconds:g} s")
    drop, floor = t.throughput_drop_max_pct, t.throughput_min

    def throughput_ok(value: float, base: float | None) -> bool | None:
        if base is None and not floor:
            return None  # nothing to compare with: a person judges
        return value >= floor and (base is None or value >= base * (1 - drop / 100))

    rules = ([f">= baseline - {drop:g} %"] if baseline is not None else []) + ([f">= {floor:g}/s"] if floor else [])
    add("throughput", throughput_ok, " and ".join(rules) or "no baseline and no throughput_min: not judged")
    restore = ctx.phase_cfg.restore
    expected_workers = restore.values.get("worker_count") if restore else None
    if "worker_tasks" in values and expected_workers is not None:  # P2A.4
        add("worker_tasks", lambda v, b: v == expected_workers, f"== {expected_workers} (no leaked workers)")
    if "pending_messages" in values:  # P2A.5
        add("pending_messages", lambda v, b: v <= t.pending_messages_max, f"<= {t.pending_messages_max:g}")
    for metric in ("cpu", "memory"):  # X.3: evidence, judged by people
        if metric in values:
            readings.append(Reading(metric, values.get(metric), base.get(metric), "info", "resources (X.3)"))
    return readings


def regression_pct(readings: list[Reading], ctx: StepContext) -> float | None:
    """How far the failing readings are off, in %: against the baseline window when there is one,
    else past the configured threshold. The largest, for triage's severity matrix."""
    t = ctx.cfg.monitoring.thresholds
    limits = {"throughput": t.throughput_min, "latency_p99": t.latency_p99_max_seconds, "error_rate": t.error_rate_max}
    worst = None
    for r in readings:
        if r.verdict != "fail" or r.value is None or r.metric not in limits:
            continue
        reference = r.baseline if r.baseline else limits[r.metric]
        if not reference:
            continue
        off = (reference - r.value if r.metric == "throughput" else r.value - reference) / reference * 100
        worst = off if worst is None else max(worst, off)
    return worst


def _describe_monitor(spec, cfg, phase) -> list[str]:
    source = cfg.monitoring.prometheus_url or cfg.monitoring.metrics_url or "(no metrics source configured)"
    return [f"query {source}: {name} = {query}" for name, query in cfg.monitoring.queries.items()]


@declare_step("monitor", describe=_describe_monitor,
      evidence={"P1.C4": "error_rate", "P2A.4": "worker_tasks", "P2A.5": "pending_messages"})
def watch_metrics(ctx: StepContext) -> StepResult:
    """Watch throughput, latency, CPU/memory and error rate after the deploy; judge each."""
    m = ctx.cfg.monitoring
    source = m.prometheus_url or m.metrics_url
    if ctx.dry_run and source:
        return probe_metrics(ctx)
    if not source:
        return StepResult(id=ctx.step_id, name="monitor", status="needs-human", evidence=[
            "no metrics source: set monitoring.prometheus_url or monitoring.metrics_url; watch the dashboards by hand"])
    try:
        values, baseline, evidence = (watch_prometheus if m.prometheus_url else watch_scrape)(ctx)
    except SourceUnreachable as exc:
        return StepResult(id=ctx.step_id, name="monitor", status="needs-human", evidence=[
            f"metrics source unreachable after {m.attempts} attempts ({exc}): nothing is verified; "
            "watch the dashboards by hand"], data={"error_rate": "unverified"})
    readings = judge(values, baseline, ctx)
    data = {r.metric: r.verdict for r in readings if r.verdict != "info"}
    judged = [r for r in readings if r.verdict != "info"]
    status = ("failed" if any(r.verdict == "fail" for r in judged)
              else "needs-human" if any(r.verdict == "unverified" for r in judged) else "done")
    links = [f"{k}: {v}" for k, v in ctx.cfg.dashboards.model_dump().items() if v]
    result = StepResult(id=ctx.step_id, name="monitor", status=status,
                        evidence=[*evidence, *(r.line() for r in readings), *links], data=data)
    if status == "failed":
        result.failure = "fault"
        worst = regression_pct(readings, ctx)
        if worst is not None:
            result.data["regression_pct"] = f"{worst:.2f}"
    return result
