"""An in-test Kubernetes API server implementing exactly the calls actor-rollback makes.

No cluster can run on these machines, so the real `kubernetes` client talks to this HTTP
server on loopback: Deployment read / status read / patch (with resourceVersion and 409
conflicts), a rollout that advances one replica per status read (or stalls past its progress
deadline), pod list by label and pod logs with tailLines. Scenarios inject 409s and 5xx. Other
Deployments (A.6's canary) can be created, read, replaced and deleted; a create whose selector does
not match its pod labels is refused with 422 as the real API server does.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


@dataclass
class ClusterState:
    namespace: str = "default"
    name: str = "actor-system"
    image: str = "registry.example.com/actor-system:v0.4.0"
    replicas: int = 3
    generation: int = 1
    resource_version: int = 100
    observed_generation: int = 1
    updated: int = 3
    stall: bool = False  # the new pods never become available; the deadline passes
    conflicts_left: int = 0  # answer this many PATCHes with 409 (someone else changed it)
    errors_left: int = 0  # answer this many requests with 500
    pod_logs: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    patches: list[dict] = field(default_factory=list)
    status_reads_after_patch: int = 0
    others: dict[str, dict] = field(default_factory=dict)  # created Deployments (the canary), by name
    deletions: list[tuple[str, dict]] = field(default_factory=list)


def deployment_json(state: ClusterState) -> dict:
    available = state.updated if not state.stall else 0
    conditions = [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]
    if state.stall and state.status_reads_after_patch >= 2:
        conditions.append({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                           "message": f'ReplicaSet "{state.name}-7d9f" has timed out progressing.'})
    else:
        conditions.append({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": state.name, "namespace": state.namespace, "generation": state.generation,
                     "resourceVersion": str(state.resource_version), "labels": {"app": "actor-system"}},
        "spec": {"replicas": state.replicas, "selector": {"matchLabels": {"app": "actor-system"}},
                 "template": {"metadata": {"labels": {"app": "actor-system"}},
                              "spec": {"containers": [{"name": "actor-system", "image": state.image}]}}},
        "status": {"observedGeneration": state.observed_generation, "replicas": state.replicas + (
            0 if state.updated == state.replicas and not state.stall else 1),
                   "updatedReplicas": state.updated, "availableReplicas": available if state.stall else state.updated,
                   "readyReplicas": available, "conditions": conditions},
    }


def other_json(state: ClusterState, name: str) -> dict:
    stored = copy.deepcopy(state.others[name])
    wanted = stored["spec"].get("replicas", 1)
    ready = stored.pop("_updated")
    stored["metadata"]["generation"] = stored.pop("_generation")
    stored["metadata"]["resourceVersion"] = str(stored.pop("_resource_version"))
    stored["status"] = {"observedGeneration": stored["metadata"]["generation"], "replicas": wanted,
                        "updatedReplicas": ready, "availableReplicas": ready, "readyReplicas": ready,
                        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}
    return stored


def selector_matches(manifest: dict) -> bool:
    selector = manifest.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    labels = manifest.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def status_json(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message,
            "code": code}


class KubernetesApi:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                state = outer.state
                url = urlparse(self.path)
                state.requests.append((method, self.path))
                if self.headers.get("Authorization") != "Bearer t0k3n":
                    return self._send(401, status_json(401, "Unauthorized", "no token"))
                if state.errors_left:
                    state.errors_left -= 1
                    return self._send(500, status_json(500, "InternalError", "etcd leader changed"))
                ns, name = state.namespace, state.name
                deployment = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
                if method == "GET" and url.path == deployment:
                    return self._send(200, deployment_json(state))
                if method == "GET" and url.path == deployment + "/status":
                    self._advance()
                    return self._send(200, deployment_json(state))
                if method == "PATCH" and url.path == deployment:
                    return self._patch()
                if url.path.startswith(f"/apis/apps/v1/namespaces/{ns}/deployments"):
                    return self._other_deployment(method, url.path.removeprefix(
                        f"/apis/apps/v1/namespaces/{ns}/deployments").strip("/"))
                if method == "GET" and url.path == f"/api/v1/namespaces/{ns}/pods":
                    selector = parse_qs(url.query).get("labelSelector", [""])[0]
                    pods = [{"metadata": {"name": pod, "namespace": ns, "labels": {"app": "actor-system"}}}
                            for pod in state.pod_logs] if selector == "app=actor-system" else []
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods})
                match = re.fullmatch(rf"/api/v1/namespaces/{ns}/pods/([^/]+)/log", url.path)
                if method == "GET" and match and match.group(1) in state.pod_logs:
                    query = parse_qs(url.query)
                    if "follow" in query:
                        return self._send(400, status_json(400, "BadRequest", "follow is not served here"))
                    lines = state.pod_logs[match.group(1)].splitlines()
                    tail = int(query.get("tailLines", [len(lines)])[0])
                    return self._send(200, "\n".join(lines[-tail:]) + "\n", "text/plain")
                return self._send(404, status_json(404, "NotFound", f"{method} {url.path}"))

            def _patch(self) -> None:
                state = outer.state
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                state.patches.append(copy.deepcopy(body))
                if state.conflicts_left:
                    state.conflicts_left -= 1
                    state.resource_version += 1  # someone else changed the Deployment meanwhile
                    return self._send(409, status_json(409, "Conflict", "the object has been modified"))
                sent_version = body.get("metadata", {}).get("resourceVersion")
                if sent_version and sent_version != str(state.resource_version):
                    return self._send(409, status_json(409, "Conflict", "the object has been modified"))
                for container in body["spec"]["template"]["spec"]["containers"]:
                    if container["name"] == "actor-system":
                        state.image = container["image"]
                state.generation += 1
                state.resource_version += 1
                state.updated = 0
                state.status_reads_after_patch = 0
                self._send(200, deployment_json(state))

            def _body(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

            def _other_deployment(self, method: str, rest: str) -> None:
                state = outer.state
                name, _, sub = rest.partition("/")
                if method == "POST" and not name:
                    manifest = self._body()
                    new = manifest.get("metadata", {}).get("name", "")
                    if new in state.others or new == state.name:
                        return self._send(409, status_json(409, "AlreadyExists", f'deployments.apps "{new}" already exists'))
                    if not selector_matches(manifest):
                        return self._send(422, status_json(422, "Invalid", "spec.template.metadata.labels: Invalid "
                                                           "value: `selector` does not match template `labels`"))
                    state.others[new] = {**manifest, "_generation": 1, "_resource_version": 500, "_updated": 0}
                    return self._send(201, other_json(state, new))
                if name not in state.others:
                    return self._send(404, status_json(404, "NotFound", f'deployments.apps "{name}" not found'))
                stored = state.others[name]
                if method == "GET" and sub in ("", "status"):
                    if sub == "status":  # the canary's pods come up at the first status read
                        stored["_updated"] = stored["spec"].get("replicas", 1)
                    return self._send(200, other_json(state, name))
                if method == "PUT" and not sub:
                    manifest = self._body()
                    if manifest.get("metadata", {}).get("resourceVersion") != str(stored["_resource_version"]):
                        return self._send(409, status_json(409, "Conflict", "the object has been modified"))
                    state.others[name] = {**manifest, "_generation": stored["_generation"] + 1,
                                          "_resource_version": stored["_resource_version"] + 1, "_updated": 0}
                    return self._send(200, other_json(state, name))
                if method == "DELETE" and not sub:
                    options = {**self._body(), **{k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}}
                    state.deletions.append((name, options))  # the client sends the options as query or body
                    del state.others[name]
                    return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                return self._send(404, status_json(404, "NotFound", f"{method} {self.path}"))

            def _advance(self) -> None:
                state = outer.state
                state.status_reads_after_patch += 1
                state.observed_generation = state.generation
                if not state.stall and state.updated < state.replicas:
                    state.updated += 1

            def do_GET(self):
                self._route("GET")

            def do_PATCH(self):
                self._route("PATCH")

            def do_POST(self):
                self._route("POST")

            def do_PUT(self):
                self._route("PUT")

            def do_DELETE(self):
                self._route("DELETE")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {self.url}
users:
- name: rollback
  user:
    token: t0k3n
contexts:
- name: test
  context:
    cluster: test
    user: rollback
    namespace: default
current-context: test
""")
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
