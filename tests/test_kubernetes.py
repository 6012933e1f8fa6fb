"""The Kubernetes backend (P1.3a, P1.3c) with the real `kubernetes` client against the in-test API
server of tests/k8s_api.py — no cluster runs here or in CI."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
from conftest import config_text
from helpers import context
from k8s_api import ClusterState, KubernetesApi

from actor_rollback.runbook.config import parse_config
from actor_rollback.runbook.errors import BadInputError, StepError, TransientError
from actor_rollback.tasks.kubernetes_deploy import deploy_to_kubernetes
from actor_rollback.tasks.logs import check_logs

K8S = {'backend = "command"  ': 'backend = "kubernetes"  ', "poll_seconds = 2.0": "poll_seconds = 0.05",
       "rollout_timeout_seconds = 600": "rollout_timeout_seconds = 10"}


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    api = KubernetesApi(ClusterState())
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path)))  # the client's own way to find the cluster
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield api
    api.close()


def k8s_ctx(tmp_path, step_id="P1.3a", **extra):
    cfg = parse_config(tomllib.loads(config_text(**{**K8S, **extra})))
    return context(tmp_path, step_id=step_id, cfg=cfg)


def test_p1_3a_sets_the_rollback_image_and_waits_for_the_rollout(cluster, tmp_path):
    result = deploy_to_kubernetes(k8s_ctx(tmp_path))
    assert result.status == "done"
    assert cluster.state.image == "registry.example.com/actor-system:rollback-phase1"
    assert "rollout complete: 3/3 updated, 3/3 available, 3 total" in result.evidence
    patch = cluster.state.patches[0]
    assert patch["metadata"]["resourceVersion"] == "100"
    assert patch["metadata"]["annotations"]["actor-rollback/incident"] == "inc-test"
    again = deploy_to_kubernetes(k8s_ctx(tmp_path))
    assert again.status == "already-done" and len(cluster.state.patches) == 1


def test_p1_3a_a_stalled_rollout_fails_at_its_progress_deadline(cluster, tmp_path):
    cluster.state.stall = True
    with pytest.raises(StepError, match="the rollout stalled: ReplicaSet .* has timed out progressing"):
        deploy_to_kubernetes(k8s_ctx(tmp_path))


def test_p1_3a_a_409_conflict_is_read_again_and_retried(cluster, tmp_path):
    cluster.state.conflicts_left = 2
    result = deploy_to_kubernetes(k8s_ctx(tmp_path))
    assert result.status == "done"
    assert [p["metadata"]["resourceVersion"] for p in cluster.state.patches] == ["100", "101", "102"]
    assert sum("409 conflict" in line for line in result.evidence) == 2


def test_p1_3a_a_5xx_is_transient_so_the_task_retries_it(cluster, tmp_path):
    cluster.state.errors_left = 1
    with pytest.raises(TransientError, match="Kubernetes API 500"):
        deploy_to_kubernetes(k8s_ctx(tmp_path))
    assert deploy_to_kubernetes(k8s_ctx(tmp_path)).status == "done"


def test_p1_3a_unknown_container_is_bad_input(cluster, tmp_path):
    with pytest.raises(BadInputError, match="no container 'worker' .*it has actor-system"):
        deploy_to_kubernetes(k8s_ctx(tmp_path, **{'container = "actor-system"': 'container = "worker"'}))


def test_p1_3a_no_credentials_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(BadInputError, match="no Kubernetes credentials"):
        deploy_to_kubernetes(k8s_ctx(tmp_path))


def test_p1_3c_reads_every_pods_recent_lines_and_counts_errors_per_pod(cluster, tmp_path):
    cluster.state.pod_logs = {
        "actor-system-7d9f-a": "".join(f"INFO handled {i}\n" for i in range(2000)),
        "actor-system-7d9f-b": "INFO ok\nERROR ready-queue coordinator: mailbox overflow for actor 3\nINFO ok\n",
    }
    result = check_logs(k8s_ctx(tmp_path, step_id="P1.3c"))
    assert result.status == "failed"
    assert "actor-system-7d9f-a: 0 error line(s) in the last 1000 (max 0)" in result.evidence
    assert "actor-system-7d9f-b: 1 error line(s) in the last 3 (max 0)" in result.evidence
    log_reads = [path for method, path in cluster.state.requests if path.endswith("/log") or "/log?" in path]
    assert log_reads and all("tailLines=1000" in path and "follow" not in path for path in log_reads)


def test_p1_3c_no_pods_is_unverified(cluster, tmp_path):
    result = check_logs(k8s_ctx(tmp_path, step_id="P1.3c"))
    assert result.status == "needs-human" and "silence proves nothing" in result.evidence[0]


def test_plan_p1_3a_reads_the_deployment_and_its_container_read_only(cluster, tmp_path):
    result = deploy_to_kubernetes(dataclasses.replace(k8s_ctx(tmp_path), dry_run=True))
    assert result.status == "planned"
    assert "(runs registry.example.com/actor-system:v0.4.0 now)" in result.evidence[0]
    assert all(method == "GET" for method, _ in cluster.state.requests), "a plan only reads"
    with pytest.raises(BadInputError, match="has no container 'worker'"):
        deploy_to_kubernetes(dataclasses.replace(k8s_ctx(tmp_path, **{'container = "actor-system"': 'container = "worker"'}),
                                                 dry_run=True))
    with pytest.raises(BadInputError, match="not found while reading deployment/nowhere"):
        deploy_to_kubernetes(dataclasses.replace(
            k8s_ctx(tmp_path, **{'deployment = "actor-system"': 'deployment = "nowhere"'}), dry_run=True))


def test_plan_p1_3c_kubernetes_logs_with_pods_are_planned_and_without_pods_or_credentials_need_a_person(
        cluster, tmp_path, monkeypatch):
    ctx = dataclasses.replace(k8s_ctx(tmp_path, step_id="P1.3c"), dry_run=True)
    empty = check_logs(ctx)
    assert empty.status == "needs-human" and "no pods match 'app=actor-system' in namespace default" in empty.evidence[0]
    cluster.state.pod_logs = {"actor-system-7d9f-a": "INFO ok\n"}
    found = check_logs(ctx)
    assert found.status == "planned" and "1 pod(s) match 'app=actor-system' in default" in found.evidence
    assert not any(path.endswith("/log") or "/log?" in path for _, path in cluster.state.requests), "no log is read"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    lost = check_logs(ctx)
    assert lost.status == "needs-human" and "no Kubernetes credentials" in lost.evidence[0]


CANARY = "actor-system-canary"


def test_a6_canary_is_a_deployment_beside_the_stable_one_with_the_flag_on_image(cluster, tmp_path):
    from actor_rollback.tasks.reintroduce import deploy_canary

    ctx = k8s_ctx(tmp_path, step_id="A.6", **{"canary_env = {}": 'canary_env = { RUST_LOG = "debug" }'})
    result = deploy_canary(ctx)
    assert result.status == "done", result.evidence
    canary = cluster.state.others[CANARY]
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"] == {"app": "actor-system", "track": "canary"}
    assert canary["spec"]["template"]["metadata"]["labels"] == {"app": "actor-system", "track": "canary"}
    [container] = canary["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/actor-system:reintroduce-phase1-new-scheduler"
    assert {"name": "RUST_LOG", "value": "debug"} in container["env"]
    assert canary["metadata"]["annotations"]["actor-rollback/incident"] == "inc-test"
    # the stable Deployment is left alone, and told it overlaps the canary's pods
    assert cluster.state.image == "registry.example.com/actor-system:v0.4.0" and cluster.state.patches == []
    assert any("also matches the canary's pods" in line and "track: stable" in line for line in result.evidence)
    assert "rollout complete: 1/1 updated, 1/1 available, 1 total" in result.evidence


def test_a6_a_rerun_replaces_the_existing_canary_instead_of_failing(cluster, tmp_path):
    from actor_rollback.tasks.reintroduce import deploy_canary

    deploy_canary(k8s_ctx(tmp_path, step_id="A.6"))
    again = deploy_canary(k8s_ctx(tmp_path, step_id="A.6", **{"canary_replicas = 1": "canary_replicas = 2"}))
    assert again.status == "done"
    assert any("existed (a rerun): replaced with 2 replica(s)" in line for line in again.evidence)
    assert list(cluster.state.others) == [CANARY] and cluster.state.others[CANARY]["spec"]["replicas"] == 2
    assert cluster.state.others[CANARY]["_generation"] == 2


def test_a6_stopping_the_canary_deletes_it_and_a_second_stop_is_already_done(cluster, tmp_path):
    from actor_rollback.tasks.reintroduce import deploy_canary, stop_canary

    deploy_canary(k8s_ctx(tmp_path, step_id="A.6"))
    stopped = stop_canary(k8s_ctx(tmp_path, step_id="A.6"))
    assert stopped.status == "done" and CANARY not in cluster.state.others
    assert cluster.state.deletions[0][0] == CANARY
    assert cluster.state.deletions[0][1].get("propagationPolicy") == "Foreground"  # its pods go with it
    assert stop_canary(k8s_ctx(tmp_path, step_id="A.6")).status == "already-done"


def test_a6_promote_sets_the_stable_deployment_to_the_reintroduced_version_flag_still_off(cluster, tmp_path):
    from actor_rollback.tasks.reintroduce import promote

    result = promote(k8s_ctx(tmp_path, step_id="A.6"))
    assert result.status == "done" and result.name == "promote"
    assert cluster.state.image == "registry.example.com/actor-system:reintroduce-phase1"  # not the -new-scheduler one
    assert any("the flag stays off by default" in line for line in result.evidence)


def test_a6_canary_without_the_configured_container_is_bad_input_and_creates_nothing(cluster, tmp_path):
    from actor_rollback.tasks.reintroduce import deploy_canary

    ctx = k8s_ctx(tmp_path, step_id="A.6", **{'container = "actor-system"': 'container = "actor"'})
    with pytest.raises(BadInputError, match="no container 'actor'.*deploy.kubernetes.container"):
        deploy_canary(ctx)
    assert cluster.state.others == {}
