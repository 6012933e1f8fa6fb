"""P1.1 / P1.1b: the flag out of every default feature set, formatting kept; its gates checked."""

from __future__ import annotations

import pytest
from helpers import commit_change, config, context, refs, run_git

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.tasks.cargo_manifest import check_flag_gating, disable_feature_flag

CORE = "modules/actor-core/Cargo.toml"
UTILS = "modules/actor-utils/Cargo.toml"


def flag_ctx(sample, **kw):
    return context(sample.repo, step_id="P1.1", **kw)


def test_p1_1_removes_the_flag_and_touches_only_that_line(sample):
    result = disable_feature_flag(flag_ctx(sample))
    assert result.status == "done"
    diff = run_git(sample.repo, "show", "--format=", "--unified=0", "HEAD")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == [
        '-default = ["std", "new-scheduler"]   # keep in sync with docs/features.md',
        '+default = ["std"]   # keep in sync with docs/features.md',
    ]
    message = run_git(sample.repo, "log", "-1", "--format=%B")
    assert message.startswith("rollback(inc-test): P1.1 remove new-scheduler from default features")
    assert "Runbook-Step: P1.1" in message and "Reason: test: throughput regression" in message
    assert run_git(sample.repo, "log", "-1", "--format=%an <%ae>") == "actor-rollback <actor-rollback@localhost>"


def test_p1_1_second_run_is_already_done_and_commits_nothing(sample):
    disable_feature_flag(flag_ctx(sample))
    head = run_git(sample.repo, "rev-parse", "HEAD")
    again = disable_feature_flag(flag_ctx(sample))
    assert again.status == "already-done"
    assert run_git(sample.repo, "rev-parse", "HEAD") == head


def test_p1_1_edits_every_member_that_enables_the_flag(sample):
    text = (sample.repo / UTILS).read_text().replace(
        'default = ["std"]\nstd = ["actor-core/std"]',
        'default = [\n  "std",\n  "actor-core/new-scheduler",  # follow core\n]\nstd = ["actor-core/std"]')
    commit_change(sample.repo, UTILS, text, "utils: follow the new scheduler", push=True)
    result = disable_feature_flag(flag_ctx(sample))
    assert result.status == "done"
    changed = run_git(sample.repo, "show", "--format=", "--name-only", "HEAD").split()
    assert sorted(changed) == [CORE, UTILS]
    assert '"actor-core/new-scheduler"' not in (sample.repo / UTILS).read_text()
    assert '"std",' in (sample.repo / UTILS).read_text(), "the multi-line layout is kept"


def test_p1_1_flag_declared_nowhere_is_a_clear_error(sample):
    before = refs(sample.repo)
    with pytest.raises(BadInputError, match=r'"no-such-flag" is declared in no Cargo.toml.*checked Cargo.toml'):
        disable_feature_flag(flag_ctx(sample, cfg=config(flag="no-such-flag")))
    assert refs(sample.repo) == before


def test_p1_1_flag_enabled_only_indirectly_needs_a_human_with_the_chain(sample):
    text = (sample.repo / CORE).read_text().replace('default = ["std", "new-scheduler"]',
                                                    'default = ["std", "fast-path"]')
    text = text.replace("std = []\n", 'std = []\nfast-path = ["tuning"]\ntuning = ["new-scheduler"]\n')
    commit_change(sample.repo, CORE, text, "enable the fast path", push=True)
    before = refs(sample.repo)
    result = disable_feature_flag(flag_ctx(sample))
    assert result.status == "needs-human"
    assert any("default → fast-path → tuning → new-scheduler" in line for line in result.evidence)
    assert refs(sample.repo) == before and (sample.repo / CORE).read_text() == text


def test_p1_1_dry_run_says_which_files_and_changes_nothing(sample):
    before = refs(sample.repo)
    result = disable_feature_flag(flag_ctx(sample, dry_run=True))
    assert result.status == "planned"
    assert result.evidence == [f"{CORE}: remove new-scheduler from [features] default"]
    assert refs(sample.repo) == before and run_git(sample.repo, "status", "--porcelain") == ""


def test_p1_1b_lists_gates_and_finds_the_old_path(sample):
    result = check_flag_gating(context(sample.repo, step_id="P1.1b"))
    assert result.data["old_path"] == "pass"
    text = "\n".join(result.evidence)
    assert "scheduler/mod.rs:22 cfg(not(feature)) pub type ActiveScheduler = ReadyQueueScheduler;" in text
    assert "old path with the flag off:" in text


def test_p1_1b_reports_a_new_path_without_an_old_one(sample):
    commit_change(sample.repo, "modules/actor-core/src/fast.rs",
                  '#[cfg(feature = "new-scheduler")]\npub fn dispatch() -> u32 { 1 }\n', "fast dispatch")
    result = check_flag_gating(context(sample.repo, step_id="P1.1b"))
    assert result.data["old_path"] == "fail"
    assert any(line.startswith("WARNING modules/actor-core/src/fast.rs:1") for line in result.evidence)


def test_p1_1_resumes_an_edit_a_killed_run_left_uncommitted(sample):
    disable_feature_flag(flag_ctx(sample))
    edited = (sample.repo / CORE).read_text()
    run_git(sample.repo, "reset", "-q", "--mixed", "HEAD~1")  # as if killed between write and commit
    assert (sample.repo / CORE).read_text() == edited
    result = disable_feature_flag(flag_ctx(sample))
    assert result.status == "done"
    assert run_git(sample.repo, "status", "--porcelain") == ""
    subjects = run_git(sample.repo, "log", "--format=%s", "-3").splitlines()
    assert sum("remove new-scheduler" in s for s in subjects) == 1


def test_p1_1_another_uncommitted_manifest_edit_is_refused(sample):
    path = sample.repo / CORE
    path.write_text(path.read_text().replace('default = ["std", "new-scheduler"]', 'default = ["new-scheduler"]'))
    before = (path.read_text(), refs(sample.repo))
    with pytest.raises(BadInputError, match="uncommitted changes in modules/actor-core/Cargo.toml"):
        disable_feature_flag(flag_ctx(sample))
    assert (path.read_text(), refs(sample.repo)) == before


def test_p1_1b_a_gate_in_a_file_the_crate_never_declares_does_not_pass(tmp_path):
    import subprocess

    repo = tmp_path / "crate"
    files = {
        "Cargo.toml": '[package]\nname = "actor"\nversion = "0.1.0"\nedition = "2021"\n\n'
                      '[features]\ndefault = ["new-scheduler"]\nnew-scheduler = []\n',
        "src/lib.rs": "pub mod scheduler;\n",
        "src/scheduler.rs": "pub struct ReadyQueueScheduler;\npub type Scheduler = ReadyQueueScheduler;\n",
        # left behind by a refactor: nothing declares `mod coordinator`, so cargo never compiles it
        "src/coordinator.rs": '#[cfg(feature = "new-scheduler")]\npub type Scheduler = Coordinator;\n'
                              '#[cfg(not(feature = "new-scheduler"))]\npub type Scheduler = ReadyQueueScheduler;\n',
    }
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "crate"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    stray = check_flag_gating(context(repo, step_id="P1.1b"))
    assert stray.status == "needs-human" and stray.data["sites"] == "0", stray.evidence
    assert any(line.startswith("not compiled (no target or `mod` reaches the file), so not counted: "
                               "src/coordinator.rs:1 cfg(feature)") for line in stray.evidence)
    (repo / "src/lib.rs").write_text("pub mod scheduler;\nmod coordinator;\n")  # now the crate has it
    counted = check_flag_gating(context(repo, step_id="P1.1b"))
    assert counted.data["sites"] == "2" and counted.data["old_path"] == "pass", counted.evidence
    assert not any(line.startswith("not compiled") for line in counted.evidence)
