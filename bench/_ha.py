"""Highly available Prefect on one machine, all real processes on loopback (#19).

    PostgreSQL ─┬─ API server 1 (`prefect server start --no-services`) ─┐
                ├─ API server 2 (same)                                  ├─ HAProxy ← workers, receivers, CLI
                └─ background services, once (`prefect server services start`)
    Redis: messaging (events between the processes), causal ordering, concurrency leases, docket.

The same topology as docker/compose.ha.yaml and docs/OPERATIONS.md ("High availability").
Shared by bench/ha_faults.py and tests/test_ha.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from _services import free_port, postgres, stop, wait_healthy

BIN = Path(sys.executable).parent


def redis_env(redis_port: int, database_url: str) -> dict[str, str]:
    """What every Prefect server process of the topology needs (Prefect's "scale self-hosted" guide)."""
    redis = f"redis://127.0.0.1:{redis_port}"
    return {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": f"{redis}/0",
        "PREFECT_SERVER_DOCKET_URL": f"{redis}/1",
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",  # migrated once, before the servers start
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


HAPROXY_CONFIG = Path(__file__).resolve().parents[1] / "docker" / "haproxy" / "haproxy.cfg"


def haproxy_config(port: int, server_ports: list[int]) -> str:
    """docker/haproxy/haproxy.cfg — the compose stack's — with loopback addresses: one configuration, two places."""
    lines = []
    for line in HAPROXY_CONFIG.read_text().splitlines():
        if line.strip().startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        elif line.strip().startswith("server api"):
            continue
        lines.append(line)
    lines += [f"    server api{i + 1} 127.0.0.1:{p} check" for i, p in enumerate(server_ports)]
    return "\n".join(lines) + "\n"


@dataclass
class HAPrefect:
    where: Path
    api_url: str = ""
    env: dict[str, str] = field(default_factory=dict)  # for clients: PREFECT_API_URL → the load balancer
    servers: list[subprocess.Popen] = field(default_factory=list)
    server_ports: list[int] = field(default_factory=list)
    services: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    others: list[subprocess.Popen] = field(default_factory=list)
    _server_env: dict[str, str] = field(default_factory=dict)

    def start_server(self, index: int) -> subprocess.Popen:
        port = self.server_ports[index]
        log = open(self.where / f"api-{index + 1}.log", "a")
        return subprocess.Popen([str(BIN / "prefect"), "server", "start", "--no-services", "--host", "127.0.0.1",
                                 "--port", str(port)], env=self._server_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start_worker(self, pool: str, name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.where / f"worker-{name}.log", "a")
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
                                   "--name", name, "--limit", "4"],
                                  env={**os.environ, **self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.workers.append(worker)
        return worker

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the process and every process it started (a worker's flow runs die with it)."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)

    def stop(self) -> None:
        # clients first, then the servers, then what the servers need (HAProxy, Redis)
        for process in [*self.workers, *self.servers, *([self.services] if self.services else []), *self.others]:
            if process.poll() is None:
                stop(process)


def start_ha_prefect(where: Path, database_url: str) -> HAPrefect:
    """Redis, the schema, two API servers, the background services once, HAProxy; returns when all answer."""
    for tool in ("redis-server", "haproxy"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise FileNotFoundError(f"{tool} is not installed (Debian package {tool})")
    where.mkdir(parents=True, exist_ok=True)
    ha = HAPrefect(where)
    redis_port = free_port()
    ha.others.append(subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=open(where / "redis.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
    home = where / "prefect-home"
    home.mkdir(exist_ok=True)
    ha._server_env = {**os.environ, **redis_env(redis_port, database_url), "PREFECT_HOME": str(home),
                      "PREFECT_LOGGING_LEVEL": "WARNING"}
    subprocess.run([str(BIN / "prefect"), "server", "database", "upgrade", "-y"], env=ha._server_env, check=True,
                   capture_output=True, timeout=300)
    ha.server_ports = [free_port(), free_port()]
    # one after the other: each registers Prefect's block types at start-up, and two at once collide on them
    ha.servers = [ha.start_server(0)]
    wait_healthy(f"http://127.0.0.1:{ha.server_ports[0]}/api")
    ha.servers.append(ha.start_server(1))
    ha.services = subprocess.Popen([str(BIN / "prefect"), "server", "services", "start"], env=ha._server_env,
                                   stdout=open(where / "services.log", "w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
    lb_port = free_port()
    (where / "haproxy.cfg").write_text(haproxy_config(lb_port, ha.server_ports))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    ha.others.append(subprocess.Popen([haproxy, "-db", "-f", str(where / "haproxy.cfg")],
                                      stdout=open(where / "haproxy.log", "w"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
    for port in ha.server_ports:
        wait_healthy(f"http://127.0.0.1:{port}/api")
    ha.api_url = f"http://127.0.0.1:{lb_port}/api"
    wait_healthy(ha.api_url)
    ha.env = {"PREFECT_API_URL": ha.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return ha


__all__ = ["HAPrefect", "start_ha_prefect", "postgres", "free_port", "wait_healthy"]
