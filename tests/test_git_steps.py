"""P1.2a / P1.2b on real repositories with a bare remote: find, revert, push — and every bad input."""

from __future__ import annotations

import pytest
from helpers import commit_change, config, context, other_clone, refs, run_git

from actor_rollback.runbook.errors import BadInputError, ConflictError, StepError
from actor_rollback.tasks.git_repo import find_phase_merge, push_rollback, revert_merge


def merge_of(sample, phase="1") -> str:
    return find_phase_merge(context(sample.repo, phase, step_id="P1.2a")).data["merge"]


def snapshot(sample) -> tuple[str, str, str, str]:
    return (run_git(sample.repo, "status", "--porcelain"), refs(sample.repo), refs(sample.origin),
            run_git(sample.repo, "rev-parse", "HEAD"))


def test_p1_2a_finds_the_single_phase_merge(sample):
    result = find_phase_merge(context(sample.repo, step_id="P1.2a"))
    assert result.status == "done"
    subject = run_git(sample.repo, "log", "-1", "--format=%B", result.data["merge"])
    assert "Phase 1: integrate ReadyQueueCoordinator" in subject
    assert len(run_git(sample.repo, "rev-list", "--parents", "-n1", result.data["merge"]).split()) == 3


def test_p1_2a_several_merges_are_an_error_listing_candidates(sample):
    run_git(sample.repo, "checkout", "-q", "-b", "hotfix")
    commit_change(sample.repo, "notes.txt", "x\n", "hotfix")
    run_git(sample.repo, "checkout", "-q", "main")
    run_git(sample.repo, "-c", "user.name=Dev", "-c", "user.email=d@e", "merge", "-q", "--no-ff", "-m",
            "Merge hotfix: ReadyQueueCoordinator wakeups", "hotfix")
    run_git(sample.repo, "push", "-q", "origin", "main")
    with pytest.raises(BadInputError) as error:
        find_phase_merge(context(sample.repo, step_id="P1.2a"))
    message = str(error.value)
    assert "2 merge commits" in message and "--merge SHA" in message
    assert "Merge hotfix: ReadyQueueCoordinator wakeups" in message and "Merge pull request #12" in message


def test_p1_2a_no_merge_lists_the_nearest_non_merge_matches(sample):
    cfg = config(**{"phases.1.merge_patterns": ["feature matrix"]})
    with pytest.raises(BadInputError) as error:
        find_phase_merge(context(sample.repo, step_id="P1.2a", cfg=cfg))
    assert "no merge commit" in str(error.value)
    assert "test: document ReadyQueueCoordinator feature matrix" in str(error.value)


def test_p1_2a_merge_override_must_be_a_merge_on_the_main_history(sample):
    plain = run_git(sample.repo, "rev-parse", "HEAD")
    with pytest.raises(BadInputError, match="is not a merge commit"):
        find_phase_merge(context(sample.repo, step_id="P1.2a", merge_override=plain))
    with pytest.raises(BadInputError, match="no such commit"):
        find_phase_merge(context(sample.repo, step_id="P1.2a", merge_override="deadbeef"))
    chosen = merge_of(sample, "2A")
    result = find_phase_merge(context(sample.repo, step_id="P1.2a", merge_override=chosen[:8]))
    assert result.data["merge"] == chosen


def test_p1_2b_revert_is_not_repeated(sample):
    merge = merge_of(sample)
    first = revert_merge(context(sample.repo, facts={"merge": merge}))
    assert first.status == "done"
    body = run_git(sample.repo, "log", "-1", "--format=%B")
    assert f"This reverts commit {merge}" in body and "Rollback-Incident: inc-test" in body
    assert not (sample.repo / "modules/actor-core/src/scheduler/ready_queue_coordinator.rs").exists()
    push_rollback(context(sample.repo))  # published: another incident's run finds the revert in the history
    second = revert_merge(context(sample.repo, facts={"merge": merge}, incident="inc-other"))
    assert second.status == "already-done" and second.data["revert"] == first.data["revert"]
    assert run_git(sample.repo, "rev-parse", "HEAD") == first.data["revert"]


def test_p1_2b_revert_of_a_reapplied_phase_is_done_again(sample):
    merge = merge_of(sample)
    revert = revert_merge(context(sample.repo, facts={"merge": merge})).data["revert"]
    run_git(sample.repo, "-c", "user.name=Dev", "-c", "user.email=d@e", "revert", "--no-edit", revert)
    run_git(sample.repo, "push", "-q", "origin", "main")  # the phase was reintroduced on the remote
    again = revert_merge(context(sample.repo, facts={"merge": merge}, incident="inc-2"))
    assert again.status == "done" and again.data["revert"] != revert


def test_p1_2b_conflict_aborts_and_leaves_the_tree_exactly_as_before(sample):
    mod = "modules/actor-core/src/scheduler/mod.rs"
    text = (sample.repo / mod).read_text().replace("pub type ActiveScheduler = ReadyQueueCoordinator;",
                                                   "pub type ActiveScheduler = ReadyQueueCoordinator; // tuned")
    later = commit_change(sample.repo, mod, text, "tune the coordinator selection", push=True)
    before = snapshot(sample)
    with pytest.raises(ConflictError) as error:
        revert_merge(context(sample.repo, facts={"merge": merge_of(sample)}))
    assert mod in str(error.value) and "restored" in str(error.value)
    # which later commit changed those lines: what the person resolving it reads first
    assert f"last changed after the merge by commit {later[:7]}" in str(error.value), str(error.value)
    assert "tune the coordinator selection" in str(error.value)
    assert snapshot(sample) == before
    assert not (sample.repo / ".git/REVERT_HEAD").exists()


def test_dirty_work_tree_is_refused_and_left_untouched(sample):
    readme = sample.repo / "README.md"
    readme.write_text(readme.read_text() + "local edit\n")
    before = snapshot(sample)
    with pytest.raises(BadInputError, match=r"uncommitted changes in README.md.*git stash"):
        revert_merge(context(sample.repo, facts={"merge": merge_of(sample)}))
    assert snapshot(sample) == before and readme.read_text().endswith("local edit\n")


def test_detached_head_is_refused(sample):
    run_git(sample.repo, "checkout", "-q", "--detach", "HEAD~1")
    before = snapshot(sample)
    with pytest.raises(BadInputError, match="HEAD is detached; check out main"):
        revert_merge(context(sample.repo, facts={"merge": merge_of(sample)}))
    assert snapshot(sample) == before


def test_local_commits_that_are_not_rollbacks_are_never_pushed(sample):
    commit_change(sample.repo, "wip.txt", "wip\n", "WIP: local experiment")
    before = snapshot(sample)
    with pytest.raises(BadInputError, match="not this incident.s rollback commits"):
        push_rollback(context(sample.repo))
    assert snapshot(sample) == before


def test_p1_2b_push_replays_the_revert_when_the_remote_moved(sample, tmp_path):
    revert = revert_merge(context(sample.repo, facts={"merge": merge_of(sample)}))
    teammate = other_clone(sample.origin, tmp_path / "teammate")
    theirs = commit_change(teammate, "CHANGELOG.md", "# Changelog\n\n- hotfix\n", "hotfix meanwhile", push=True)
    pushed = push_rollback(context(sample.repo))
    assert pushed.status == "done"
    remote_head = run_git(sample.origin, "rev-parse", "main")
    assert remote_head == pushed.data["pushed"]
    assert run_git(sample.origin, "merge-base", "--is-ancestor", theirs, "main") == ""  # nothing was overwritten
    assert f"This reverts commit {revert.data['merge']}" in run_git(sample.origin, "log", "-1", "--format=%B", "main")
    again = push_rollback(context(sample.repo))
    assert again.status == "already-done"


def test_remote_that_moved_during_the_revert_step_is_replayed_before_reverting(sample, tmp_path):
    teammate = other_clone(sample.origin, tmp_path / "teammate")
    theirs = commit_change(teammate, "docs/ops.md", "ops\n", "ops notes", push=True)
    result = revert_merge(context(sample.repo, facts={"merge": merge_of(sample)}))
    assert "fast-forwarded" in " ".join(result.evidence)
    assert run_git(sample.repo, "merge-base", "--is-ancestor", theirs, "HEAD") == ""


def test_push_refused_by_a_hook_keeps_everything_and_says_why(sample):
    hook = sample.origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected: open a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)
    revert_merge(context(sample.repo, facts={"merge": merge_of(sample)}))
    remote_before = refs(sample.origin)
    with pytest.raises(StepError) as error:
        push_rollback(context(sample.repo))
    assert "refused the push" in str(error.value) and "main is protected" in str(error.value)
    assert refs(sample.origin) == remote_before
    ahead = run_git(sample.repo, "rev-list", "origin/main..main").split()
    assert len(ahead) == 1 and "This reverts commit" in run_git(sample.repo, "log", "-1", "--format=%B")


def test_push_branch_mode_pushes_a_review_branch_not_main(sample):
    cfg = config(**{"git.push": "branch"})
    revert_merge(context(sample.repo, cfg=cfg, facts={"merge": merge_of(sample)}, incident="inc-42"))
    main_before = run_git(sample.origin, "rev-parse", "main")
    result = push_rollback(context(sample.repo, cfg=cfg, incident="inc-42"))
    assert result.data["target"] == "rollback/inc-42"
    assert run_git(sample.origin, "rev-parse", "rollback/inc-42") == run_git(sample.repo, "rev-parse", "HEAD")
    assert run_git(sample.origin, "rev-parse", "main") == main_before


def test_not_a_repository_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="is not a git repository"):
        find_phase_merge(context(tmp_path, step_id="P1.2a"))
