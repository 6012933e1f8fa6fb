"""The runbook's configuration (`rollback.toml`), validated into typed models.

Unknown keys are errors: a misspelt key silently ignored is a rollback that does something
other than what the file says.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PHASES = ("0", "1", "2A", "2B", "3", "4")
ROLES = ("tech-lead", "sre-oncall", "project-manager", "architect", "development-team")
SEVERITIES = ("critical", "high", "medium", "low")
from actor_rollback.runbook.errors import BadInputError  # noqa: E402
from actor_rollback.runbook import SHIPPED_CONFIG  # noqa: E402  (re-exported: callers import it from here)
from actor_rollback.runbook.model import INCIDENT_KINDS  # noqa: E402  (re-exported for the receiver's alert names)


class ConfigError(BadInputError, ValueError):
    """The configuration file is missing, unreadable or invalid; the message names the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _inside_repository(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or value.startswith("~") or "\\" in value:
        raise ValueError(f"{value!r} must be a path inside the repository: relative, with '/' and without '..' "
                         "(actor-rollback writes there, and pushes what it writes)")
    return value


# A path in the target repository that a step reads or writes and commits: never outside it.
RepoPath = Annotated[str, AfterValidator(_inside_repository)]


class ChecklistSpec(_Strict):
    id: str = Field(pattern=r"^P(0|1|2A|2B|3|4)\.[A-Za-z0-9]+$")
    item: str = Field(min_length=1)


class RestoreSpec(_Strict):
    file: RepoPath
    table: str
    values: dict[str, str | int | float | bool]


class CodeChecks(_Strict):
    file: RepoPath
    present: list[str] = []
    absent: list[str] = []


class PhaseConfig(_Strict):
    title: str
    branch: str = Field(min_length=1)
    merged: bool = True
    merge_patterns: list[str] = []
    old_path: RepoPath = ""
    new_path: RepoPath = ""
    deploy_version: str = ""
    checklist: list[ChecklistSpec] = []
    restore: RestoreSpec | None = None
    code_checks: CodeChecks | None = None
    tokio_build: str = ""
    ci_file: RepoPath = Field(default=".github/workflows/ci.yml", min_length=1)
    ci_disable_targets: list[str] = []
    ci_disable_jobs: list[str] = []  # P3.3: job ids turned off whatever they build (when no target names them)
    baseline_commit_pattern: str = ""
    baseline_tag: str = ""

    @model_validator(mode="after")
    def _merged_phases_have_patterns(self) -> PhaseConfig:
        if self.merged and not self.merge_patterns:
            raise ValueError("a merged phase needs merge_patterns (the runbook's --grep strings)")
        return self


class GitConfig(_Strict):
    push: Literal["direct", "branch"] = "direct"
    push_attempts: int = Field(default=3, ge=1, le=20)
    commit_author: str = "actor-rollback <actor-rollback@localhost>"

    @field_validator("commit_author")
    @classmethod
    def _author_has_email(cls, value: str) -> str:
        if not re.fullmatch(r"[^<>]+ <[^<>@\s]+@[^<>\s]*>", value):
            raise ValueError("expected 'Name <email>'")
        return value


class CiConfig(_Strict):
    check: Literal["command", "commit-status"] = "command"
    command: str = "cargo test --workspace"
    timeout_seconds: int = Field(default=1800, gt=0)
    status_url: str = ""
    token_env: str = "GITHUB_TOKEN"
    poll_seconds: float = Field(default=5.0, gt=0)
    gate_deploy: bool = True  # the deploy waits for CI green (the runbook's order); False runs both at once
    remember_pass: bool = True  # a commit whose CI passed here is not tested again by a rerun


class KubernetesConfig(_Strict):
    namespace: str = "default"
    deployment: str = "actor-system"
    container: str = "actor-system"
    image: str = "registry.example.com/actor-system:{version}"
    label_selector: str = "app=actor-system"
    rollout_timeout_seconds: int = Field(default=600, gt=0)
    poll_seconds: float = Field(default=2.0, gt=0)


class DeployConfig(_Strict):
    backend: Literal["command", "kubernetes"] = "command"
    command: str = "./scripts/deploy.sh production --version={version}"
    timeout_seconds: int = Field(default=900, gt=0)
    kubernetes: KubernetesConfig = KubernetesConfig()


class MonitoringThresholds(_Strict):
    error_rate_max: float = Field(default=0.01, ge=0)
    latency_p99_max_seconds: float = Field(default=0.05, gt=0)
    throughput_drop_max_pct: float = Field(default=10.0, ge=0, lt=100)  # against the pre-incident baseline
    throughput_min: float = Field(default=0.0, ge=0)  # messages/s; 0 = judge against the baseline only
    pending_messages_max: float = Field(default=0.0, ge=0)  # P2A.5


class MetricNames(_Strict):
    """The service's own metric names, for reading /metrics directly (no Prometheus)."""

    processed: str = "actor_messages_processed_total"
    errors: str = "actor_message_errors_total"
    latency: str = "actor_message_latency_seconds"
    worker_tasks: str = "actor_worker_tasks"
    pending_messages: str = "actor_pending_messages"


class MonitoringConfig(_Strict):
    prometheus_url: str = ""
    metrics_url: str = ""
    window_seconds: float = Field(default=300, gt=0)
    baseline_offset_seconds: int = Field(default=3600, ge=0)
    step_seconds: int = Field(default=15, gt=0)
    attempts: int = Field(default=3, ge=1, le=10)
    ca_bundle: str = ""  # PEM file of a private CA for HTTPS metrics; "" = the system's CAs (always verified)
    queries: dict[str, str] = {}
    metrics: MetricNames = MetricNames()
    thresholds: MonitoringThresholds = MonitoringThresholds()


class LogsConfig(_Strict):
    source: Literal["kubernetes", "file", "command"] = "kubernetes"
    file: str = ""  # for source = "file": relative to the workspace, or absolute
    command: str = ""  # for source = "command": prints the recent log lines
    tail_lines: int = Field(default=1000, gt=0)
    error_pattern: str = "(?i)error"
    max_error_lines: int = Field(default=0, ge=0)
    timeout_seconds: int = Field(default=60, gt=0)

    @field_validator("error_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from exc
        return value


class BenchmarksConfig(_Strict):
    commands: list[str] = Field(min_length=1)
    baseline: str
    criterion_dir: str = "target/criterion"
    tolerance_pct: float = Field(default=2.0, gt=0, lt=100)
    timeout_seconds: int = Field(default=1800, gt=0)
    # "" compares with `baseline`; a git ref (or "merge-parent": the phase merge's first parent) is
    # built and benched in the same run, interleaved with the current tree, so machine drift cancels.
    baseline_ref: str = ""
    rounds: int = Field(default=3, ge=1, le=50)  # rounds before the first look (7 at least: fewer decide nothing)
    budget_minutes: float = Field(default=15.0, gt=0, le=24 * 60)  # more rounds while undecided, up to this long
    criterion_args: list[str] = ["--noplot"]  # after `--` of each `cargo bench --bench NAME` command
    env: dict[str, str] = {}  # extra environment for the bench commands
    mode: Literal["wall", "instructions"] = "wall"  # instructions: Callgrind counts (tasks/instructions.py)
    instruction_repeats: int = Field(default=3, ge=2, le=20)
    confirm_by_wall: bool = False  # instructions mode: a regression is confirmed by the wall-clock rounds


def parse_duration(text: str) -> timedelta:
    """'0s', '90m', '1h', '24h', '7d', '1w' → timedelta."""
    match = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if not match:
        raise ValueError(f"expected a duration like '0s', '1h', '24h', '7d', got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


class SeverityConfig(_Strict):
    high_regression_pct: float = 10.0
    medium_regression_pct: float = 5.0
    frequent_crashes_per_hour: float = Field(default=3.0, gt=0)  # at or above: "frequent crashes" (High)
    deadlines: dict[Literal["critical", "high", "medium", "low"], str]
    owners: dict[Literal["critical", "high", "medium", "low"], str]
    notify: dict[Literal["critical", "high", "medium", "low"], list[str]] = {}  # roles; the owner by default

    @field_validator("deadlines")
    @classmethod
    def _durations(cls, value: dict[str, str]) -> dict[str, str]:
        for text in value.values():
            parse_duration(text)
        return value

    @model_validator(mode="after")
    def _complete_and_ordered(self) -> SeverityConfig:
        for name, table in (("deadlines", self.deadlines), ("owners", self.owners)):
            missing = [s for s in SEVERITIES if s not in table]
            if missing:
                raise ValueError(f"{name} needs every severity; missing {', '.join(missing)}")
        if not 0 < self.medium_regression_pct < self.high_regression_pct:
            raise ValueError("expected 0 < medium_regression_pct < high_regression_pct")
        return self

    def deadline(self, severity: str) -> timedelta:
        return parse_duration(self.deadlines[severity])  # type: ignore[index]

    def roles_to_notify(self, severity: str) -> list[str]:
        return list(self.notify.get(severity) or [self.owners[severity]])  # type: ignore[index]


class TriageConfig(_Strict):
    """F.1–F.4 as a flow: the critical path, the owner's decision (F.3) and where issues go (F.4)."""

    critical_steps: list[str] = ["flag", "push", "deploy"]  # F.1: flag off now; no waiting on benchmarks
    high_skip: list[str] = []  # F.2: steps a High incident's rollback leaves out (e.g. benchmarks: verify/scheduled)
    reminder_before: str = "2h"  # F.3: remind the owner this long before the decision deadline
    watch_seconds: float = Field(default=10.0, gt=0)  # serve looks this often at suspended F.3 runs' deadlines
    issue_sink: Literal["file", "http"] = "file"  # F.4
    issue_dir: RepoPath = Field(default="docs/issues", min_length=1)  # in the target workspace, committed (and pushed per git.push)
    issue_url: str = ""  # http sink: POST a JSON issue here
    issue_token_env: str = ""  # the env var holding the tracker's bearer token

    @field_validator("reminder_before")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _sink_complete(self) -> TriageConfig:
        if self.issue_sink == "http" and not self.issue_url.startswith(("http://", "https://")):
            raise ValueError("issue_sink = 'http' needs issue_url = 'https://tracker.example.com/api/issues'")
        return self


class ReceiverConfig(_Strict):
    """The alert receiver: who may post, how alerts become incidents."""

    host: str = "127.0.0.1"
    port: int = Field(default=9095, ge=0, le=65535)
    token_env: str = "ACTOR_ROLLBACK_RECEIVER_TOKEN"  # bearer token; required
    hmac_secret_env: str = ""  # when set, an X-Signature: sha256=<hex> of the body is required
    # Grafana signs with its own scheme (contact point → HMAC signature): hex HMAC-SHA256 of the body, or of
    # "<timestamp>:<body>" when it is given a timestamp header; accepted on /alerts/grafana besides X-Signature
    grafana_signature_header: str = "X-Grafana-Alerting-Signature"
    grafana_timestamp_header: str = ""  # e.g. X-Grafana-Alerting-Signature-Timestamp; then required and fresh
    signature_max_age_seconds: int = Field(default=300, gt=0)  # a signed timestamp older than this is a replay
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    phase_label: str = "phase"
    kind_label: str = "kind"
    regression_annotation: str = "regression_pct"
    crashes_annotation: str = "crashes_per_hour"
    default_phase: str = ""  # for alerts without a phase label; empty = such alerts are refused
    alertnames: dict[str, str] = {}  # alertname -> incident kind, for alerts without a kind label
    deployment: str = "triage/alert"  # the triage deployment a firing alert starts
    critical_in_process: bool = True  # F.1: a Critical incident's triage runs in the receiver's process (warm)
    # F.1 first: with critical_in_process, a Critical's flag off is committed and pushed the moment the alert is
    # stored, before any Prefect call (host lock, own work tree); its triage run records it
    critical_flag_off_first: bool = True
    high_in_process: bool = True  # F.2: a High one's too, in a pool of its own: never behind Medium/Low runner slots
    spool_dir: str = ""  # accepted incidents, fsynced before the 202; "" = $XDG_STATE_HOME/actor-rollback/receiver
    backlog_alarm_seconds: float = Field(default=60, gt=0)  # /healthz says degraded when an alert waits longer
    request_timeout_seconds: float = Field(default=5.0, gt=0, le=300)  # a whole request (headers + body) within this
    keep_alive_seconds: int = Field(default=5, gt=0, le=300)  # an idle kept-alive connection is closed after this
    limit_concurrency: int = Field(default=512, ge=8)  # connections + requests at once; beyond it a 503 (retried)
    # one address's open connections at most (0: no cap — behind a proxy, whose address is every client's); beyond
    # it a new connection is closed at once, before it holds a slot: one flooding address cannot take every slot
    max_connections_per_client: int = Field(default=256, ge=0)
    backlog: int = Field(default=1024, ge=16)  # the listen queue: bursts of new connections wait, not dropped
    tls_certfile: str = ""  # TLS by uvicorn itself; "" = plain HTTP behind a TLS-terminating proxy or ingress
    tls_keyfile: str = ""

    @model_validator(mode="after")
    def _cap_below_the_limit(self) -> ReceiverConfig:
        if self.max_connections_per_client >= self.limit_concurrency:
            raise ValueError(f"max_connections_per_client = {self.max_connections_per_client} must be below "
                             f"limit_concurrency = {self.limit_concurrency} (or 0 for no cap): one address must "
                             "leave slots to the others")
        return self

    @field_validator("alertnames")
    @classmethod
    def _kinds(cls, value: dict[str, str]) -> dict[str, str]:
        for name, kind in value.items():
            if kind not in INCIDENT_KINDS:
                raise ValueError(f"alertnames.{name} = {kind!r}: expected one of {', '.join(INCIDENT_KINDS)}")
        return value


class ReintroduceConfig(_Strict):
    """A.6: bring a phase back step by step — flag off by default, a canary with the flag on."""

    version: str = "reintroduce-phase{phase}"
    canary_command: str = "./scripts/deploy.sh canary --version={version} --new-scheduler=on"
    canary_stop_command: str = "./scripts/deploy.sh canary --stop"
    canary_env: dict[str, str] = {}  # e.g. the canary's port and state folder (Kubernetes: the container's env)
    # Kubernetes backend: a Deployment `<deployment>-canary` beside the stable one, from an image built with the
    # flag on (a Cargo feature is compiled in, so the canary needs its own image)
    canary_image: str = "registry.example.com/actor-system:{version}-new-scheduler"
    canary_replicas: int = Field(default=1, ge=1)
    canary_metrics_url: str = "http://127.0.0.1:19101/metrics"
    canary_window_seconds: int = Field(default=300, gt=0)  # the canary is watched this long against the stable service
    timeout_seconds: int = Field(default=900, gt=0)


class VerificationConfig(_Strict):
    """Scheduled verification: benchmarks and metrics against the baseline, triage on a regression."""

    cron: str = "0 */6 * * *"
    phase: str = "1"  # the phase whose rollout is being verified
    checks: list[Literal["monitor", "benchmarks"]] = ["monitor", "benchmarks"]


class ConcurrencyConfig(_Strict):
    wait_seconds: int = Field(default=120, ge=0)  # a second run for the same target waits this long, then stops
    lease_seconds: int = Field(default=60, ge=60)  # Prefect's minimum; a vanished holder's slot frees after it
    host_lock_dir: str = "/tmp/actor-rollback-locks"  # one lock file per target for every run on this host


class RunnerConfig(_Strict):
    """`serve`: heartbeats of its runs, and when a run whose heartbeats stopped is marked Crashed."""

    heartbeat_seconds: int = Field(default=30, ge=30)  # Prefect's minimum
    crashed_after_seconds: int = Field(default=90, ge=35)
    # triage runs lost with a worker (Crashed, or Pending with no worker left) go back in the queue (deployments/lost_runs.py)
    lost_run_retries: int = Field(default=2, ge=0, le=10)
    retry_lost_every_seconds: float = Field(default=10, gt=0, le=300)
    pending_lost_after_seconds: float = Field(default=120, ge=10)
    lost_run_max_age_minutes: float = Field(default=60, gt=0, le=1440)
    # the roles the shipped automation notifies when a rollback ends failed, bad-input, needs-human or busy
    outcome_notify: list[str] = ["tech-lead"]

    @model_validator(mode="after")
    def _after_a_missed_heartbeat(self) -> RunnerConfig:
        if self.crashed_after_seconds <= self.heartbeat_seconds:
            raise ValueError("crashed_after_seconds must be longer than heartbeat_seconds (a run between two "
                             "heartbeats is alive)")
        return self


class ApprovalConfig(_Strict):
    timeout_seconds: int = Field(default=3600, gt=0)  # P4.3: no answer in time means no force-push


class Contact(_Strict):
    name: str = "TBD"
    channels: list[str] = []
    notify: list[str] = []  # Prefect notification block names that reach this person


class DashboardsConfig(_Strict):
    grafana: str = ""
    prometheus: str = ""
    logs: str = ""


class AfterConfig(_Strict):
    postmortem_hours: int = Field(default=48, gt=0)
    postmortem_dir: RepoPath = Field(default="docs/postmortem", min_length=1)
    adr_dir: RepoPath = Field(default="docs/adr", min_length=1)
    retry_lock_days: int = Field(default=7, ge=0)
    postmortem_notify: list[str] = ["tech-lead", "architect"]  # told when a draft is unfilled near its deadline
    postmortem_remind_before: str = "12h"
    postmortem_cron: str = "0 * * * *"  # how often the deadlines are checked

    @field_validator("postmortem_remind_before")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


# The runbook's budgets a drill is timed against, from the drill's start to the step's end: step 1 (flag off)
# "immediately" — taken as 5 minutes for a machine —, step 2 (revert, push) within 1 hour, step 3 (deploy) within 2.
RUNBOOK_BUDGETS = {"flag": 300.0, "push": 3600.0, "deploy": 7200.0}


class DrillConfig(_Strict):
    """Rehearsals (`actor-rollback drill`, drill/weekly): a phase's own flow on a sandbox copy of the repository
    and its remote. Each table below is laid over the real one for a drill; an empty one means: the same as a
    rollback (ci, benchmarks), or the step is skipped with its reason (deploy, monitoring, logs) — a drill never
    deploys to production or judges production's metrics."""

    cron: str = ""  # drill/weekly: e.g. "0 10 * * 1" (Mondays 10:00); "" = no schedule
    phases: list[str] = ["1"]  # the phases drill/weekly rehearses
    deploy: dict[str, Any] = {}  # e.g. { command = "./scripts/deploy.sh staging --version={version}" }
    monitoring: dict[str, Any] = {}  # e.g. { metrics_url = "http://staging:9100/metrics", window_seconds = 60 }
    logs: dict[str, Any] = {}  # e.g. { source = "file", file = "/var/log/staging.log" }
    ci: dict[str, Any] = {}  # e.g. { check = "command", command = "cargo test --workspace" }
    benchmarks: dict[str, Any] = {}  # e.g. { mode = "instructions" }
    budgets: dict[str, float] = {}  # step name or ID -> seconds from the drill's start (over RUNBOOK_BUDGETS)
    sandbox_dir: str = ""  # "" = $XDG_STATE_HOME/actor-rollback/drills

    @field_validator("budgets")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [key for key, seconds in value.items() if not seconds > 0]
        if bad:
            raise ValueError(f"budgets {', '.join(bad)}: a budget is a number of seconds above 0")
        return value


class RollbackConfig(_Strict):
    flag: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_+.-]*$")
    main_branch: str = "main"
    remote: str = "origin"
    git: GitConfig = GitConfig()
    phases: dict[str, PhaseConfig]
    ci: CiConfig = CiConfig()
    deploy: DeployConfig = DeployConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    logs: LogsConfig = LogsConfig()
    benchmarks: BenchmarksConfig
    severity: SeverityConfig
    contacts: dict[str, Contact] = {}
    dashboards: DashboardsConfig = DashboardsConfig()
    after: AfterConfig = AfterConfig()
    concurrency: ConcurrencyConfig = ConcurrencyConfig()
    approval: ApprovalConfig = ApprovalConfig()
    runner: RunnerConfig = RunnerConfig()
    triage: TriageConfig = TriageConfig()
    receiver: ReceiverConfig = ReceiverConfig()
    verification: VerificationConfig = VerificationConfig()
    reintroduce: ReintroduceConfig = ReintroduceConfig()
    drill: DrillConfig = DrillConfig()
    source: str = Field(default="", exclude=True)
    # Every value the user's file sets that differs from the shipped default: (dotted key, value, default).
    non_defaults: list[tuple[str, str, str]] = Field(default=[], exclude=True)

    @model_validator(mode="after")
    def _every_phase_and_role(self) -> RollbackConfig:
        missing = [p for p in PHASES if p not in self.phases]
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown:
            raise ValueError(f"unknown phase {', '.join(unknown)}; the runbook's phases are {', '.join(PHASES)}")
        if missing:
            raise ValueError(
                f"missing phase {', '.join(missing)}; the runbook has phases {', '.join(PHASES)}: "
                f"add [phases.{missing[0]}]"
            )
        roles = [r for r in self.contacts if r not in ROLES]
        if roles:
            raise ValueError(f"unknown contact role {', '.join(roles)}; the runbook's roles are {', '.join(ROLES)}")
        notified = [r for roles in [*self.severity.notify.values(), self.runner.outcome_notify] for r in roles
                    if r not in ROLES]
        owners = [r for r in self.severity.owners.values() if r not in ROLES]
        if notified or owners:
            raise ValueError(f"severity or runner.outcome_notify names unknown role {', '.join(notified + owners)}; "
                             f"the runbook's roles are {', '.join(ROLES)}")
        for where, phase in (("verification.phase", self.verification.phase),
                             ("receiver.default_phase", self.receiver.default_phase),
                             *(("drill.phases", p) for p in self.drill.phases)):
            if phase and phase not in PHASES:
                raise ValueError(f"{where} = {phase!r}: expected one of {', '.join(PHASES)}")
        return self

    def phase(self, phase: str) -> PhaseConfig:
        key = normalize_phase(phase)
        return self.phases[key]


def normalize_phase(text: str) -> str:
    """'1', 'phase1', 'Phase 2a', '2a' → the runbook's phase key."""
    key = re.sub(r"(?i)^phase[\s_-]*", "", str(text).strip()).upper()
    if key not in PHASES:
        raise ConfigError(f"unknown phase {text!r}; choose one of {', '.join(PHASES)}")
    return key


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{shown} ({type(value).__name__})"


def _format_errors(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: {where}: unknown key; remove it or fix its spelling (see the shipped rollback.toml)")
        elif item["type"] == "missing":
            lines.append(f"{source}: {where}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            got = f"; got {_describe(item['input'])}" if item["type"] != "value_error" or not isinstance(item.get("input"), dict) else ""
            lines.append(f"{source}: {where}: {message}{got}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "rollback.toml") -> RollbackConfig:
    try:
        return RollbackConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None


def overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base` key by key: tables merge, any other value (lists too) replaces."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = overlay(base[key], value)
        else:
            merged[key] = value
    return merged


def _differences(top: dict[str, Any], base: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    found = []
    for key, value in top.items():
        dotted = f"{prefix}{key}"
        default = base.get(key) if isinstance(base, dict) else None
        if isinstance(value, dict) and isinstance(default, dict):
            found += _differences(value, default, f"{dotted}.")
        elif value != default:
            found.append((dotted, repr(value), "(none)" if default is None else repr(default)))
    return found


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file; pass --config FILE, or run `actor-rollback init --repo PATH` "
                          "to write one") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read it ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None


def config_parameter(path: Path | None) -> str:
    """How a config file travels to a flow run (a deployment's or the UI form's parameter must be JSON): its
    absolute path, or "" for the shipped defaults alone. The flow loads it once, at its entry."""
    return str(Path(path).resolve()) if path else ""


def config_file(path: Path | str | None, repo: Path | str | None) -> Path | None:
    """Which rollback.toml a run reads — one rule whatever starts it (CLI, UI form, worker, receiver, schedule):
    the one given (`--config`, the `config` parameter), else the repository's own `rollback.toml`, else None
    (the shipped one). A deployment's `config: ""` therefore means "the repository's file, if it has one"."""
    if path:
        return Path(path)
    own = Path(repo) / "rollback.toml" if repo else None
    return own if own is not None and own.is_file() else None


def effective_config(path: Path | str | None, repo: Path | str | None) -> RollbackConfig:
    """The config a run of this repository uses (see config_file), loaded and validated."""
    return load_config(config_file(path, repo))


def config_data(path: Path | str | None, repo: Path | str | None) -> dict[str, Any]:
    """The whole configuration a run of this repository validates, as data: the shipped file with the user's over it."""
    defaults = _read_toml(SHIPPED_CONFIG)
    found = config_file(path, repo)
    return overlay(defaults, _read_toml(found)) if found else defaults


def toml_text(data: dict[str, Any]) -> str:
    """Configuration data as TOML (tables, strings, numbers, booleans, arrays: what a config holds), checked by
    reading it back."""
    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (int, float)):
            return repr(item)
        if isinstance(item, str):
            return json.dumps(item)  # a TOML basic string: JSON's escapes are TOML's
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        if isinstance(item, dict):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in item.items()) + "}"
        raise ConfigError(f"cannot write {type(item).__name__} {item!r} as TOML")

    text = "".join(f"{json.dumps(key)} = {value(item)}\n" for key, item in data.items())
    if tomllib.loads(text) != data:
        raise ConfigError("the configuration does not survive being written as TOML (a control character in a "
                          "string?); fix the value")
    return text


def load_config(path: Path | str | None = None) -> RollbackConfig:
    """The shipped rollback.toml, with the user's file (when given) laid over it key by key.

    A user's file may be partial: `[benchmarks] tolerance_pct = 3.0` alone is a whole config. Unknown
    keys stay errors; `non_defaults` records what the file changed, for `plan` to show.
    """
    if not path:
        return parse_config(_read_toml(SHIPPED_CONFIG), source=str(SHIPPED_CONFIG))
    return config_over_defaults(_read_toml(Path(path)), str(path))


def config_over_defaults(user: dict[str, Any], source: str) -> RollbackConfig:
    """A user's (possibly partial) configuration laid over the shipped one, validated."""
    defaults = _read_toml(SHIPPED_CONFIG)
    cfg = parse_config(overlay(defaults, user), source=source)
    return cfg.model_copy(update={"non_defaults": _differences(user, defaults)})
