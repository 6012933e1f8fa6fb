"""Session fixtures: one real Prefect server, one shared cargo target dir, fresh sample workspaces.

Under REQUIRE_REAL_SERVICES=1 (CI) a missing real service fails the test instead of skipping it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.sample_workspace import DEBIAN_CARGO_REGISTRY, SampleWorkspace, create_sample_workspace  # noqa: E402

CARGO_BIN = Path.home() / ".cargo" / "bin"
os.environ["PATH"] = f"{CARGO_BIN}{os.pathsep}{os.environ['PATH']}"


def require(available: bool, what: str) -> None:
    """Skip without the real service — or fail, when CI says every real service must be there."""
    if available:
        return
    if os.environ.get("REQUIRE_REAL_SERVICES") == "1":
        pytest.fail(f"{what} is not available, and REQUIRE_REAL_SERVICES=1 forbids skipping")
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def prefect_server(session_dir: Path):
    """A real `prefect server start` on loopback (SQLite), shared by the whole session."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = session_dir / "prefect-home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": url, "TMPDIR": str(session_dir)}
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    log = open(session_dir / "prefect-server.log", "w")
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"the Prefect server did not start: see {session_dir / 'prefect-server.log'}")
        time.sleep(0.3)
    os.environ["PREFECT_API_URL"] = url  # for the CLI subprocesses the tests start
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: str(home)}):
        yield url
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # send queued run logs before the server goes away
    os.killpg(server.pid, 15)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
    log.close()


@pytest.fixture(scope="session")
def cargo_env(session_dir: Path) -> dict[str, str]:
    """cargo with Debian's crate sources, and one target dir so the sample builds once a session."""
    require(shutil.which("cargo") is not None, "cargo")
    require((DEBIAN_CARGO_REGISTRY / "criterion-0.3.6").exists(), "Debian's librust-criterion-dev")
    target = session_dir / "cargo-target"
    os.environ["CARGO_TARGET_DIR"] = str(target)
    return {"CARGO_TARGET_DIR": str(target)}


@pytest.fixture
def sample(tmp_path: Path) -> SampleWorkspace:
    return create_sample_workspace(tmp_path / "sample")


def tree_digest(*roots: Path) -> str:
    """Every file's path and bytes under the roots (the .git folders included)."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
