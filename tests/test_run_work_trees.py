"""Every write to a target happens in a work tree of the run's own (DESIGN, #24): a person's dirty or half-pushed
clone, or another incident's crashed run, never blocks a flag-off; leftovers are kept for their own rerun, said
with the command that drops them, and never pushed under another incident."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import commit_change, run_git

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")
MANIFEST = "modules/actor-core/Cargo.toml"


def rollback(repo: Path, incident: str, *steps: str) -> tuple[int, dict, str]:
    import json

    done = subprocess.run([CLI, "run", "1", "--repo", str(repo), "--reason", "test", "--incident", incident, "--json",
                           "--config", os.environ["ACTOR_ROLLBACK_TEST_CONFIG"],
                           *[arg for step in steps for arg in ("--only", step)]],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def pushed(out: dict) -> bool:
    """flag and push done (or found done); the unverified checklist of a run of two steps makes it needs-human."""
    steps = {step["name"]: step["status"] for step in out.get("steps", [])}
    return out.get("outcome") == "needs-human" and {steps.get("flag"), steps.get("push")} <= {"done", "already-done"}


def work_trees(repo: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in run_git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def remote_subjects(sample) -> list[str]:
    return run_git(sample.origin, "log", "--format=%s", "main").splitlines()


def refuse_pushes(origin: Path) -> Path:
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    return hook


def test_p1_1_a_dirty_half_pushed_clone_never_blocks_the_flag_off_and_is_left_as_it_was(sample):
    mine = commit_change(sample.repo, "NOTES.md", "wip\n", "wip: my notes (not pushed)")
    manifest = sample.repo / MANIFEST
    edited = manifest.read_text() + "\n# my local experiment\n"
    manifest.write_text(edited)  # the very file the flag step changes, edited and not committed

    code, out, err = rollback(sample.repo, "inc-dirty-clone", "flag", "push")

    assert code == 3 and pushed(out), (out, err[-2000:])
    subjects = remote_subjects(sample)
    assert subjects[0].startswith("rollback(inc-dirty-clone): P1.1") and "wip: my notes (not pushed)" not in subjects
    assert "new-scheduler" not in run_git(sample.origin, "show", f"main:{MANIFEST}").split("default", 1)[1].split("\n")[0]
    assert manifest.read_text() == edited and run_git(sample.repo, "rev-parse", "HEAD") == mine  # untouched
    assert work_trees(sample.repo) == [str(sample.repo)]  # the run's own tree is gone, and its branch
    assert not run_git(sample.repo, "branch", "--list", "actor-rollback/*")


def test_a_clean_clone_on_main_is_brought_up_to_the_pushed_rollback(sample):
    code, out, err = rollback(sample.repo, "inc-clean-clone", "flag", "push")
    assert code == 3 and pushed(out), (out, err[-2000:])
    assert run_git(sample.repo, "rev-parse", "HEAD") == run_git(sample.origin, "rev-parse", "main")
    assert not run_git(sample.repo, "status", "--porcelain", "--untracked-files=no")


def test_a_crashed_runs_leftovers_are_kept_said_never_pushed_by_another_incident_and_finished_by_its_rerun(sample):
    hook = refuse_pushes(sample.origin)
    code, out, err = rollback(sample.repo, "inc-stuck", "flag", "push")
    assert out.get("outcome") == "failed" and code != 0, (out, err[-2000:])
    kept = sample.repo / ".git" / "actor-rollback" / "work" / "inc-stuck"
    note = " ".join(out["leftovers"])
    assert str(kept) in note and "1 unpushed commit(s)" in note and "rerunning incident inc-stuck" in note
    assert f"worktree remove --force {kept}" in note and "branch -D actor-rollback/inc-stuck" in note
    assert "work tree kept" in err  # the summary (the run's state message) says it too

    hook.unlink()
    code, out, err = rollback(sample.repo, "inc-next", "flag", "push")  # another incident, the next Critical
    assert code == 3 and pushed(out), (out, err[-2000:])
    subjects = remote_subjects(sample)
    assert subjects[0].startswith("rollback(inc-next): P1.1") and not any("inc-stuck" in s for s in subjects)
    assert str(kept) in work_trees(sample.repo)  # still there, for its own rerun

    code, out, err = rollback(sample.repo, "inc-stuck", "flag", "push")  # its rerun goes on in its tree, converges
    assert code == 3 and pushed(out), (out, err[-2000:])
    assert f"going on in the work tree {kept}" in err
    assert sum("P1.1" in s for s in remote_subjects(sample)) == 1  # the flag was turned off once, not twice
    assert work_trees(sample.repo) == [str(sample.repo)] and out["leftovers"] == []


def test_a_work_tree_removed_by_hand_is_made_again_from_its_branch(sample):
    hook = refuse_pushes(sample.origin)
    rollback(sample.repo, "inc-handmade", "flag", "push")
    kept = sample.repo / ".git" / "actor-rollback" / "work" / "inc-handmade"
    commit = run_git(kept, "rev-parse", "HEAD")
    subprocess.run(["rm", "-rf", str(kept)], check=True)  # a person cleaning up the disk, git not told
    hook.unlink()
    code, out, err = rollback(sample.repo, "inc-handmade", "flag", "push")
    assert code == 3 and pushed(out), (out, err[-2000:])
    assert run_git(sample.origin, "rev-parse", "main") == commit  # its commit, pushed, not made again
