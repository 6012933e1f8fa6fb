"""P2A.3, P2B.2/3, P3.1, P3.3, P0.1, P4.3 and the commit-status CI check, on real repositories."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml as pyyaml
from helpers import config, context, refs, run_git

from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.tasks.ci_workflow import disable_no_std_ci
from actor_rollback.tasks.commands import build_pinned_to_tokio, check_ci
from actor_rollback.tasks.config_files import check_phase_code, restore_scheduler_config
from actor_rollback.tasks.context import Approval
from actor_rollback.tasks.git_refs import archive_branch, reset_to_phase_0_baseline
from actor_rollback.tasks.git_repo import find_phase_merge, revert_merge
from actor_rollback.deployments.sample import POC_BRANCH

SCHEDULER_TOML = "config/actor_system.toml"
CI_FILE = ".github/workflows/ci.yml"


def changed_lines(repo) -> list[str]:
    diff = run_git(repo, "show", "--format=", "--unified=0", "HEAD")
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


# ---------------------------------------------------------------- P2A.3


def test_p2a_3_restores_the_scheduler_settings_touching_only_their_lines(sample):
    result = restore_scheduler_config(context(sample.repo, "2A", "P2A.3"))
    assert result.status == "done"
    assert changed_lines(sample.repo) == [
        '-type = "worker-executor"  # ready-queue-scheduler | ready-queue-coordinator | worker-executor',
        "-worker_count = 8",
        "-throughput = 64   # messages per actor turn",
        '+type = "ready-queue-coordinator"  # ready-queue-scheduler | ready-queue-coordinator | worker-executor',
        "+worker_count = 4",
        "+throughput = 32   # messages per actor turn",
    ]
    assert "worker_count: 8 → 4" in " ".join(result.evidence)
    again = restore_scheduler_config(context(sample.repo, "2A", "P2A.3"))
    assert again.status == "already-done"


def test_p2a_3_resumes_an_edit_a_killed_run_left_uncommitted(sample):
    restore_scheduler_config(context(sample.repo, "2A", "P2A.3"))
    edited = (sample.repo / SCHEDULER_TOML).read_text()
    run_git(sample.repo, "reset", "-q", "--mixed", "HEAD~1")  # as if killed between write and commit
    assert (sample.repo / SCHEDULER_TOML).read_text() == edited
    result = restore_scheduler_config(context(sample.repo, "2A", "P2A.3"))
    assert result.status == "done"
    assert run_git(sample.repo, "status", "--porcelain") == ""
    assert run_git(sample.repo, "log", "--format=%s", "-2").count("restore [scheduler]") == 1


def test_p2a_3_a_different_uncommitted_edit_is_refused(sample):
    path = sample.repo / SCHEDULER_TOML
    path.write_text(path.read_text().replace("worker_count = 8", "worker_count = 12"))
    before = (path.read_text(), refs(sample.repo))
    with pytest.raises(BadInputError, match="uncommitted changes in config/actor_system.toml"):
        restore_scheduler_config(context(sample.repo, "2A", "P2A.3"))
    assert (path.read_text(), refs(sample.repo)) == before


# ---------------------------------------------------------------- P2B.2 / P2B.3


def test_p2b_code_checks_fail_before_the_revert_and_pass_after(sample):
    with pytest.raises(StepError, match="STILL PRESENT.*MiddlewareChain"):
        check_phase_code(context(sample.repo, "2B", "P2B.3"))
    merge = find_phase_merge(context(sample.repo, "2B", "P2B.2")).data["merge"]
    revert_merge(context(sample.repo, "2B", "P2B.2", facts={"merge": merge}))
    result = check_phase_code(context(sample.repo, "2B", "P2B.3"))
    assert result.data == {"present": "pass", "absent": "pass"}
    assert any("actor_cell.rs" in line and "fn invoke_message" in line for line in result.evidence)


# ---------------------------------------------------------------- P3.3


def test_p3_3_disables_the_no_std_job_keeping_yaml_comments_and_the_job_graph(sample):
    result = disable_no_std_ci(context(sample.repo, "3", "P3.3", incident="inc-3"))
    assert result.status == "done"
    assert changed_lines(sample.repo) == [
        "+    if: ${{ false }}  # disabled by actor-rollback P3.3 (inc-3)",
        "-    needs: [test, no-std]",
        "+    # needs: no-std removed by actor-rollback P3.3 (inc-3)",
        "+    needs: [test]",
    ]
    text = (sample.repo / CI_FILE).read_text()
    assert "# Embedded targets build without std (Phase 3)." in text
    workflow = pyyaml.safe_load(text)
    assert workflow["jobs"]["no-std"]["if"] == "${{ false }}"
    assert all(need in workflow["jobs"] for job in workflow["jobs"].values() for need in job.get("needs", []))
    assert any("job no-std: disabled" in line for line in result.evidence)
    assert disable_no_std_ci(context(sample.repo, "3", "P3.3", incident="inc-3")).status == "already-done"


def test_p3_3_a_mixed_job_gets_only_its_target_step_disabled(sample):
    path = sample.repo / CI_FILE
    text = path.read_text().replace(
        "      - name: Benches compile\n        run: cargo bench --no-run\n",
        "      - name: Benches compile\n        run: cargo bench --no-run\n"
        "      - name: Embedded check\n        run: cargo check --target thumbv7em-none-eabihf\n")
    path.write_text(text)
    run_git(sample.repo, "commit", "-qam", "embedded check in test job")
    run_git(sample.repo, "push", "-q", "origin", "main")
    result = disable_no_std_ci(context(sample.repo, "3", "P3.3"))
    workflow = pyyaml.safe_load(path.read_text())
    test_steps = workflow["jobs"]["test"]["steps"]
    assert test_steps[-1]["if"] == "${{ false }}" and "if" not in test_steps[1]
    assert "if" not in workflow["jobs"]["test"]
    assert any("step 4 (Embedded check): disabled" in line for line in result.evidence)


def test_p3_3_invalid_yaml_is_refused_untouched(sample):
    path = sample.repo / CI_FILE
    path.write_text("jobs: [unclosed\n")
    run_git(sample.repo, "commit", "-qam", "broken ci")
    before = refs(sample.repo)
    with pytest.raises(BadInputError, match="is not valid YAML"):
        disable_no_std_ci(context(sample.repo, "3", "P3.3"))
    assert refs(sample.repo) == before and path.read_text() == "jobs: [unclosed\n"


@pytest.mark.cargo
def test_p3_1_tokio_pinned_build_runs(sample, cargo_env):
    result = build_pinned_to_tokio(context(sample.repo, "3", "P3.1"))
    assert result.status == "done"
    assert result.evidence[0].startswith("$ cargo build --features std,runtime-tokio --no-default-features")


# ---------------------------------------------------------------- P0.1


def test_p0_1_archives_the_poc_branch_and_keeps_its_commits(sample):
    tip = run_git(sample.origin, "rev-parse", POC_BRANCH)
    result = archive_branch(context(sample.repo, "0", "P0.1"))
    assert result.status == "done"
    assert run_git(sample.origin, "rev-parse", f"archive/{POC_BRANCH}^{{commit}}") == tip
    assert POC_BRANCH not in run_git(sample.origin, "branch", "--format=%(refname:short)").split()
    assert run_git(sample.origin, "cat-file", "-t", tip) == "commit"
    assert archive_branch(context(sample.repo, "0", "P0.1")).status == "already-done"


def test_p0_1_unknown_branch_is_a_clear_error(sample):
    cfg = config(**{"phases.0.branch": "feature/nope"})
    with pytest.raises(BadInputError, match="exists neither here nor on origin"):
        archive_branch(context(sample.repo, "0", "P0.1", cfg=cfg))


# ---------------------------------------------------------------- P4.3


def test_p4_3_without_approval_changes_nothing(sample):
    before = (refs(sample.repo), refs(sample.origin))
    result = reset_to_phase_0_baseline(context(sample.repo, "4", "P4.3"))
    assert result.status == "needs-human"
    assert any("--force-with-lease" in line for line in result.evidence)
    assert (refs(sample.repo), refs(sample.origin)) == before


def test_p4_3_wrong_branch_typed_back_is_refused(sample):
    before = (refs(sample.repo), refs(sample.origin))
    with pytest.raises(BadInputError, match="type the branch name 'main' back"):
        reset_to_phase_0_baseline(context(sample.repo, "4", "P4.3"), Approval("sre", "mian"))
    assert (refs(sample.repo), refs(sample.origin)) == before


def test_p4_3_approved_reset_pushes_backup_first_and_uses_the_lease(sample):
    old_head = run_git(sample.origin, "rev-parse", "main")
    baseline = run_git(sample.repo, "log", "--format=%H", "--grep=Phase 0 start", "main")
    result = reset_to_phase_0_baseline(context(sample.repo, "4", "P4.3", incident="inc-9"),
                                       Approval("aiko (SRE)", "main", "team notified"))
    assert result.status == "done"
    assert run_git(sample.origin, "rev-parse", "main") == baseline
    assert run_git(sample.origin, "rev-parse", "refs/backup/inc-9") == old_head
    assert run_git(sample.origin, "rev-parse", "phase-0-baseline") == baseline
    again = reset_to_phase_0_baseline(context(sample.repo, "4", "P4.3"), Approval("x", "main"))
    assert again.status == "already-done"


def test_p4_3_no_phase_0_start_commit_is_a_clear_error(sample):
    cfg = config(**{"phases.4.baseline_commit_pattern": "Phase -1 start"})
    with pytest.raises(BadInputError, match='no commit on origin/main contains "Phase -1 start"'):
        reset_to_phase_0_baseline(context(sample.repo, "4", "P4.3", cfg=cfg), Approval("x", "main"))


# ---------------------------------------------------------------- P1.2c, commit-status API


class _StatusServer:
    """A GitHub-style commit-status endpoint on loopback that answers a scripted sequence."""

    def __init__(self, answers: list[tuple[int, dict]]) -> None:
        self.answers, self.requests = list(answers), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                code, body = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                payload = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/repos/acme/actor/commits/{{sha}}/status"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def status_server():
    servers = []

    def start(answers):
        servers.append(_StatusServer(answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def ci_ctx(sample, url, **kw):
    cfg = config(**{"ci.check": "commit-status", "ci.status_url": url, "ci.timeout_seconds": 20,
                    "ci.poll_seconds": 0.05})
    return context(sample.repo, step_id="P1.2c", cfg=cfg, facts={"pushed": "abc123"}, **kw)


def test_p1_2c_waits_through_pending_and_a_5xx_until_success(sample, status_server, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "s3cret")
    server = status_server([(200, {"state": "pending", "statuses": [{"context": "ci/test", "state": "pending"}]}),
                            (503, {}),
                            (200, {"state": "success", "statuses": [{"context": "ci/test", "state": "success"}]})])
    result = check_ci(ci_ctx(sample, server.url))
    assert result.status == "done" and result.data["ci_state"] == "success"
    assert server.requests[0] == ("/repos/acme/actor/commits/abc123/status", "Bearer s3cret")
    assert len(server.requests) == 3
    assert not any("s3cret" in line for line in result.evidence)


def test_p1_2c_failure_state_fails_the_step(sample, status_server):
    server = status_server([(200, {"state": "failure", "statuses": [{"context": "ci/test", "state": "failure"}]})])
    with pytest.raises(StepError, match="CI is failure for abc123"):
        check_ci(ci_ctx(sample, server.url))


def test_p1_2c_unauthorised_is_bad_input_naming_the_token(sample, status_server):
    server = status_server([(401, {"message": "Bad credentials"})])
    with pytest.raises(BadInputError, match=r"answered 401.*\$GITHUB_TOKEN"):
        check_ci(ci_ctx(sample, server.url))
