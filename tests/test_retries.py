"""Retries with backoff for transient faults (the remote unreachable), none for fatal ones (a conflict)."""

from __future__ import annotations

import logging

import pytest
from helpers import commit_change, run_git

from actor_rollback.deployments.cli import run_phase_flow

pytestmark = pytest.mark.prefect


def task_runs(flow_run_id: str) -> dict[str, int]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run.run_count for run in runs}


class RemoteComesBack:
    """Puts the moved remote back the moment Prefect announces the first retry, so the fault is met for sure
    whatever the time the run takes to start (a timer raced a slow start on CI). It watches log records as they
    are made: Prefect reconfigures its loggers' handlers when a run starts, the record factory it leaves alone."""

    def __init__(self, moved, origin):
        self.moved, self.origin, self.retries_seen = moved, origin, []
        self.factory = logging.getLogRecordFactory()

    def __enter__(self):
        def watching(*args, **kwargs):
            record = self.factory(*args, **kwargs)
            if record.name == "prefect.task_runs" and "Retry 1/" in record.getMessage():
                self.retries_seen.append(record.getMessage())
                self.restore()
            return record

        logging.setLogRecordFactory(watching)
        return self

    def __exit__(self, *exc):
        logging.setLogRecordFactory(self.factory)
        self.restore()

    def restore(self) -> None:
        if self.moved.exists() and not self.origin.exists():
            self.moved.rename(self.origin)


def test_p1_2b_push_is_retried_while_the_remote_is_unreachable(sample, test_config, prefect_server):
    moved = sample.origin.with_name("origin-away.git")
    sample.origin.rename(moved)
    with RemoteComesBack(moved, sample.origin) as comes_back:
        report = run_phase_flow("1", sample.repo, "flaky network", "inc-retry", False, ["flag", "push"], [], "",
                                test_config, "test")
    assert comes_back.retries_seen, "Prefect announced no retry while the remote was away"
    status = {s.name: s.status for s in report.steps if s.status != "skipped"}
    assert status == {"flag": "done", "push": "done"}, report.steps
    runs = task_runs(report.flow_run_id)
    assert runs["P1.1 disable_feature_flag"] >= 2, "the flag step met the unreachable remote and was retried"
    assert "remove new-scheduler" in run_git(sample.origin, "log", "-1", "--format=%s", "main")


def test_p1_2b_a_conflict_is_not_retried(sample, test_config, prefect_server):
    mod = "modules/actor-core/src/scheduler/mod.rs"
    text = (sample.repo / mod).read_text().replace("pub type ActiveScheduler = ReadyQueueCoordinator;",
                                                   "pub type ActiveScheduler = ReadyQueueCoordinator; // tuned")
    commit_change(sample.repo, mod, text, "tune", push=True)
    report = run_phase_flow("1", sample.repo, "x", "inc-conflict", False, ["find-merge", "revert"], [], "", test_config,
                            "test")
    revert = next(s for s in report.steps if s.name == "revert")
    assert revert.status == "failed" and mod in revert.evidence[0]
    assert task_runs(report.flow_run_id)["P1.2b revert_merge"] == 1
    assert report.exit_code == 1
