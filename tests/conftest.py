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

from actor_rollback.runbook import SHIPPED_CONFIG  # noqa: E402  (the installed package: `make test` installs it)
from actor_rollback.deployments.sample import DEBIAN_CARGO_REGISTRY, SampleWorkspace, create_sample_workspace  # noqa: E402

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
def session_env():
    """What the session fixtures put in the environment (for the CLI subprocesses the tests start) is taken
    back out when the session ends."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="session", autouse=True)
def no_local_server_unless_asked(session_env) -> None:
    """A CLI started without PREFECT_API_URL uses Prefect's ephemeral server in the tests, as before: the local
    server (deployments/local_server.py) outlives its command, so only its own tests start it — and stop it."""
    session_env.setenv("ACTOR_ROLLBACK_LOCAL_SERVER", "off")


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path, monkeypatch) -> None:
    """Each test (and the processes it starts) keeps its receiver spool in its own folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def start_prefect_server(home: Path, log_path: Path, port: int | None = None, **env: str) -> tuple[subprocess.Popen, str]:
    """`prefect server start` on a loopback port (a free one by default) with its own home; (process, API URL)
    once healthy. The same home and port again: the same server back, as after an outage."""
    home.mkdir(exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/api"
    full_env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_API_URL": url, **env}
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    log = open(log_path, "w")
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"the Prefect server did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)


def stop_process_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


@pytest.fixture(scope="session")
def prefect_server(session_dir: Path, session_env):
    """A real `prefect server start` on loopback (SQLite), shared by the whole session."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = session_dir / "prefect-home"
    server, url = start_prefect_server(home, session_dir / "prefect-server.log", TMPDIR=str(session_dir))
    session_env.setenv("PREFECT_API_URL", url)  # for the CLI subprocesses the tests start
    session_env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: str(home)}):
        yield url
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # send queued run logs before the server goes away
    stop_process_group(server)


@pytest.fixture(scope="session")
def cargo_env(session_dir: Path, session_env) -> dict[str, str]:
    """cargo with Debian's crate sources, and one target dir so the sample builds once a session."""
    require(shutil.which("cargo") is not None, "cargo")
    require((DEBIAN_CARGO_REGISTRY / "criterion-0.3.6").exists(), "Debian's librust-criterion-dev")
    target = session_dir / "cargo-target"
    session_env.setenv("CARGO_TARGET_DIR", str(target))
    return {"CARGO_TARGET_DIR": str(target)}


SHIPPED_CONFIG_TEXT = SHIPPED_CONFIG.read_text()


def config_text(**replacements: str) -> str:
    """The shipped rollback.toml with exact text replacements (each must match)."""
    text = SHIPPED_CONFIG_TEXT
    for old, new in replacements.items():
        assert old in text, f"not in rollback.toml: {old}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="session")
def production(session_dir: Path, session_env) -> dict[str, str]:
    """One "production" for the sample service of every test: its port, state and log file.

    deploy.sh (re)starts service/actor_system.py there; the session stops it at the end.
    """
    state = session_dir / "production"
    env = {"ACTOR_SERVICE_PORT": str(free_port()), "ACTOR_DEPLOY_STATE": str(state),
           "ACTOR_SERVICE_PYTHON": sys.executable}
    for name, value in env.items():
        session_env.setenv(name, value)
    yield {**env, "log": str(state / "actor-system.log"), "metrics": f"http://127.0.0.1:{env['ACTOR_SERVICE_PORT']}/metrics"}
    pid_file = state / "service.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 15)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def test_config(session_dir: Path, production: dict[str, str], session_env) -> Path:
    """rollback.toml for tests: the runbook's values, with a short watch over the session's service."""
    path = session_dir / "rollback.test.toml"
    path.write_text(config_text(**{
        'metrics_url = "http://127.0.0.1:19100/metrics"': f'metrics_url = "{production["metrics"]}"',
        "\nwindow_seconds = 300 ": "\nwindow_seconds = 2 ",
        "throughput_min = 0 ": "throughput_min = 900 ",
        'source = "kubernetes"           #': 'source = "file"           #',
        'file = ""                       #': f'file = "{production["log"]}"  #',
        "timeout_seconds = 3600          # no answer": "timeout_seconds = 5          # no answer",
        "rounds = 3 ": "rounds = 1 ",
        "budget_minutes = 15 ": "budget_minutes = 0.1 ",  # a few rounds, then unverifiable: tests keep their pace
        "\nenv = {}  ": '\nenv = { ACTOR_BENCH_QUICK = "200" }  ',
    }))
    session_env.setenv("ACTOR_ROLLBACK_TEST_CONFIG", str(path))
    return path


@pytest.fixture
def sample(tmp_path: Path, test_config) -> SampleWorkspace:
    return create_sample_workspace(tmp_path / "sample")


@pytest.fixture
def sample_in_production(sample: SampleWorkspace, production: dict[str, str]) -> SampleWorkspace:
    """The sample deployed to the session's production: its service answers /metrics and writes its log — what a
    plan's monitor and logs probes look at. With the flag off (a healthy service): the session's later tests read
    the same log, and a regressed one would fill it with error lines."""
    deployed = subprocess.run(["./scripts/deploy.sh", "production", "--version=v0.4.0", "--new-scheduler=off"],
                              cwd=sample.repo, capture_output=True, text=True, timeout=60)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    wait_http(production["metrics"])
    return sample


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


def wait_http(url: str, timeout: float = 30, ok=lambda r: r.status_code == 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="session")
def prometheus(session_dir: Path, production: dict[str, str]) -> str:
    """A real Prometheus on loopback scraping the session's sample service every second."""
    binary = shutil.which("prometheus")
    require(binary is not None, "Prometheus (Debian package prometheus)")
    home = session_dir / "prometheus"
    home.mkdir()
    (home / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: actor-system\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{production['ACTOR_SERVICE_PORT']}']\n")
    port = free_port()
    log = open(home / "prometheus.log", "w")
    server = subprocess.Popen([binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/-/ready")
    yield url
    server.terminate()
    server.wait(timeout=20)
    log.close()
