"""P1.3a–c and X.3 against real things: the sample service deployed by its script, watched by a
real Prometheus (and directly), its log read; the Kubernetes backend with the real client."""

from __future__ import annotations

import subprocess
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import config_text, free_port, git
from helpers import context, private_ca_certificate, replaced

from actor_rollback.runbook.config import parse_config
from actor_rollback.runbook.errors import StepError
from actor_rollback.tasks.cargo_manifest import disable_feature_flag
from actor_rollback.tasks.commands import deploy_with_command
from actor_rollback.tasks.git_repo import find_phase_merge, push_rollback, revert_merge
from actor_rollback.tasks.logs import check_logs
from actor_rollback.tasks.metrics import histogram_quantile, watch_metrics

CORE = "modules/actor-core/Cargo.toml"


def cfg_from(text: str):
    return parse_config(tomllib.loads(text))


def deploy(sample, version: str) -> None:
    subprocess.run(["./scripts/deploy.sh", "production", f"--version={version}"], cwd=sample.repo, check=True,
                   capture_output=True)


def wait_for_scraped_rate(prometheus: str, timeout: float = 30) -> None:
    """Until Prometheus has scraped the service twice (its first scrape shows only after a few seconds)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = httpx.get(f"{prometheus}/api/v1/query",
                           params={"query": "sum(rate(actor_messages_processed_total[3s]))"}).json()
        if answer["data"]["result"]:
            return
        time.sleep(0.5)
    raise AssertionError("Prometheus never scraped the sample service")


def deploy_healthy_then_regressed(sample, prometheus: str) -> str:
    """Production before the incident (flag off) for a while, then the regressed head; the incident's start."""
    manifest = sample.repo / CORE
    original = manifest.read_text()
    manifest.write_text(original.replace('["std", "new-scheduler"]', '["std"]'))
    deploy(sample, "v0.3.9")
    manifest.write_text(original)
    wait_for_scraped_rate(prometheus)
    time.sleep(4)
    started = time.time()
    deploy(sample, "v0.4.0")
    time.sleep(3)
    return started


def roll_back(sample, cfg) -> None:
    ctx = context(sample.repo, cfg=cfg)
    disable_feature_flag(ctx)
    merge = find_phase_merge(ctx).data["merge"]
    revert_merge(context(sample.repo, cfg=cfg, facts={"merge": merge}))
    push_rollback(ctx)
    deploy_with_command(context(sample.repo, step_id="P1.3a", cfg=cfg))


def prometheus_config(test_config: Path, prometheus: str, window: int = 3):
    queries = {
        'throughput = "sum(rate(actor_messages_processed_total[1m]))"':
            'throughput = "sum(rate(actor_messages_processed_total[3s]))"',
        'latency_p99 = "histogram_quantile(0.99, sum(rate(actor_message_latency_seconds_bucket[1m])) by (le))"':
            'latency_p99 = "histogram_quantile(0.99, sum(rate(actor_message_latency_seconds_bucket[3s])) by (le))"',
        'error_rate = "sum(rate(actor_message_errors_total[1m])) / sum(rate(actor_messages_processed_total[1m]))"':
            'error_rate = "sum(rate(actor_message_errors_total[3s])) / sum(rate(actor_messages_processed_total[3s]))"',
        'cpu = "sum(rate(process_cpu_seconds_total{job=\\"actor-system\\"}[1m]))"':
            'cpu = "sum(rate(process_cpu_seconds_total{job=\\"actor-system\\"}[3s]))"',
    }
    return cfg_from(replaced(test_config.read_text(), **{
        'prometheus_url = ""': f'prometheus_url = "{prometheus}"',
        "\nwindow_seconds = 2 ": f"\nwindow_seconds = {window} ",
        "step_seconds = 15 ": "step_seconds = 1 ",
        **queries,
    }))


def verdicts(result) -> dict[str, str]:
    return {k: v for k, v in result.data.items()}


def test_p1_3b_prometheus_sees_the_regression_then_the_recovery(sample, prometheus, test_config):
    cfg = prometheus_config(test_config, prometheus)
    incident_start = deploy_healthy_then_regressed(sample, prometheus)
    facts = {"incident_started_at": datetime.fromtimestamp(incident_start, timezone.utc).isoformat()}
    before = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg, facts=facts))
    assert before.status == "failed", before.evidence
    assert verdicts(before)["error_rate"] == "fail" and verdicts(before)["throughput"] == "fail", before.evidence
    assert any(line.startswith("FAIL") and "latency_p99" in line for line in before.evidence)

    roll_back(sample, cfg)
    time.sleep(4)  # the queries' 3 s rate windows then hold only the rolled-back service
    after = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg, facts=facts))
    assert after.status == "done", "\n".join(after.evidence)
    assert verdicts(after)["error_rate"] == verdicts(after)["throughput"] == "pass"
    assert any("baseline" in line and "throughput" in line for line in after.evidence)
    assert any(line.startswith("INFO") and "memory" in line for line in after.evidence), "X.3 resources shown"
    assert "grafana: https://grafana.example.com/d/actor-scheduler" in after.evidence  # X.2


def test_p1_3b_reads_the_service_directly_without_prometheus(sample, test_config):
    cfg = cfg_from(test_config.read_text())
    deploy(sample, "v0.4.0")
    regressed = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg))
    assert regressed.status == "failed" and regressed.data["error_rate"] == "fail"
    roll_back(sample, cfg)
    recovered = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg))
    assert recovered.status == "done", recovered.evidence
    assert recovered.data["throughput"] == "pass"  # >= throughput_min, no baseline in this mode


def test_p1_3b_prometheus_down_is_unverified_never_pass(sample, test_config):
    from conftest import free_port

    cfg = cfg_from(replaced(test_config.read_text(), **{
        'prometheus_url = ""': f'prometheus_url = "http://127.0.0.1:{free_port()}"',
        "\nwindow_seconds = 2 ": "\nwindow_seconds = 0.1 ", "attempts = 3 ": "attempts = 2 "}))
    result = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg))
    assert result.status == "needs-human"
    assert "unreachable after 2 attempts" in result.evidence[0]
    assert result.data["error_rate"] == "unverified"


def test_p1_3b_a_query_that_returns_nothing_is_unverified(sample, prometheus, test_config):
    cfg = cfg_from(replaced(test_config.read_text(), **{
        'prometheus_url = ""': f'prometheus_url = "{prometheus}"', "\nwindow_seconds = 2 ": "\nwindow_seconds = 1 ",
        "step_seconds = 15 ": "step_seconds = 1 ",
        'error_rate = "sum(rate(actor_message_errors_total[1m])) / sum(rate(actor_messages_processed_total[1m]))"':
            'error_rate = "sum(rate(no_such_metric_total[3s]))"'}))
    result = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg))
    assert result.data["error_rate"] == "unverified"
    assert result.status in ("needs-human", "failed")
    assert any("UNVERIFIED error_rate = no data" in line for line in result.evidence)


def test_p1_3b_values_whose_mean_overflows_are_unverified_never_pass(sample, prometheus, test_config):
    """−1e308 at every point averages to −inf, which is below every maximum: it must not pass."""
    cfg = cfg_from(replaced(test_config.read_text(), **{
        'prometheus_url = ""': f'prometheus_url = "{prometheus}"', "\nwindow_seconds = 2 ": "\nwindow_seconds = 2 ",
        "step_seconds = 15 ": "step_seconds = 1 ",
        'error_rate = "sum(rate(actor_message_errors_total[1m])) / sum(rate(actor_messages_processed_total[1m]))"':
            'error_rate = "vector(-1e308)"',
        'latency_p99 = "histogram_quantile(0.99, sum(rate(actor_message_latency_seconds_bucket[1m])) by (le))"':
            'latency_p99 = "vector(-1e308)"'}))
    result = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg))
    assert result.data["error_rate"] == "unverified" and result.data["latency_p99"] == "unverified", result.evidence
    assert result.status != "done"
    assert any(line.startswith("UNVERIFIED error_rate") and "not a finite number" in line for line in result.evidence)


@pytest.fixture
def tls_prometheus(tmp_path):
    """A real Prometheus serving HTTPS with a certificate of a private CA (its web config's tls_server_config)."""
    import shutil
    import ssl

    import httpx

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Prometheus (Debian package prometheus) is needed")
    ca, cert, key = private_ca_certificate(tmp_path)
    (tmp_path / "web.yml").write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 1s\n")
    port = free_port()
    log = open(tmp_path / "prometheus.log", "w")
    server = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                               f"--web.config.file={tmp_path / 'web.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/-/ready", verify=ssl.create_default_context(cafile=ca), timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
    yield url, ca
    server.terminate()
    server.wait(timeout=20)
    log.close()


@pytest.mark.parametrize("source", ["prometheus", "metrics_url"])
def test_p1_3b_https_metrics_are_verified_refused_unless_their_ca_is_configured(sample, test_config, tls_prometheus,
                                                                               source):
    url, ca = tls_prometheus
    text = replaced(test_config.read_text(), **{
        "\nwindow_seconds = 2 ": "\nwindow_seconds = 1 ", "step_seconds = 15 ": "step_seconds = 1 ",
        'error_rate = "sum(rate(actor_message_errors_total[1m])) / sum(rate(actor_messages_processed_total[1m]))"':
            'error_rate = "vector(0)"'})
    if source == "prometheus":
        text = replaced(text, **{'prometheus_url = ""': f'prometheus_url = "{url}"'})
    else:  # read directly: Prometheus' own /metrics stands in for the service's
        metrics = next(line for line in text.splitlines() if line.startswith("metrics_url"))
        text = replaced(text, **{metrics: f'metrics_url = "{url}/metrics"'})
    untrusted = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg_from(text)))
    assert untrusted.status == "needs-human", untrusted.evidence  # nothing read, nothing passed
    assert any("TLS certificate is not trusted" in line and "monitoring.ca_bundle" in line
               for line in untrusted.evidence), untrusted.evidence
    trusted = watch_metrics(context(sample.repo, step_id="P1.3b", cfg=cfg_from(replaced(
        text, **{'ca_bundle = ""': f'ca_bundle = "{ca}"'}))))
    assert not any("not trusted" in line for line in trusted.evidence), trusted.evidence
    if source == "prometheus":
        assert trusted.data["error_rate"] == "pass", trusted.evidence
    else:
        assert any(line.startswith("read https://") for line in trusted.evidence), trusted.evidence


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.01: 50.0, 0.05: 90.0, 0.1: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.03)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.095)
    assert histogram_quantile(0.99, {}) is None


def test_p1_3c_counts_error_lines_of_the_regressed_service_then_none_after(sample, test_config):
    cfg = cfg_from(test_config.read_text())
    deploy(sample, "v0.4.0")
    time.sleep(2.5)
    regressed = check_logs(context(sample.repo, step_id="P1.3c", cfg=cfg))
    assert regressed.status == "failed"
    assert "error line(s) in the last" in regressed.evidence[0]
    assert any("ERROR ready-queue coordinator: mailbox overflow" in line for line in regressed.evidence)
    roll_back(sample, cfg)
    time.sleep(1.5)
    healthy = check_logs(context(sample.repo, step_id="P1.3c", cfg=cfg))
    assert healthy.status == "done" and healthy.evidence[0].split(": ")[1].startswith("0 error line(s)")


def test_p1_3c_empty_or_missing_log_is_unverified(sample, tmp_path, test_config):
    empty = tmp_path / "empty.log"
    empty.write_text("")
    cfg = cfg_from(config_text(**{'source = "kubernetes"           #': 'source = "file"           #',
                                  'file = ""                       #': f'file = "{empty}"  #'}))
    result = check_logs(context(sample.repo, step_id="P1.3c", cfg=cfg))
    assert result.status == "needs-human" and "silence proves nothing" in result.evidence[0]
    cfg = cfg_from(config_text(**{'source = "kubernetes"           #': 'source = "file"           #',
                                  'file = ""                       #': f'file = "{tmp_path / "absent.log"}"  #'}))
    result = check_logs(context(sample.repo, step_id="P1.3c", cfg=cfg))
    assert result.status == "needs-human" and "does not exist" in result.evidence[0]


def test_p1_3c_log_command_source_is_bounded(sample, tmp_path):
    log = tmp_path / "svc.log"
    log.write_text("".join(f"INFO ok {i}\n" for i in range(50)) + "ERROR boom\n")
    cfg = cfg_from(config_text(**{'source = "kubernetes"           #': 'source = "command"           #',
                                  'command = ""                    #': f'command = "tail -n 20 {log}"  #'}))
    result = check_logs(context(sample.repo, step_id="P1.3c", cfg=cfg))
    assert result.status == "failed" and "1 error line(s) in the last 20" in result.evidence[0]


def test_p1_3a_a_hanging_deploy_script_is_stopped_at_its_timeout(sample):
    cfg = cfg_from(config_text(**{'command = "./scripts/deploy.sh production --version={version}"':
                                  'command = "sleep 30"', "timeout_seconds = 900": "timeout_seconds = 1"}))
    started = time.monotonic()
    with pytest.raises(StepError, match="did not finish within 1 s"):
        deploy_with_command(context(sample.repo, step_id="P1.3a", cfg=cfg))
    assert time.monotonic() - started < 10


def test_the_sample_service_follows_what_is_deployed(sample, production):
    deploy(sample, "v0.4.0")
    assert "new-scheduler=on" in Path(production["ACTOR_DEPLOY_STATE"], "deploys.log").read_text().splitlines()[-1]
    git(sample.repo, "checkout", "-q", "HEAD~3")  # before "Phase 4: enable new-scheduler by default"
    deploy(sample, "v0.3.9")
    assert "new-scheduler=off" in Path(production["ACTOR_DEPLOY_STATE"], "deploys.log").read_text().splitlines()[-1]
