"""The production stack's files, each checked by its own tool: the compose file against the
compose-spec schema (check-jsonschema; no Docker engine runs here, so `docker compose config` cannot),
the Prometheus config and rules with promtool (incl. the rule unit tests), the Alertmanager config
with amtool, the Kubernetes manifests with kubernetes-validate, the Grafana dashboard's queries
against a real Prometheus, and the Dockerfile's install steps against what CI runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import yaml
from conftest import require

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid_compose_spec_and_takes_secrets_from_the_environment():
    checked = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DOCKER / "compose.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert set(compose["services"]) == {"postgres", "prefect-server", "runner", "prometheus", "alertmanager", "grafana"}
    assert "postgresql+asyncpg://" in compose["services"]["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert compose["secrets"]["receiver_token"] == {"environment": "ACTOR_ROLLBACK_RECEIVER_TOKEN"}
    runner = compose["services"]["runner"]  # the token reaches serve as a file (OPERATIONS, Secrets), never as env
    assert runner["secrets"] == ["receiver_token"] and "ACTOR_ROLLBACK_RECEIVER_TOKEN" not in runner["environment"]
    assert runner["environment"]["ACTOR_ROLLBACK_RECEIVER_TOKEN_FILE"] == "/run/secrets/receiver_token"
    text = (DOCKER / "compose.yaml").read_text()
    for variable in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert f"${{{variable}:?" in text  # required from the environment, no default value
    for mount in ("./prometheus/alert-rules.yml", "./alertmanager/alertmanager.yml", "./grafana/dashboards"):
        assert mount in text and (DOCKER / mount).exists()


def test_the_ha_compose_file_is_the_topology_the_ha_test_runs():
    """#19: docker/compose.ha.yaml describes what tests/test_ha.py runs on loopback (bench/_ha.py): the same
    Prefect server settings, the same HAProxy file, workers and receiver on the same pool."""
    from helpers import bench_module

    checked = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                  str(DOCKER / "compose.ha.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compose = yaml.safe_load((DOCKER / "compose.ha.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "prefect-api-1", "prefect-api-2", "prefect-services", "haproxy",
            "worker-1", "worker-2", "receiver"} == set(services)
    tested = bench_module("_ha").redis_env(6379, "postgresql+asyncpg://x")
    for name in ("prefect-api-1", "prefect-api-2", "prefect-services", "migrate"):
        env = services[name]["environment"]
        assert {k: env[k] for k in tested if "URL" not in k} == {k: v for k, v in tested.items() if "URL" not in k}, name
        assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "--no-services" in services["prefect-api-1"]["entrypoint"] and "--no-services" in services["prefect-api-2"]["entrypoint"]
    assert services["prefect-services"]["entrypoint"][-3:] == ["server", "services", "start"]  # the services: once
    assert "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services["haproxy"]["volumes"]
    config = (DOCKER / "haproxy" / "haproxy.cfg").read_text()
    assert "server api1 prefect-api-1:4200 check" in config and "server api2 prefect-api-2:4200 check" in config
    pool = services["worker-1"]["entrypoint"][services["worker-1"]["entrypoint"].index("--pool") + 1]
    assert services["receiver"]["command"][services["receiver"]["command"].index("--pool") + 1] == pool
    for name in ("worker-1", "worker-2", "receiver"):
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://haproxy:4200/api"


def test_prometheus_config_and_the_runbook_alert_rules_pass_promtool_with_their_unit_tests():
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (Debian package prometheus)")
    config = run(promtool, "check", "config", str(DOCKER / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0 and "SUCCESS: 4 rules found" in config.stdout, config.stdout + config.stderr
    tests = run(promtool, "test", "rules", "alert-rules.test.yml", cwd=DOCKER / "prometheus")
    assert tests.returncode == 0 and "SUCCESS" in tests.stdout, tests.stdout + tests.stderr


def test_every_alert_rule_maps_to_an_incident_kind_the_receiver_knows():
    from actor_rollback.runbook.config import load_config

    rules = yaml.safe_load((DOCKER / "prometheus" / "alert-rules.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == set(load_config(None).receiver.alertnames)


def test_alertmanager_config_passes_amtool_and_routes_to_the_receiver_with_a_token_file():
    amtool = shutil.which("amtool")
    require(amtool is not None, "amtool (Debian package prometheus-alertmanager)")
    checked = run(amtool, "check-config", str(DOCKER / "alertmanager" / "alertmanager.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((DOCKER / "alertmanager" / "alertmanager.yml").read_text())
    hook = config["receivers"][0]["webhook_configs"][0]
    assert hook["url"].endswith("/alerts/alertmanager") and hook["send_resolved"] is True
    assert hook["http_config"]["authorization"]["credentials_file"] == "/run/secrets/receiver_token"


def test_kubernetes_manifests_validate_and_rbac_grants_only_what_the_steps_call():
    manifests = sorted((ROOT / "deployments" / "kubernetes").glob("*.yaml"))
    checked = run(str(BIN / "kubernetes-validate"), "--strict", *map(str, manifests))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    docs = [d for m in manifests for d in yaml.safe_load_all(m.read_text()) if d]
    role = next(d for d in docs if d["kind"] == "Role")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    # every API call of tasks/kubernetes_deploy.py (deploy, A.6 canary) and tasks/logs.py, as the RBAC it needs
    needs = {"read_namespaced_deployment": ("apps", "deployments", "get"),
             "patch_namespaced_deployment": ("apps", "deployments", "patch"),
             "create_namespaced_deployment": ("apps", "deployments", "create"),
             "replace_namespaced_deployment": ("apps", "deployments", "update"),
             "delete_namespaced_deployment": ("apps", "deployments", "delete"),
             "read_namespaced_deployment_status": ("apps", "deployments/status", "get"),
             "list_namespaced_pod": ("", "pods", "list"), "read_namespaced_pod_log": ("", "pods/log", "get")}
    used = set(re.findall(r"\.((?:read|patch|list|create|replace|delete)_namespaced_\w+)\(",
                          (ROOT / "tasks" / "kubernetes_deploy.py").read_text() + (ROOT / "tasks" / "logs.py").read_text()))
    assert used <= set(needs), f"a call the RBAC test does not know: {used - set(needs)}"
    assert granted == {needs[call] for call in used}
    # the canary's replace and delete reach the canary only; create cannot be narrowed by name in RBAC
    narrowed = [rule for rule in role["rules"] if {"update", "delete"} & set(rule["verbs"])]
    assert narrowed and all(rule.get("resourceNames") == ["actor-system-canary"] for rule in narrowed)
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert not secret.get("data") and not secret.get("stringData")  # no token in the repository
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert "ACTOR_ROLLBACK_RECEIVER_TOKEN" not in env  # a Secret volume: the token is in no environment
    mounted = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "receiver-token")
    assert env["ACTOR_ROLLBACK_RECEIVER_TOKEN_FILE"]["value"] == mounted["mountPath"] + "/token"
    assert next(v for v in pod["volumes"] if v["name"] == "receiver-token")["secret"]["secretName"] == \
        secret["metadata"]["name"]


def test_the_kubernetes_work_pool_deployments_point_at_real_flows():
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((ROOT / "deployments" / "prefect-kubernetes.yaml").read_text())
    assert spec["definitions"]["work_pools"]["kubernetes"]["name"] == "rollback-kubernetes"
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)  # as a job loads it
        assert flow.fn.__module__.startswith("actor_rollback.flows."), deployment["entrypoint"]
        assert deployment["work_pool"]["name"] == "rollback-kubernetes"


def test_grafana_dashboard_loads_and_its_queries_run_on_a_real_prometheus(prometheus):
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "actor-scheduler.json").read_text())
    from actor_rollback.runbook.config import load_config

    assert load_config(None).dashboards.grafana.endswith(f"/d/{dashboard['uid']}")  # X.2's link
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 6
    for expr in exprs:
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
    provisioning = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "dashboards" / "actor-rollback.yml").read_text())
    assert provisioning["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dockerfile_installs_the_wheel_runs_unprivileged_and_bakes_no_secret():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p.split(".")[0] for p in setuptools["packages"]} | set(setuptools["package-dir"].values())
    for folder in folders:
        assert f"COPY {folder}/ {folder}/" in dockerfile, folder
    # the image keeps no source tree: the Kubernetes deployments name the installed package's modules, and the
    # pull step's folder is the image's own
    spec = yaml.safe_load((ROOT / "deployments" / "prefect-kubernetes.yaml").read_text())
    assert all(":" not in d["entrypoint"] for d in spec["deployments"])
    workdir = spec["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert dockerfile.strip().split("WORKDIR ")[-1].startswith(f"{workdir}\n")
    assert "COPY pyproject.toml README.md ./" in dockerfile  # rollback.toml is package data of runbook/
    assert "pip wheel --no-cache-dir --no-deps -w /tmp/wheels ." in dockerfile and " -e " not in dockerfile
    assert 'wheel="$(ls /tmp/wheels/actor_rollback-*.whl)"' in dockerfile
    # with the extras a Kubernetes work pool's worker and jobs (prefect-kubernetes) and the HA servers (prefect-redis)
    # need: the wheel declares them (tests/test_packaging.py)
    assert 'pip install --no-cache-dir "${wheel}[kubernetes,ha]"' in dockerfile
    assert "pip install --quiet -e '.[dev]'" in makefile
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", dockerfile, re.M)  # a pinned base, never :latest
    assert re.search(r"^USER rollback$", dockerfile, re.M)
    assert not re.search(r"(?i)(token|password|secret|key)\s*=", dockerfile.split("ENTRYPOINT")[0].replace(
        "GIT_TERMINAL_PROMPT=0", ""))
    assert 'ENTRYPOINT ["actor-rollback"]' in dockerfile and "--receiver-host" in dockerfile
