"""Small builders shared by the tests: contexts, config variants, commits on real repositories."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import tomllib
from pathlib import Path

from actor_rollback.runbook.config import SHIPPED_CONFIG, RollbackConfig, parse_config
from actor_rollback.tasks.context import StepContext


def config(**changes) -> RollbackConfig:
    """The shipped config with dotted-key changes, e.g. config(**{"git.push": "branch"})."""
    data = tomllib.loads(SHIPPED_CONFIG.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]
        node[leaf] = value
    return parse_config(data)


def context(repo: Path, phase: str = "1", step_id: str = "P1.2b", cfg: RollbackConfig | None = None,
            incident: str = "inc-test", **kw) -> StepContext:
    return StepContext(repo=repo, cfg=cfg or config(), phase=phase, incident=incident,
                       reason="test: throughput regression", step_id=step_id, **kw)


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_change(repo: Path, rel: str, text: str, message: str, push: bool = False) -> str:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    run_git(repo, "add", rel)
    run_git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", message)
    if push:
        run_git(repo, "push", "-q", "origin", "main")
    return run_git(repo, "rev-parse", "HEAD")


def other_clone(origin: Path, where: Path) -> Path:
    """A teammate's clone, to move the remote under the rollback's feet."""
    subprocess.run(["git", "clone", "-q", str(origin), str(where)], check=True)
    return where


def refs(repo: Path) -> str:
    return run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)")


class HttpSink:
    """An outside service's stand-in (pager, Slack, issue tracker): a real HTTP server on loopback
    that keeps what it is sent, headers included."""

    def __init__(self, status: int = 204) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                outer.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/page"

    def wait_for(self, predicate, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in list(self.bodies):
                if predicate(body):
                    return body
            time.sleep(0.1)
        raise AssertionError(f"nothing matching arrived in {timeout} s; got {self.bodies}")


def replaced(text: str, **replacements: str) -> str:
    """`text` with exact replacements, each of which must match."""
    for old, new in replacements.items():
        assert old in text, f"not in the config: {old}"
        text = text.replace(old, new)
    return text


def config_variant(where: Path, text: str | None = None, **replacements: str) -> Path:
    """The session's test config (or `text`) with exact text replacements, written to <where>/rollback.toml."""
    text = text if text is not None else Path(os.environ["ACTOR_ROLLBACK_TEST_CONFIG"]).read_text()
    path = where / "rollback.toml"
    path.write_text(replaced(text, **replacements))
    return path


def paged_config_text(block: str, roles: tuple[str, ...]) -> str:
    """The session's test config with these roles reached through the notification block `block`."""
    text = Path(os.environ["ACTOR_ROLLBACK_TEST_CONFIG"]).read_text()
    for role in roles:
        head = re.search(rf"\[contacts\.{role}\][^\n]*\nname = \"TBD\"\n", text)
        assert head, role
        text = text.replace(head.group(0), f'[contacts.{role}]\nname = "{role} person"\nnotify = ["{block}"]\n')
    return text


def serve_on_loopback(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A real HTTP server on a free loopback port, serving in a daemon thread; `.shutdown()` stops it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class MetricsEndpoint:
    """A service's /metrics on loopback (one constant counter): for tests about the watch itself, not its verdict."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"# TYPE actor_messages_processed_total counter\nactor_messages_processed_total 1000\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = serve_on_loopback(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"

    def config(self, where: Path, window_seconds: int) -> Path:
        """The session's test config watching this endpoint for `window_seconds`."""
        path = config_variant(where, **{"\nwindow_seconds = 2 ": f"\nwindow_seconds = {window_seconds} "})
        text = path.read_text()
        url = next(line for line in text.splitlines() if line.startswith("metrics_url"))
        path.write_text(text.replace(url, f'metrics_url = "{self.url}"'))
        return path

    def close(self) -> None:
        self.server.shutdown()


def pager_block(slug: str) -> HttpSink:
    """A CustomWebhookNotificationBlock saved as `slug`, posting {subject, text} to a new HttpSink."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    sink = HttpSink()
    CustomWebhookNotificationBlock(name=slug, url=sink.url, json_data={"subject": "{{subject}}", "text": "{{body}}"}).save(
        slug, overwrite=True)
    return sink


def bench_module(name: str):
    """A module of bench/ (e.g. `_services`, `ha_faults`), loaded from its file. bench/ is on the module path only
    while it loads, as it is for a bench script run from its folder (`from _ha import …`)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "bench"
    spec = importlib.util.spec_from_file_location(f"bench_{name.lstrip('_')}", bench / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str(bench))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(bench))
    return module


def wait_until(check, timeout: float, what: str, detail=lambda: ""):
    """`check()`'s first truthy value, polled every 0.3 s; past `timeout`, a failure naming `what` (and `detail()`,
    e.g. the tail of a log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s\n{detail()}")


def private_ca_certificate(where: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for 127.0.0.1: (ca.pem, server.crt, server.key) in `where`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "actor-rollback test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = where / "ca.pem", where / "server.crt", where / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
