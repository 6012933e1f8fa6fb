"""The git side never damages work: no file written over, no unreviewed commit pushed, no half-changed
index after a failed commit, no id that forges trailers, no secret handed to a command or kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from git import GitCommandError
from helpers import commit_change, config, context, refs, run_git

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.runbook.ids import IncidentIdError, check_incident_id
from actor_rollback.tasks.cargo_manifest import disable_feature_flag
from actor_rollback.tasks.commands import check_ci
from actor_rollback.tasks.git_repo import find_phase_merge, publish_new_files, push_rollback, revert_merge
from actor_rollback.tasks.registry import execute_step, step_function
from actor_rollback.runbook.phases import phase_steps

CLI = str(Path(sys.executable).parent / "actor-rollback")
ISSUE = "docs/issues/inc-test.md"


def test_a_hand_written_uncommitted_file_at_the_drafts_path_is_never_overwritten(sample):
    mine = "# Our own notes, not committed yet\n"
    (sample.repo / ISSUE).parent.mkdir(parents=True, exist_ok=True)
    (sample.repo / ISSUE).write_text(mine)
    before = refs(sample.repo)
    with pytest.raises(BadInputError, match=r"docs/issues/inc-test.md already exist\(s\), uncommitted and not written"):
        publish_new_files(context(sample.repo, step_id="F.4"), {ISSUE: "# Issue\n"}, "register issue")
    assert (sample.repo / ISSUE).read_text() == mine and refs(sample.repo) == before


def test_a_file_an_interrupted_run_wrote_with_the_same_text_is_committed_on_the_rerun(sample):
    (sample.repo / ISSUE).parent.mkdir(parents=True, exist_ok=True)
    (sample.repo / ISSUE).write_text("# Issue\n")
    result = publish_new_files(context(sample.repo, step_id="F.4"), {ISSUE: "# Issue\n"}, "register issue")
    assert result.status == "done" and run_git(sample.repo, "log", "-1", "--format=%s").endswith("register issue")


def commit_all(repo: Path, message: str) -> None:
    run_git(repo, "add", "-A")
    run_git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", message)
    run_git(repo, "push", "-q", "origin", "main")


@pytest.mark.parametrize("link", ["file", "folder"])
def test_f4_a_committed_link_at_the_issue_path_is_refused_nothing_written_outside_nothing_pushed(sample, tmp_path,
                                                                                              link):
    outside = tmp_path / "outside"  # dangling: nothing there yet
    if link == "file":
        (sample.repo / "docs" / "issues").mkdir(parents=True, exist_ok=True)
        (sample.repo / ISSUE).symlink_to(outside / "inc-test.md")
    else:
        (sample.repo / "docs").mkdir(exist_ok=True)
        (sample.repo / "docs" / "issues").symlink_to(outside)
    commit_all(sample.repo, "docs: a link someone committed")
    before = refs(sample.repo)
    with pytest.raises(BadInputError, match=r"docs/issues(/inc-test.md)? in .* is a symbolic link"):
        publish_new_files(context(sample.repo, step_id="F.4"), {ISSUE: "# Issue\n"}, "register issue")
    assert not outside.exists(), "nothing was written through the link"
    assert refs(sample.repo) == before


def test_p1_1_a_manifest_that_is_a_link_is_refused_and_its_target_left_as_it_was(sample, tmp_path):
    manifest = sample.repo / "modules/actor-core/Cargo.toml"
    elsewhere = tmp_path / "shared-Cargo.toml"
    elsewhere.write_text(manifest.read_text())
    manifest.unlink()
    manifest.symlink_to(elsewhere)
    commit_all(sample.repo, "build: share the manifest")
    text, before = elsewhere.read_text(), refs(sample.repo)
    with pytest.raises(BadInputError, match=r"modules/actor-core/Cargo.toml in .* is a symbolic link"):
        disable_feature_flag(context(sample.repo, step_id="P1.1"))
    assert elsewhere.read_text() == text and refs(sample.repo) == before


def test_a_commit_that_only_mentions_the_trailer_is_never_pushed_as_a_rollback_commit(sample):
    commit_change(sample.repo, "NOTES.md", "wip\n", "wip: notes\n\nsee Rollback-Incident: inc-test for context\n\n"
                  "more to do")
    before = refs(sample.origin)
    with pytest.raises(BadInputError, match="not this incident's rollback commits"):
        push_rollback(context(sample.repo, step_id="P1.2b"))
    assert refs(sample.origin) == before


def test_a_trailer_from_another_author_or_incident_is_not_a_rollback_commit(sample):
    commit_change(sample.repo, "NOTES.md", "x\n", "looks official\n\nRollback-Incident: inc-test\nRunbook-Step: P4.3")
    with pytest.raises(BadInputError, match="not this incident's rollback commits"):
        push_rollback(context(sample.repo, step_id="P1.2b"))
    run_git(sample.repo, "reset", "--hard", "-q", "HEAD~1")
    assert disable_feature_flag(context(sample.repo, step_id="P1.1", incident="inc-other")).status == "done"
    with pytest.raises(BadInputError, match="not this incident's rollback commits"):
        push_rollback(context(sample.repo, step_id="P1.2b"))  # inc-other's commit is not inc-test's to publish
    assert push_rollback(context(sample.repo, step_id="P1.2b", incident="inc-other")).status == "done"


def test_another_incidents_unpushed_rollback_commit_is_never_pushed_under_this_one(sample):
    """A crashed run's commit stays its incident's (its own work tree keeps it, tests/test_run_work_trees.py); a
    push of another incident never publishes it, of this phase or another."""
    assert disable_feature_flag(context(sample.repo, step_id="P1.1", incident="inc-lost")).status == "done"
    before = refs(sample.origin)
    with pytest.raises(BadInputError, match="not this incident's rollback commits"):
        push_rollback(context(sample.repo, step_id="P1.2b"))
    assert refs(sample.origin) == before


@pytest.fixture
def signing_fails(sample):
    run_git(sample.repo, "config", "commit.gpgsign", "true")
    run_git(sample.repo, "config", "gpg.program", "false")  # every commit fails, as with a broken signing setup
    return sample


def test_a_failed_flag_commit_leaves_the_tree_and_the_index_as_they_were(signing_fails):
    repo = signing_fails.repo
    before = (refs(repo), (repo / "modules/actor-core/Cargo.toml").read_text())
    result = execute_step(phase_steps("1")[0], context(repo, step_id="P1.1"), step_function("flag"))
    assert result.status == "failed"
    assert run_git(repo, "status", "--porcelain") == "", "nothing staged, nothing modified"
    assert (refs(repo), (repo / "modules/actor-core/Cargo.toml").read_text()) == before


def test_a_failed_revert_commit_leaves_no_revert_head_and_no_staged_change(signing_fails):
    repo = signing_fails.repo
    merge = find_phase_merge(context(repo, step_id="P1.2a")).data["merge"]
    head = run_git(repo, "rev-parse", "HEAD")
    with pytest.raises(GitCommandError):  # the signing hook refused the commit
        revert_merge(context(repo, step_id="P1.2b", facts={"merge": merge}))
    assert run_git(repo, "status", "--porcelain") == "" and not (repo / ".git" / "REVERT_HEAD").exists()
    assert run_git(repo, "rev-parse", "HEAD") == head


def test_a_failed_issue_commit_removes_the_file_it_created_and_unstages_it(signing_fails):
    repo = signing_fails.repo
    with pytest.raises(GitCommandError):
        publish_new_files(context(repo, step_id="F.4"), {ISSUE: "# Issue\n"}, "register issue")
    assert not (repo / ISSUE).exists() and run_git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("bad", ["a..b", "x.lock", "@{0}", "x:y", "two words", "x" * 300,
                                 "inc-1\nRunbook-Step: P4.3\nApproved-By: mallory", "../x", "-rf", ""])
def test_every_malformed_incident_id_is_refused_with_the_rule(bad):
    with pytest.raises(IncidentIdError):
        check_incident_id(bad)


@pytest.mark.parametrize("bad", ["a..b", "inc-1\nRunbook-Step: P4.3", "x" * 300])
def test_run_refuses_a_malformed_incident_id_before_anything_changes(sample, bad):
    before = refs(sample.repo), refs(sample.origin)
    run = subprocess.run([CLI, "run", "1", "--repo", str(sample.repo), "--reason", "x", "--incident", bad, "--json"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert run.returncode == 2 and "incident id" in json.loads(run.stdout)["error"]
    assert (refs(sample.repo), refs(sample.origin)) == before


def test_triage_with_a_path_as_incident_id_is_exit_2_not_a_traceback():
    run = subprocess.run([CLI, "triage", "--incident", "../x", "--kind", "crash", "--phase", "1", "--dry-run"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "incident id" in run.stderr


def test_the_receivers_secrets_never_reach_a_command_and_known_values_are_redacted(sample, monkeypatch):
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", "receiver-secret-value-1")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_value_2")
    cfg = config(**{"ci.command": "sh -c 'env; echo leaked ghp_secret_value_2'"})
    result = check_ci(context(sample.repo, step_id="P1.2c", cfg=cfg))
    text = "\n".join(result.evidence)
    assert "receiver-secret-value-1" not in text and "ghp_secret_value_2" not in text
    assert "ACTOR_ROLLBACK_RECEIVER_TOKEN" not in text and "GITHUB_TOKEN=" not in text
    assert "leaked [redacted]" in text


def test_secrets_from_files_and_prefect_auth_never_reach_a_command_nor_its_parents_environment(sample, monkeypatch,
                                                                                               tmp_path):
    """The documented default (OPERATIONS, Secrets): NAME_FILE; a command sees neither the value nor the file's path,
    in its own environment or its supervisor's (/proc/$PPID/environ), and no Prefect setting at all."""
    token = tmp_path / "receiver-token"
    token.write_text("receiver-secret-from-a-file-3\n")
    monkeypatch.setenv("ACTOR_ROLLBACK_RECEIVER_TOKEN_FILE", str(token))
    monkeypatch.delenv("ACTOR_ROLLBACK_RECEIVER_TOKEN", raising=False)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:prefect-auth-secret-4")
    dump = tmp_path / "environment"
    cfg = config(**{"ci.command": f"sh -c 'env > {dump}; cat /proc/$PPID/environ | tr \"\\\\0\" \"\\\\n\" >> {dump}'"})
    result = check_ci(context(sample.repo, step_id="P1.2c", cfg=cfg))
    assert result.status == "done", result.evidence
    seen = dump.read_text()
    assert "PATH=" in seen  # the dump is real
    for hidden in ("receiver-secret-from-a-file-3", str(token), "prefect-auth-secret-4", "PREFECT_API_AUTH_STRING",
                   "PREFECT_API_URL", "ACTOR_ROLLBACK_RECEIVER_TOKEN"):
        assert hidden not in seen, hidden


def test_a_secret_in_evidence_is_redacted_in_its_base64_url_encoded_and_hex_forms(sample, monkeypatch, tmp_path):
    import base64
    import urllib.parse

    value = "ghp_Secret/Value+5"
    monkeypatch.setenv("GITHUB_TOKEN", value)
    leak = tmp_path / "leak.sh"  # what a deploy script might print: an auth header, a URL, a hex dump
    leak.write_text("#!/bin/sh\n"
                    f"echo 'Authorization: Basic {base64.b64encode(f'bot:{value}'.encode()).decode()}'\n"
                    f"echo 'Authorization: Bearer {base64.b64encode(value.encode()).decode()}'\n"
                    f"echo 'url: https://h/?token={urllib.parse.quote(value, safe='')}'\n"
                    f"echo 'form: token={urllib.parse.quote_plus(value)}'\n"
                    f"echo 'urlsafe: {base64.urlsafe_b64encode(value.encode()).decode().rstrip('=')}'\n"
                    f"echo 'hex: {value.encode().hex()}'\n")
    leak.chmod(0o755)
    result = check_ci(context(sample.repo, step_id="P1.2c", cfg=config(**{"ci.command": str(leak)})))
    text = "\n".join(result.evidence)
    assert text.count("[redacted]") >= 6, text
    for form in (value, base64.b64encode(value.encode()).decode()[:-4], urllib.parse.quote(value, safe=""),
                 urllib.parse.quote_plus(value), value.encode().hex(), "Z2hwX1NlY3JldC9WYWx1ZSs1"[4:20]):
        assert form not in text, (form, text)
