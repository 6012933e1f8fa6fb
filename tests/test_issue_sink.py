"""F.4's HTTP sink against a real HTTP server on loopback: what each answer of the tracker makes of the step."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers import HttpSink, config, context

from actor_rollback.runbook.errors import StepError, TransientError
from actor_rollback.runbook.model import Incident
from actor_rollback.tasks.issues import _post_issue

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote

INCIDENT = Incident(id="inc-f4-sink", phase="1", kind="docs", summary="docs drift")


def post_to(url: str, tmp_path: Path):
    ctx = context(tmp_path, step_id="F.4", cfg=config(**{"triage.issue_sink": "http", "triage.issue_url": url}))
    return _post_issue(ctx, INCIDENT, "# docs drift\n\nbody")


def test_f4_a_created_issue_is_done_with_the_trackers_answer_and_the_incident_as_idempotency_key(tmp_path):
    tracker = HttpSink(status=201)
    try:
        result = post_to(tracker.url, tmp_path)
    finally:
        tracker.server.shutdown()
    assert result.status == "done" and result.evidence == [f"POST {tracker.url}: {{}}"]
    assert tracker.headers[0]["Idempotency-Key"] == "inc-f4-sink" and tracker.bodies[0]["title"] == "docs drift"


@pytest.mark.parametrize("status,error,said", [
    (503, TransientError, "answered 503"),  # retried by the task: the tracker may be back
    (403, StepError, "refused the issue: HTTP 403"),
    (302, StepError, "refused the issue: HTTP 302"),  # a redirect made no issue where it was asked for
])
def test_f4_a_tracker_that_does_not_create_the_issue_fails_the_step_saying_its_answer(tmp_path, status, error, said):
    tracker = HttpSink(status=status)
    try:
        with pytest.raises(error, match=said) as raised:
            post_to(tracker.url, tmp_path)
    finally:
        tracker.server.shutdown()
    assert type(raised.value) is error


def test_f4_an_unreachable_tracker_is_a_transient_fault_naming_its_url(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(TransientError, match=rf"127\.0\.0\.1:{port}/issues is unreachable \(ConnectError"):
        post_to(f"http://127.0.0.1:{port}/issues", tmp_path)
