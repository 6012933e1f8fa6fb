"""P1.3a on Kubernetes: set the actor-system Deployment to the rollback version, wait for the rollout.

Uses the official `kubernetes` client with a kubeconfig (KUBECONFIG or ~/.kube/config) or the
in-cluster service account. The patch carries the resourceVersion it was read at, so a
concurrent change answers 409: the Deployment is read again and the patch retried. The rollout
is done when the controller has observed the new generation and every replica is updated and
available; the Progressing condition's ProgressDeadlineExceeded, or our own timeout, fails it.

A.6's canary is a Deployment `<deployment>-canary` made from the stable one's pod template (the
canary image, `track: canary` in its labels and selector, `reintroduce.canary_replicas` replicas),
waited for like any rollout, and deleted when the canary has been judged.
"""

from __future__ import annotations

import copy
import os
import time
from datetime import datetime, timezone

from actor_rollback.runbook.errors import BadInputError, StepError, TransientError
from actor_rollback.runbook.model import StepResult
from actor_rollback.runbook.phases import deploy_version
from actor_rollback.tasks.context import StepContext

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


def deploy_to_kubernetes(ctx: StepContext, version: str | None = None, name: str = "deploy") -> StepResult:
    """Set the Deployment's image to `version` (the phase's rollback version unless given)."""
    from kubernetes.client.exceptions import ApiException

    k = ctx.cfg.deploy.kubernetes
    image = k.image.format(version=version or deploy_version(ctx.cfg, ctx.phase))
    where = f"deployment/{k.deployment} -n {k.namespace}"
    _, apps = kubernetes_clients()  # no credentials: bad input, in a plan too (it would-fail, as the run would)
    if ctx.dry_run:  # read-only: the Deployment and its container are there
        try:
            current = apps.read_namespaced_deployment(k.deployment, k.namespace, _request_timeout=10)
        except ApiException as exc:
            raise _api_error(exc, f"reading {where}") from None
        except Exception as exc:  # connection refused, DNS, TLS: the API is not reachable from here
            raise TransientError(f"the Kubernetes API is not reachable ({type(exc).__name__}: {exc})") from None
        running = _current_image(current, k.container)
        return StepResult(id=ctx.step_id, name=name, status="planned", evidence=[
            f"set {where} container {k.container} to {image} (runs {running} now); wait for the rollout"])
    evidence = []
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            current = apps.read_namespaced_deployment(k.deployment, k.namespace)
        except ApiException as exc:
            raise _api_error(exc, f"reading {where}") from None
        if _current_image(current, k.container) == image and _rolled_out(current)[0]:
            return StepResult(id=ctx.step_id, name=name, status="already-done",
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
    evidence.append(_wait_for_rollout(apps, k, k.deployment))
    return StepResult(id=ctx.step_id, name=name, status="done", evidence=evidence, data={"image": image})


def _wait_for_rollout(apps, k, deployment: str) -> str:
    from kubernetes.client.exceptions import ApiException

    where = f"deployment/{deployment} -n {k.namespace}"
    deadline = time.monotonic() + k.rollout_timeout_seconds
    while True:
        try:
            status = apps.read_namespaced_deployment_status(deployment, k.namespace)
        except ApiException as exc:
            raise _api_error(exc, f"reading the rollout of {where}") from None
        done, progress = _rolled_out(status)
        if done:
            return f"rollout complete: {progress}"
        if time.monotonic() > deadline:
            raise StepError(f"the rollout of {where} did not finish within {k.rollout_timeout_seconds} s ({progress})")
        time.sleep(k.poll_seconds)


def canary_name(ctx: StepContext) -> str:
    return f"{ctx.cfg.deploy.kubernetes.deployment}-canary"


def _canary_pod_spec(template_spec: dict, container: str, image: str, env: dict[str, str]) -> dict:
    spec = copy.deepcopy(template_spec)
    for c in spec.get("containers", []):
        if c["name"] == container:
            c["image"] = image
            kept = [e for e in c.get("env") or [] if e.get("name") not in env]
            c["env"] = kept + [{"name": key, "value": value} for key, value in sorted(env.items())]
    return spec


def canary_manifest(stable, ctx: StepContext, image: str) -> tuple[dict, list[str]]:
    """The canary Deployment made from the stable one, and warnings about the pair."""
    from kubernetes import client

    k, r = ctx.cfg.deploy.kubernetes, ctx.cfg.reintroduce
    plain = client.ApiClient().sanitize_for_serialization(stable)
    _current_image(stable, k.container)  # the container must exist: a clear error otherwise
    selector = plain["spec"].get("selector") or {}
    template = plain["spec"]["template"]
    labels = {**(template.get("metadata", {}).get("labels") or {}), "track": "canary"}
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": canary_name(ctx), "namespace": k.namespace,
                     "labels": {**(plain["metadata"].get("labels") or {}), "track": "canary",
                                "actor-rollback/canary-of": k.deployment},
                     "annotations": {"actor-rollback/incident": ctx.incident}},
        "spec": {"replicas": r.canary_replicas,
                 "selector": {**selector, "matchLabels": {**(selector.get("matchLabels") or {}), "track": "canary"}},
                 "template": {"metadata": {"labels": labels,
                                           "annotations": {"actor-rollback/incident": ctx.incident}},
                              "spec": _canary_pod_spec(template["spec"], k.container, image, r.canary_env)}},
    }
    warnings = []
    stable_match = selector.get("matchLabels") or {}
    if not selector.get("matchExpressions") and all(labels.get(key) == value for key, value in stable_match.items()):
        warnings.append(f"the stable Deployment's selector {stable_match} also matches the canary's pods: give the "
                        "stable pods `track: stable` in their labels and selector (Kubernetes' canary pattern)")
    return manifest, warnings


def deploy_canary_to_kubernetes(ctx: StepContext, version: str) -> StepResult:
    """A.6: the canary Deployment beside the stable one; a rerun updates it instead of failing."""
    from kubernetes.client.exceptions import ApiException

    k, r = ctx.cfg.deploy.kubernetes, ctx.cfg.reintroduce
    image = r.canary_image.format(version=version)
    name = canary_name(ctx)
    where = f"deployment/{name} -n {k.namespace}"
    _, apps = kubernetes_clients()
    try:
        stable = apps.read_namespaced_deployment(k.deployment, k.namespace)
    except ApiException as exc:
        raise _api_error(exc, f"reading the stable deployment/{k.deployment} -n {k.namespace}") from None
    manifest, evidence = canary_manifest(stable, ctx, image)
    try:
        apps.create_namespaced_deployment(k.namespace, manifest)
        evidence.append(f"created {where}: {r.canary_replicas} replica(s) of {image}")
    except ApiException as exc:
        if exc.status != 409:
            raise _api_error(exc, f"creating {where}") from None
        try:  # a rerun: the canary exists; bring it to this image and template
            current = apps.read_namespaced_deployment(name, k.namespace)
            manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
            apps.replace_namespaced_deployment(name, k.namespace, manifest)
        except ApiException as again:
            raise _api_error(again, f"updating the existing {where}") from None
        evidence.append(f"{where} existed (a rerun): replaced with {r.canary_replicas} replica(s) of {image}")
    evidence.append(_wait_for_rollout(apps, k, name))
    return StepResult(id="A.6", name="canary", status="done", evidence=evidence, data={"canary_image": image})


def stop_canary_on_kubernetes(ctx: StepContext) -> StepResult:
    from kubernetes.client.exceptions import ApiException

    k = ctx.cfg.deploy.kubernetes
    where = f"deployment/{canary_name(ctx)} -n {k.namespace}"
    _, apps = kubernetes_clients()
    try:
        apps.delete_namespaced_deployment(canary_name(ctx), k.namespace, propagation_policy="Foreground")
    except ApiException as exc:
        if exc.status == 404:
            return StepResult(id="A.6", name="stop-canary", status="already-done", evidence=[f"no {where}"])
        raise _api_error(exc, f"deleting {where}") from None
    return StepResult(id="A.6", name="stop-canary", status="done", evidence=[f"deleted {where} (and its pods)"])
