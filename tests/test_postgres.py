"""The production setting: a Prefect server on a real PostgreSQL (loopback), concurrent rollbacks of
different sample workspaces in parallel, and the per-target limit still holding under them."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, require, start_prefect_server, stop_process_group
from helpers import bench_module, config_variant, run_git

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    services = bench_module("_services")  # the benches' PostgreSQL helper, by its file: bench/ is no package
    pg_binary, start_postgres = services.pg_binary, services.postgres

    require(all(pg_binary(name) for name in ("initdb", "pg_ctl", "createdb")),
            "PostgreSQL (Debian package postgresql: initdb, pg_ctl)")
    with start_postgres() as url:
        yield url, int(url.rsplit(":", 1)[1].split("/")[0])
        for state in glob.glob(str(tmp_path_factory.getbasetemp() / "**" / "production" / "service.pid"), recursive=True):
            subprocess.run(["kill", Path(state).read_text().strip()], capture_output=True)


@pytest.fixture(scope="module")
def pg_prefect(postgres, tmp_path_factory):
    """A second Prefect server, on PostgreSQL."""
    home = tmp_path_factory.mktemp("pg-prefect-home")
    server, api = start_prefect_server(home, home / "server.log", PREFECT_SERVER_DATABASE_CONNECTION_URL=postgres[0])
    yield api
    stop_process_group(server)


def start(api: str, repo: Path, incident: str, config: Path) -> subprocess.Popen:
    """A Phase 1 rollback through the CLI; each target deploys to its own "production" (port, state)."""
    production = {"ACTOR_SERVICE_PORT": str(free_port()), "ACTOR_DEPLOY_STATE": str(repo.parent / "production")}
    return subprocess.Popen([CLI, "run", "1", "--repo", str(repo), "--reason", "throughput -12 % (pg)", "--incident",
                             incident, "--skip", "ci,monitor,logs,benchmarks", "--config", str(config), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PREFECT_API_URL": api, **production})


def test_concurrent_rollbacks_of_different_targets_on_a_postgres_backed_server_with_the_per_target_limit(
        pg_prefect, postgres, tmp_path, test_config):
    from actor_rollback.deployments.sample import create_sample_workspace

    samples = [create_sample_workspace(tmp_path / f"sample{n}") for n in range(3)]
    # a deploy that takes a few seconds keeps each run on its target while the twin arrives
    config = config_variant(tmp_path, **{'command = "./scripts/deploy.sh production --version={version}"':
                                         "command = \"bash -c 'sleep 3 && ./scripts/deploy.sh production --version={version}'\""})
    started = time.monotonic()
    runs = [start(pg_prefect, s.repo, f"pg-{n}", config) for n, s in enumerate(samples)]
    # a second rollback of the first target at the same time: the target's limit makes it wait
    twin = start(pg_prefect, samples[0].repo, "pg-0-twin", config)
    results = [(p.wait(timeout=300), p.communicate()) for p in [*runs, twin]]
    seconds = time.monotonic() - started
    for code, (out, err) in results[:3]:
        # 3: checks unverified (the watch and the benchmarks skipped on request)
        assert code in (0, 3), [(s["name"], s["status"], s["evidence"][:2]) for s in json.loads(out)["steps"]] if out else err
    for sample in samples:  # every target's phase 1 merge reverted on its remote, exactly once
        subjects = run_git(sample.origin, "log", "--format=%s", "main").splitlines()
        assert sum(s.startswith('Revert "Merge pull request #12') for s in subjects) == 1, subjects[:5]
    pair = [results[0], results[3]]  # the two rollbacks of the first target
    for code, (out, err) in pair:
        assert out, f"exit {code} without a report: {err[-1200:]}"
    reverts = sorted(next(x["status"] for x in json.loads(out)["steps"] if x["name"] == "revert") for _, (out, _) in pair)
    assert reverts == ["already-done", "done"], pair  # one did it, the other found it done
    assert all(code in (0, 3) for code, _ in pair)
    assert any("waiting for the rollback already running on this target" in err for _, (_, err) in pair)
    flow_runs = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(postgres[1]), "-U", "prefect", "-d", "prefect",
                                "-tAc", "select count(*) from flow_run where name like 'rollback-phase-1-pg-%'"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert flow_runs == "4"  # the runs live in PostgreSQL
    assert seconds < 240
