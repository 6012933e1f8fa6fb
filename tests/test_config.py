"""rollback.toml: the shipped values are the runbook's, and a bad file says what is wrong and how to fix it."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta

import pytest

from actor_rollback.runbook.config import PHASES, SHIPPED_CONFIG, ConfigError, load_config, normalize_phase, parse_config

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote


def shipped() -> dict:
    return tomllib.loads(SHIPPED_CONFIG.read_text())


def test_shipped_config_reproduces_the_runbook():
    cfg = load_config()
    assert cfg.flag == "new-scheduler"
    assert set(cfg.phases) == set(PHASES)
    assert cfg.phase("1").branch == "refactor/ready-queue-coordinator"
    assert cfg.phase("1").merge_patterns == ["Phase 1", "ReadyQueueCoordinator"]  # P1.2a
    assert cfg.phase("2A").merge_patterns == ["Phase 2A", "WorkerExecutor"]
    assert cfg.phase("0").merged is False and cfg.phase("0").branch == "feature/ready-queue-coordinator-poc"
    assert cfg.phase("2A").restore.values == {"type": "ready-queue-coordinator", "worker_count": 4, "throughput": 32}
    assert cfg.phase("2B").code_checks.present == ["fn invoke_message"]
    assert cfg.phase("3").ci_disable_targets == ["thumbv7em-none-eabihf"]
    assert cfg.phase("3").tokio_build == "cargo build --features std,runtime-tokio --no-default-features"
    assert cfg.phase("4").baseline_commit_pattern == "Phase 0 start"
    assert [c.id for c in cfg.phase("1").checklist] == ["P1.C1", "P1.C2", "P1.C3", "P1.C4", "P1.C5"]
    assert cfg.deploy.command == "./scripts/deploy.sh production --version={version}"
    assert cfg.benchmarks.tolerance_pct == 2.0
    assert cfg.benchmarks.baseline == "benchmarks/baseline_before_refactor.md"
    assert (cfg.severity.medium_regression_pct, cfg.severity.high_regression_pct) == (5.0, 10.0)
    assert cfg.severity.deadline("critical") == timedelta(0)
    assert cfg.severity.deadline("high") == timedelta(hours=1)
    assert cfg.severity.deadline("medium") == timedelta(hours=24)
    assert cfg.severity.deadline("low") == timedelta(weeks=1)
    assert cfg.severity.owners == {"critical": "sre-oncall", "high": "tech-lead", "medium": "project-manager",
                                   "low": "development-team"}
    assert cfg.dashboards.grafana.endswith("/d/actor-scheduler")
    assert cfg.after.postmortem_hours == 48 and cfg.after.retry_lock_days == 7


def test_bad_type_names_the_key_the_value_and_what_is_expected():
    data = shipped()
    data["benchmarks"]["tolerance_pct"] = "two"
    with pytest.raises(ConfigError) as error:
        parse_config(data, "x.toml")
    message = str(error.value)
    assert "x.toml: benchmarks.tolerance_pct:" in message
    assert "'two'" in message and "valid number" in message


def test_unknown_key_is_an_error_not_ignored():
    data = shipped()
    data["phases"]["1"]["merge_pattern"] = ["Phase 1"]  # misspelt
    with pytest.raises(ConfigError, match=r"phases\.1\.merge_pattern: unknown key"):
        parse_config(data)


def test_missing_phase_is_named_with_the_fix():
    data = shipped()
    del data["phases"]["2B"]
    with pytest.raises(ConfigError, match=r"missing phase 2B.*add \[phases\.2B\]"):
        parse_config(data)


def test_merged_phase_without_patterns_is_rejected():
    data = shipped()
    data["phases"]["1"]["merge_patterns"] = []
    with pytest.raises(ConfigError, match="merge_patterns"):
        parse_config(data)


def test_bad_severity_order_and_duration_are_rejected():
    data = shipped()
    data["severity"]["deadlines"]["high"] = "soon"
    with pytest.raises(ConfigError, match="duration like"):
        parse_config(data)
    data = shipped()
    data["severity"]["medium_regression_pct"] = 12.0
    with pytest.raises(ConfigError, match="medium_regression_pct < high_regression_pct"):
        parse_config(data)


def test_unknown_contact_role_is_rejected():
    data = shipped()
    data["contacts"]["ceo"] = {"name": "x"}
    with pytest.raises(ConfigError, match="unknown contact role ceo"):
        parse_config(data)


def test_invalid_toml_and_missing_file_say_so(tmp_path):
    broken = tmp_path / "rollback.toml"
    broken.write_text("flag = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize("text,key", [("1", "1"), ("phase1", "1"), ("Phase 2a", "2A"), ("2b", "2B"), ("4", "4")])
def test_phase_names_are_normalised(text, key):
    assert normalize_phase(text) == key


def test_unknown_phase_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="choose one of 0, 1, 2A, 2B, 3, 4"):
        normalize_phase("5")


@pytest.mark.parametrize("table,key,value", [
    ("triage", "issue_dir", "../.."), ("after", "postmortem_dir", "/var/tmp"), ("after", "adr_dir", "docs/../../x"),
    ("phases.1", "ci_file", "~/ci.yml"), ("phases.2A.restore", "file", "../config.toml"),
])
def test_every_path_a_step_writes_stays_inside_the_repository_refused_at_load_naming_the_key(table, key, value):
    data = shipped()
    section = data
    for part in table.split("."):
        section = section.setdefault(part, {})
    section[key] = value
    with pytest.raises(ConfigError, match=rf"x.toml: {re.escape(table)}\.{key}: .* must be a path inside the repository"):
        parse_config(data, "x.toml")


def test_the_per_address_cap_must_leave_slots_to_other_senders():
    data = shipped()
    data["receiver"]["limit_concurrency"] = 100  # the default cap (256) would be no cap at all
    with pytest.raises(ConfigError, match="max_connections_per_client = 256 must be below limit_concurrency = 100"):
        parse_config(data, "x.toml")
    data["receiver"]["max_connections_per_client"] = 0  # behind a proxy: no cap
    assert parse_config(data, "x.toml").receiver.limit_concurrency == 100


def test_bad_input_is_one_family_caught_in_one_place():
    """#29 §3: a config that does not validate, an unknown step, a malformed incident id or alert, an unreadable
    secret, a benchmark table that is not one: all BadInputError, which every entry catches alone."""
    from actor_rollback.deployments.cli.common import BAD_INPUT
    from actor_rollback.runbook.alerts import AlertError
    from actor_rollback.runbook.benchstats import BenchmarkInputError
    from actor_rollback.runbook.errors import BadInputError
    from actor_rollback.runbook.ids import IncidentIdError
    from actor_rollback.runbook.phases import StepSelectionError
    from actor_rollback.runbook.secrets import SecretError

    for family in (ConfigError, StepSelectionError, IncidentIdError, AlertError, SecretError, BenchmarkInputError):
        assert issubclass(family, BadInputError), family
    assert BAD_INPUT == (BadInputError,)
