"""Shared by the bench scripts: real services on loopback (a Prefect server of the script's own)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def wait_for(check, timeout: float, what: str, step: float = 0.01):
    """`check()`'s first truthy value, polled every `step` s; past `timeout` the bench stops, naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_binary(name: str) -> str | None:
    return shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)


def as_postgres_user(args: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server as `nobody` then."""
    return ["runuser", "-u", "nobody", "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL of its own on loopback (Debian's initdb/pg_ctl); yields Prefect's database URL."""
    initdb, pg_ctl, createdb = pg_binary("initdb"), pg_binary("pg_ctl"), pg_binary("createdb")
    if not (initdb and pg_ctl and createdb):
        raise FileNotFoundError("PostgreSQL (Debian package postgresql: initdb, pg_ctl) is not installed")
    # outside private temp folders, so that `nobody` can reach it
    data = Path(tempfile.mkdtemp(prefix="actor-rollback-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "nobody")
    port = free_port()
    try:
        subprocess.run(as_postgres_user([initdb, "-D", str(data / "db"), "-U", "prefect", "--auth=trust"]),
                       check=True, capture_output=True)
        subprocess.run(as_postgres_user([pg_ctl, "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
                                         f"-k {data} -p {port} -c listen_addresses=127.0.0.1 -c max_connections=200",
                                         "start"]), check=True, capture_output=True)
        subprocess.run([createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect"], check=True)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run(as_postgres_user([pg_ctl, "-D", str(data / "db"), "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def start_prefect(home: Path, database_url: str = "", port: int = 0) -> subprocess.Popen:
    """`prefect server start` of its own (SQLite, or the PostgreSQL at `database_url`); PREFECT_* set in this
    process before Prefect is imported. The same home and port again: the same server back after an outage."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/api"
    os.environ.update({"PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_LOGGING_LEVEL": "WARNING"})
    env = {**os.environ, **({"PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url} if database_url else {})}
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_healthy(url)
    except RuntimeError:
        raise SystemExit("the Prefect server did not start") from None
    return server


def wait_healthy(url: str, timeout: float = 120) -> None:
    """Until `<url>/health` answers 200 (a Prefect API, or the load balancer in front of some)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become healthy in {timeout:.0f} s")


def stamp_pushes(origin: Path, log: Path) -> None:
    """A post-receive hook on the bare remote that appends the time of every push to `log`: the remote's own
    word on when a change arrived (and how many pushes there were)."""
    hook = origin / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\npython3 -c 'import time; print(time.time())' >> {log}\n")
    hook.chmod(0o755)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, 9)
