"""Section 3 of the runbook after a real Phase 1 rollback on a sample workspace: the retry lock
(A.4), the postmortem draft and ADR stub from Prefect's record (A.1, A.2, A.5), the 48-hour
deadline watch, and the audit."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import config_variant, paged_config_text, pager_block, run_git

from actor_rollback.runbook.postmortem import TO_FILL, next_adr, render_adr, unfilled_sections

pytestmark = pytest.mark.prefect
CLI = str(Path(sys.executable).parent / "actor-rollback")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def rolled_back(tmp_path_factory, prefect_server, test_config):
    """One real Phase 1 rollback (CI and benchmarks skipped) shared by the module's tests."""
    from actor_rollback.deployments.cli import run_phase_flow
    from actor_rollback.deployments.sample import create_sample_workspace

    root = tmp_path_factory.mktemp("after")
    sample = create_sample_workspace(root / "sample")
    pager = pager_block("test-after-pager")
    config = config_variant(root, paged_config_text("custom-webhook/test-after-pager", ("tech-lead", "architect")))
    before = datetime.now(timezone.utc)
    report = run_phase_flow("1", sample.repo, "throughput -12 % after phase 1", "INC-after", False, [],
                            ["ci", "benchmarks"], "", config, triggered_by="test")
    yield sample, config, report, before, pager
    pager.server.shutdown()


def test_a4_the_rollback_locks_reintroduction_refused_on_day_6_allowed_on_day_8(rolled_back):
    sample, config, report, before, _ = rolled_back
    day = lambda n: (before + timedelta(days=n)).isoformat(timespec="seconds")  # noqa: E731
    locked = cli("lock", "check", "--repo", str(sample.repo), "--phase", "1", "--config", str(config), "--now", day(6))
    assert locked.returncode == 1 and "LOCKED until" in locked.stderr and "INC-after" in locked.stderr
    free = cli("lock", "check", "--repo", str(sample.repo), "--phase", "1", "--config", str(config), "--now", day(8))
    assert free.returncode == 0, free.stderr
    other = cli("lock", "check", "--repo", str(sample.repo), "--phase", "2a", "--config", str(config), "--now", day(1))
    assert other.returncode == 0  # only the phase rolled back is locked
    status = json.loads(cli("lock", "status", "--repo", str(sample.repo), "--config", str(config), "--json").stdout)
    phase1 = next(lock for lock in status["locks"] if lock["phase"] == "1")
    assert phase1["holds"] and phase1["incident"] == "INC-after" and phase1["flow_run_id"] == report.flow_run_id


def test_a4_the_lock_counts_from_the_incidents_first_change_a_rerun_keeps_it_and_a_run_that_changed_nothing_takes_none(
        tmp_path, prefect_server, test_config):
    from actor_rollback.deployments.cli import run_phase_flow
    from actor_rollback.deployments.sample import create_sample_workspace
    from actor_rollback.flows.retry_lock import read_retry_lock
    from actor_rollback.runbook.config import load_config

    sample, cfg = create_sample_workspace(tmp_path / "sample"), load_config(test_config)
    skip = ["ci", "deploy", "monitor", "logs", "benchmarks"]
    first = run_phase_flow("1", sample.repo, "throughput -12 %", "INC-lock", False, [], skip, "", test_config,
                           triggered_by="test")
    lock = read_retry_lock(sample.repo, cfg, "1")
    flag = next(s for s in first.steps if s.name == "flag")
    assert flag.status == "done" and lock.incident == "INC-lock"
    assert abs((lock.locked_at - flag.finished_at).total_seconds()) < 1, "from the flag pushed off, not the run's end"
    rerun = run_phase_flow("1", sample.repo, "rerun", "INC-lock", False, [], skip, "", test_config, triggered_by="test")
    assert {s.status for s in rerun.steps if s.name in ("flag", "revert", "push")} == {"already-done"}
    assert read_retry_lock(sample.repo, cfg, "1") == lock, "a rerun of the same incident does not extend it"
    other = run_phase_flow("1", sample.repo, "same symptom, already rolled back", "INC-other", False, [], skip, "",
                           test_config, triggered_by="test")
    assert {s.status for s in other.steps if s.name in ("flag", "revert")} == {"already-done"}
    assert read_retry_lock(sample.repo, cfg, "1") == lock, "a run that changed nothing takes no lock"


def test_a4_lifting_early_needs_a_named_approver_and_a_reason_and_is_recorded(rolled_back, tmp_path):
    from actor_rollback.flows.retry_lock import read_retry_lock, set_retry_lock
    from actor_rollback.runbook.config import load_config

    sample, config, *_ = rolled_back
    cfg = load_config(config)
    set_retry_lock(sample.repo, cfg, "2B", "INC-2b", None)
    refused = cli("lock", "lift", "--repo", str(sample.repo), "--phase", "2b", "--approver", "", "--reason", "",
                  "--config", str(config))
    assert refused.returncode == 2 and "--approver NAME and --reason WHY" in " ".join(refused.stderr.split())
    lifted = cli("lock", "lift", "--repo", str(sample.repo), "--phase", "2b", "--approver", "Ken (architect)",
                 "--reason", "root cause fixed in ADR-0002", "--config", str(config))
    assert lifted.returncode == 0, lifted.stderr
    lock = read_retry_lock(sample.repo, cfg, "2B")
    assert lock.lifted_by == "Ken (architect)" and lock.lift_reason == "root cause fixed in ADR-0002"
    assert cli("lock", "check", "--repo", str(sample.repo), "--phase", "2b", "--config", str(config)).returncode == 0


def test_a1_a2_postmortem_draft_from_the_real_run_with_revert_sha_timings_and_checklist(rolled_back):
    sample, config, report, *_ = rolled_back
    run = cli("postmortem", "INC-after", "--repo", str(sample.repo), "--config", str(config), "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert result["postmortem"] == f"docs/postmortem/{day}-phase-1-rollback-INC-after.md" and result["status"] == "done"
    text = run_git(sample.origin, "show", f"main:{result['postmortem']}")
    revert = next(s for s in report.steps if s.name == "revert").data["revert"]
    assert f"- Revert commit: `{revert}`" in text
    assert "- Time to mitigation (from the run's start): flag off committed +" in text and "deploy done +" in text
    assert "time to mitigation: pushed (+" in text  # and in the timeline
    assert "P1.2b revert_merge" in text and "| Completed |" in text  # task runs with their times and states
    timed = [line for line in text.splitlines() if "P1.1 disable_feature_flag" in line]
    assert timed and timed[0].split("|")[3].strip().endswith(" s")
    assert "**PASS** P1.C1 The feature flag is disabled" in text and "**UNVERIFIED** P1.C3" in text
    assert unfilled_sections(text) == ["Root cause", "Why detection was late", "Prevention: design",
                                       "Prevention: tests", "Prevention: feature-flag strategy"]
    assert result["adr"].startswith("docs/adr/0002-phase-1-rollback-inc-after")  # after the sample's ADR-0001
    adr = run_git(sample.origin, "show", f"main:{result['adr']}")
    assert adr.startswith("# ADR-0002: Phase 1 rollback INC-after: design correction")
    assert f"(../postmortem/{day}-phase-1-rollback-INC-after.md)" in adr and "../adr/0002-" in text
    head = run_git(sample.origin, "rev-parse", "main")
    again = json.loads(cli("postmortem", "INC-after", "--repo", str(sample.repo), "--config", str(config), "--json").stdout)
    assert again["status"] == "already-done" and run_git(sample.origin, "rev-parse", "main") == head


def test_a1_unfilled_drafts_near_their_deadline_are_sent_to_the_owners(rolled_back):
    from actor_rollback.flows.postmortem import postmortem_deadlines

    sample, config, _, before, pager = rolled_back
    if cli("postmortem", "INC-after", "--repo", str(sample.repo), "--config", str(config)).returncode not in (0,):
        pytest.fail("the postmortem draft could not be written")
    early = postmortem_deadlines(repo=str(sample.repo), config=str(config), now=before + timedelta(hours=1))
    assert early["reminded"] == []
    late = postmortem_deadlines(repo=str(sample.repo), config=str(config), now=before + timedelta(hours=40))
    [due] = late["reminded"]
    assert not due["overdue"] and due["unfilled"][0] == "Root cause"
    message = pager.wait_for(lambda b: "postmortem due" in b["subject"])
    assert "still has unfilled sections: Root cause" in message["text"]
    overdue = postmortem_deadlines(repo=str(sample.repo), config=str(config), now=before + timedelta(hours=49))
    assert overdue["reminded"][0]["overdue"]


def test_audit_lists_the_rollback_with_its_trigger_and_outcome(rolled_back):
    run = cli("audit", "--phase", "1", "--json")
    assert run.returncode == 0, run.stderr
    report = rolled_back[2]
    rows = [r for r in json.loads(run.stdout)["runs"] if r["incident"] == "INC-after"]
    assert rows and rows[0]["kind"] == "rollback" and rows[0]["trigger"] == "test"
    assert rows[0]["outcome"] == report.outcome  # the rollback's own outcome, as its exit code and JSON said
    assert rows[0]["state"] == {"done": "Completed", "needs-human": "Paused"}[report.outcome]
    assert rows[0]["seconds"] > 0


@pytest.mark.parametrize("existing,number,name", [
    (["0001-flag.md", "0007-queue.md", "template.md"], 8, "0008-phase-1-rollback.md"),
    (["001-x.md", "012-y.md"], 13, "013-phase-1-rollback.md"),  # the target's own width
    ([], 1, "0001-phase-1-rollback.md"),
    # a repository that dates its ADRs: the name follows it (numbered 3rd in the text), never "2027-…" as a number
    (["2026-10-01-use-mailboxes.md", "2026-11-30-drop-x.md", "template.md"], 3, "2026-12-06-phase-1-rollback.md"),
])
def test_adr_numbering_follows_the_existing_adrs(existing, number, name):
    assert next_adr(existing, "Phase 1 rollback", "2026-12-06") == (number, name)


MADR = """# [short title of solved problem and solution]

* Status: [proposed | rejected | accepted | superseded by [ADR-0005](0005-example.md)] <!-- optional -->
* Deciders: [list everyone involved in the decision] <!-- optional -->
* Date: [YYYY-MM-DD when the decision was last updated] <!-- optional -->

## Context and Problem Statement

[Describe the context and problem statement, e.g., in free form using two to three sentences.]

## Decision Drivers <!-- optional -->

* [driver 1, e.g., a force, facing concern, …]

## Decision Outcome

Chosen option: "[option 1]", because [justification].
"""

NYGARD = """# NUMBER. TITLE

Date: DATE

## Status

What is the status, such as proposed, accepted, rejected, deprecated, superseded, etc.?

## Context

What is the issue that we're seeing that is motivating this decision or change?

## Decision

What is the change that we're proposing and/or doing?

## Consequences

What becomes easier or more difficult to do because of this change?
"""


@pytest.mark.parametrize("template,title_line,status_line", [
    (MADR, "# Phase 0 rollback INC-9: design change", "* Status: proposed"),
    (NYGARD, "# 3. Phase 0 rollback INC-9: design change", "proposed")])
def test_p0_3_an_adr_from_a_real_template_keeps_none_of_its_placeholders(template, title_line, status_line):
    text = render_adr(template, 3, "Phase 0 rollback INC-9: design change", "2026-12-06", "why we rolled back",
                      "../postmortem/")
    assert text.splitlines()[0] == title_line
    assert "2026-12-06" in text and "why we rolled back" in text and "proposed" in text
    for left in ("[short title", "[list everyone", "YYYY-MM-DD", "NUMBER", "TITLE", "DATE", "[Describe", "?\n",
                 "<!-- optional -->", "[option 1]", "[justification]"):
        assert left not in text, left
    assert text.count(TO_FILL) >= 2, "what the template asked for is marked for a person (and gates A.6)"
    assert status_line in text.splitlines(), "the status is set, not the template's list or question"


def test_a_filled_section_is_no_longer_reported():
    text = f"### Root cause\n\nthe queue\n\n### Why detection was late\n\nx\n\n{TO_FILL}\n"
    assert unfilled_sections(text) == ["Why detection was late"]


def test_p0_3_a_rerun_finds_its_own_adr_even_when_the_incident_id_is_not_a_slug(sample):
    from helpers import context

    from actor_rollback.tasks.adr import record_design_change

    ctx = context(sample.repo, phase="0", step_id="P0.3", incident="INC-7.a")
    first, again = record_design_change(ctx), record_design_change(ctx)
    assert first.status == "done" and first.data["adr"] == "docs/adr/0002-phase-0-rollback-inc-7-a.md"
    assert again.status == "already-done" and again.data["adr"] == first.data["adr"]
    assert run_git(sample.origin, "ls-tree", "--name-only", "main:docs/adr").split() == [
        "0001-scheduler-refactor-behind-flag.md", "0002-phase-0-rollback-inc-7-a.md", "template.md"]
    # P0.1 did not run here (no archive in the facts): the record does not say the prototype was archived
    text = run_git(sample.origin, "show", f"main:{first.data['adr']}")
    assert "prototype was not archived by this rollback (P0.1 did not run)" in text and "was archived as" not in text
    archived = context(sample.repo, phase="0", step_id="P0.3", incident="INC-8")
    archived.facts["archive_tag"] = "archive/poc"
    second = record_design_change(archived)
    assert "The phase 0 prototype was archived as archive/poc (INC-8)" in run_git(
        sample.origin, "show", f"main:{second.data['adr']}")


def test_a2_a_second_rollback_of_the_phase_the_same_day_gets_a_draft_of_its_own(rolled_back):
    """Last in the module: the second rollback takes the phase's retry lock over."""
    from actor_rollback.deployments.cli import run_phase_flow

    sample, config, *_ = rolled_back
    first = json.loads(cli("postmortem", "INC-after", "--repo", str(sample.repo), "--config", str(config),
                           "--json").stdout)
    report = run_phase_flow("1", sample.repo, "throughput -9 % again", "INC-after-2", False, [], ["ci", "benchmarks"],
                            "", config, triggered_by="test")
    assert report.outcome in ("done", "needs-human"), report.steps
    run = cli("postmortem", "INC-after-2", "--repo", str(sample.repo), "--config", str(config), "--json")
    second = json.loads(run.stdout)
    assert run.returncode == 0 and second["status"] == "done", (run.stdout, run.stderr)  # was "left as it is"
    assert second["postmortem"] != first["postmortem"] and second["postmortem"].endswith("-INC-after-2.md")
    drafts = run_git(sample.origin, "ls-tree", "--name-only", "main:docs/postmortem").split()
    assert {first["postmortem"].rsplit("/", 1)[1], second["postmortem"].rsplit("/", 1)[1]} <= set(drafts)
    assert "INC-after-2" in run_git(sample.origin, "show", f"main:{second['postmortem']}")
