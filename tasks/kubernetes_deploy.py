"""P1.3a on Kubernetes: set the actor-system Deployment to the rollback version, wait for the rollout.

Uses the official `kubernetes` client with a kubeconfig (KUBECONFIG or ~/.kube/config) or the
in-cluster service account. The patch carries the resourceVersion it was read at, so a
concurrent change answers 409: the Deployment is read again and the patch retried. The rollout
is done when the controller has observed the new generation and every replica is updated and
available; the Progressing condition's ProgressDeadlineExceeded, or our own timeout, fails it.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from runbook.errors import BadInputError, StepError, TransientError
from runbook.model import StepResult
from runbook.phases import deploy_version
from tasks.context import StepContext

CONFLICT_RETRIES = 5


def kubernetes_clients():
    """(CoreV1Api, AppsV1Api) from in-cluster credentials or a kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:  # KUBECONFIG is read now, not when the client library was imported
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
        except (config.ConfigException, FileNotFoundError, TypeError) as exc:
            raise BadInputError(f"no Kubernetes credentials ({exc}): set KUBECONFIG, or run in the cluster "
                                "with a service account") from None
    return client.CoreV1Api(), client.AppsV1Api()


def _api_error(exc, what: str) -> Exception:
    if exc.status and exc.status >= 500:
        return TransientError(f"Kubernetes API {exc.status} while {what}: {exc.reason}")
    if exc.status == 404:
        return BadInputError(f"Kubernetes: not found while {what}; check deploy.kubernetes namespace/deployment")
    if exc.status in (401, 403):
        return BadInputError(f"Kubernetes refused {what} ({exc.status}); the credentials need get/patch on "
                             "deployments in the namespace")
    return StepError(f"Kubernetes API {exc.status} while {what}: {exc.reason}")


def _current_image(deployment, container: str) -> str:
    for spec in deployment.spec.template.spec.containers:
        if spec.name == container:
            return spec.image
    names = ", ".join(c.name for c in deployment.spec.template.spec.containers)
    raise BadInputError(f"the Deployment has no container {container!r} (it has {names}); "
                        "fix deploy.kubernetes.container")


def _rolled_out(deployment) -> tuple[bool, str]:
    wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    status = deployment.status
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise StepError(f"the rollout stalled: {condition.message or 'progress deadline exceeded'}; "
                            "the previous ReplicaSet keeps serving — look at the new pods' events")
    observed = (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
    updated, available, total = status.updated_replicas or 0, status.available_replicas or 0, status.replicas or 0
    progress = f"{updated}/{wanted} updated, {available}/{wanted} available, {total} total"
    return observed and updated == wanted and available == wanted and total == wanted, progress


def deploy_to_kubernetes(ctx: StepContext) -> StepResult:
    from kubernetes.client.exceptions import ApiException

    k = ctx.cfg.deploy.kubernetes
    image = k.image.format(version=deploy_version(ctx.cfg, ctx.phase))
    where = f"deployment/{k.deployment} -n {k.namespace}"
    if ctx.dry_run:
        return StepResult(id=ctx.step_id, name="deploy", status="planned",
                          evidence=[f"set {where} container {k.container} to {image}; wait for the rollout"])
    _, apps = kubernetes_clients()
    evidence = []
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            current = apps.read_namespaced_deployment(k.deployment, k.namespace)
        except ApiException as exc:
            raise _api_error(exc, f"reading {where}") from None
        if _current_image(current, k.container) == image and _rolled_out(current)[0]:
            return StepResult(id=ctx.step_id, name="deploy", status="already-done",
                              evidence=[f"{where} already runs {image}, rolled out"])
        body = {
            "metadata": {"resourceVersion": current.metadata.resource_version,
                         "annotations": {"actor-rollback/incident": ctx.incident}},
            "spec": {"template": {
                "metadata": {"annotations": {"actor-rollback/deployed-at": datetime.now(timezone.utc).isoformat()}},
                "spec": {"containers": [{"name": k.container, "image": image}]}}},
        }
        try:
            apps.patch_namespaced_deployment(k.deployment, k.namespace, body)
            evidence.append(f"patched {where}: {k.container} → {image}")
            break
        except ApiException as exc:
            if exc.status == 409 and attempt < CONFLICT_RETRIES:
                evidence.append(f"409 conflict (the Deployment changed meanwhile): read again, attempt {attempt + 1}")
                continue
            raise _api_error(exc, f"patching {where}") from None
    deadline = time.monotonic() + k.rollout_timeout_seconds
    while True:
        try:
            deployment = apps.read_namespaced_deployment_status(k.deployment, k.namespace)
        except ApiException as exc:
            raise _api_error(exc, f"reading the rollout of {where}") from None
        done, progress = _rolled_out(deployment)
        if done:
            evidence.append(f"rollout complete: {progress}")
            return StepResult(id=ctx.step_id, name="deploy", status="done", evidence=evidence,
                              data={"image": image})
        if time.monotonic() > deadline:
            raise StepError(f"the rollout of {where} did not finish within {k.rollout_timeout_seconds} s ({progress})")
        time.sleep(k.poll_seconds)
