"""#19 part 3: a busy Prefect API (503, SQLite's writer lock taken) is asked again at once, not after 2 s.

A real HTTP server on loopback answers 503 a given number of times, then 201; Prefect's own
clients (sync and async, as the flow engine uses them) talk to it. Fails if a Prefect upgrade
drops the mechanism flows/busy_retry.py relies on (its private `_send_with_retry`).
"""

from __future__ import annotations

import asyncio
import time
from http.server import BaseHTTPRequestHandler

import httpx
import pytest
from helpers import serve_on_loopback

import actor_rollback.flows  # noqa: F401  (installs the quick retry, as every process running the flows does)
from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient


class BusyThenFree:
    """Answers 503 `busy` times (optionally with its own Retry-After), then 201; records when each came."""

    def __init__(self, busy: int, retry_after: str | None = None) -> None:
        self.busy, self.arrivals = busy, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.arrivals.append(time.monotonic())
                busy = len(outer.arrivals) <= outer.busy
                self.send_response(503 if busy else 201)
                if busy and retry_after:
                    self.send_header("Retry-After", retry_after)
                body = b'{"exception_message": "Service Unavailable"}' if busy else b"{}"
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = serve_on_loopback(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api"

    def waits(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def busy_server(request):
    servers = []

    def make(busy: int, retry_after: str | None = None) -> BusyThenFree:
        servers.append(BusyThenFree(busy, retry_after))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_a_busy_answer_is_retried_within_a_tenth_of_a_second_not_two_seconds(busy_server):
    server = busy_server(busy=1)
    with PrefectHttpxSyncClient(base_url=server.url) as client:
        response = client.post("/task_runs/", json={})
    assert response.status_code == 201
    assert len(server.arrivals) == 2
    assert server.waits()[0] < 0.5, f"waited {server.waits()[0]:.2f} s before asking again (Prefect alone: ~2 s)"


def test_the_async_client_the_engine_uses_is_quick_too(busy_server):
    server = busy_server(busy=2)

    async def post():
        async with PrefectHttpxAsyncClient(base_url=server.url) as client:
            return await client.post("/flow_runs/", json={})

    assert asyncio.run(post()).status_code == 201
    assert len(server.arrivals) == 3
    assert all(wait < 0.6 for wait in server.waits()), server.waits()


def test_a_server_still_busy_after_two_quick_retries_gets_prefects_backoff_again(busy_server):
    """A restarting or overloaded server is not hammered: the third retry waits Prefect's own backoff."""
    server = busy_server(busy=3)
    with PrefectHttpxSyncClient(base_url=server.url) as client:
        response = client.post("/task_runs/", json={})
    assert response.status_code == 201
    quick1, quick2, backoff = server.waits()
    assert quick1 < 0.5 and quick2 < 0.6
    assert backoff > 4, f"the third retry came after {backoff:.2f} s; Prefect's backoff is 2 ** 3 s with jitter"


def test_a_servers_own_retry_after_is_kept(busy_server):
    server = busy_server(busy=1, retry_after="1.5")
    with PrefectHttpxSyncClient(base_url=server.url) as client:
        assert client.post("/task_runs/", json={}).status_code == 201
    assert server.waits()[0] >= 1.4


def test_the_switch_leaves_prefects_own_backoff_alone():
    """ACTOR_ROLLBACK_QUICK_503_RETRY=0 (the bench's baseline): importing the flows wraps nothing."""
    import os
    import subprocess
    import sys

    probe = ("import flows; from prefect.client.base import PrefectHttpxAsyncClient as A, PrefectHttpxSyncClient as S; "
             "print(hasattr(S._send_with_retry, '__wrapped__'), hasattr(A._send_with_retry, '__wrapped__'))")
    for switch, wrapped in (("0", "False False"), ("1", "True True")):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "ACTOR_ROLLBACK_QUICK_503_RETRY": switch})
        assert done.stdout.strip() == wrapped, (switch, done.stdout, done.stderr[-500:])


def test_serve_registers_a_deployment_again_when_prefect_stays_busy_past_its_clients_retries(busy_server):
    """Every serve of a host restarted at once: SQLite answered 503 past the client's own retries and serve died
    registering its deployments (bench/incident_day.py). serve's setup calls are asked again until taken; a
    refusal (4xx) is raised at once."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from actor_rollback.deployments.serve import until_prefect_takes

    server = busy_server(busy=4)
    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 1}):
        with PrefectHttpxSyncClient(base_url=server.url, raise_on_all_errors=True) as client:
            response = until_prefect_takes("a test deployment", lambda: client.post("/deployments/", json={}))
    assert response.status_code == 201 and len(server.arrivals) == 5


def test_serve_setup_does_not_wait_out_a_refusal(busy_server):
    from prefect.exceptions import PrefectHTTPStatusError

    from actor_rollback.deployments.serve import until_prefect_takes

    server = busy_server(busy=0)

    def refused():
        raise PrefectHTTPStatusError.from_httpx_error(httpx.HTTPStatusError(
            "refused", request=httpx.Request("POST", server.url), response=httpx.Response(422)))

    started = time.monotonic()
    with pytest.raises(PrefectHTTPStatusError):
        until_prefect_takes("a bad deployment", refused)
    assert time.monotonic() - started < 0.5
