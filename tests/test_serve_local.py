"""`make serve` (scripts/serve-local.sh) as someone trying the UI on a fresh machine runs it: its own
Prefect server, a sample workspace, the deployments, and an alert receiver behind a generated token;
and the server it started goes away with it, however serve ends."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port

pytestmark = pytest.mark.prefect


class ServeLocal:
    def __init__(self, tmp_path, *args: str, **env: str) -> None:
        self.port, self.lines = free_port(), []
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("PREFECT_API_URL", "ACTOR_ROLLBACK_RECEIVER_TOKEN")}  # as on a fresh shell
        full_env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_PORT=str(self.port),
                        TMPDIR=str(tmp_path), **env)
        self.process = subprocess.Popen([str(ROOT / "scripts" / "serve-local.sh"), *args], cwd=ROOT, env=full_env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def line(self, pattern: str, timeout: float = 180) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None and not any(re.search(pattern, x) for x in self.lines):
                raise AssertionError(f"serve-local.sh ended ({self.process.returncode}) without {pattern!r}:\n"
                                     + "\n".join(self.lines[-30:]))
            time.sleep(0.2)
        raise AssertionError(f"no line {pattern!r} within {timeout} s:\n" + "\n".join(self.lines[-30:]))

    def server_answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_server_gone(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.server_answers():
                return True
            time.sleep(0.3)
        return False

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_make_serve_starts_a_server_a_sample_and_a_receiver_behind_a_generated_token(tmp_path):
    receiver_port = free_port()
    serve = ServeLocal(tmp_path, "--receiver-port", str(receiver_port))
    try:
        serve.line(rf"Prefect UI: http://127\.0\.0\.1:{serve.port}$")
        sample = serve.line(r"no REPO given: serving against a sample workspace at (\S+)").group(1)
        assert (Path(sample) / ".git").exists()
        token = serve.line(r"alert receiver token \(give it to Alertmanager as a bearer token\): (\S+)").group(1)
        assert len(token) >= 40  # secrets.token_urlsafe(32)
        receiver = f"http://127.0.0.1:{receiver_port}"

        def healthy():
            try:
                return httpx.get(f"{receiver}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=180)
        assert httpx.post(f"{receiver}/alerts/alertmanager", content=b"{}").status_code == 401
        accepted_token = httpx.post(f"{receiver}/alerts/alertmanager", content=b"{not json",
                                    headers={"Authorization": f"Bearer {token}"})
        assert accepted_token.status_code == 400, accepted_token.text  # past the token, stopped at the body
        def deployments() -> set[str]:
            served = httpx.post(f"http://127.0.0.1:{serve.port}/api/deployments/filter", json={}).json()
            return {d["name"] for d in served}

        wait_for(lambda: {"manual", "alert", "scheduled"} <= deployments())
        os.killpg(serve.process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        serve.process.wait(timeout=60)
        assert serve.wait_server_gone(), "the Prefect server outlived make serve"
    finally:
        serve.kill()


def test_make_serve_stops_the_server_it_started_when_serve_refuses_to_start(tmp_path):
    serve = ServeLocal(tmp_path, REPO=str(tmp_path / "no-such-clone"))
    try:
        serve.line(rf"Prefect UI: http://127\.0\.0\.1:{serve.port}$")
        assert serve.process.wait(timeout=120) == 2
        assert any("no-such-clone" in line for line in serve.lines), serve.lines[-10:]
        assert serve.wait_server_gone(), "serve failed and left its Prefect server running"
    finally:
        serve.kill()
