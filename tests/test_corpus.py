"""P3.3 and the P1.1 flag edit on real files of public Rust projects (../shared/corpus, read in place).

Every workflow is tried with the runbook's target and with the bare-metal targets it really builds;
each try either edits with a minimal diff (it parses, only the intended nodes change, every running
job's needs run, nothing reads a disabled step's or job's outputs, the targets are out of every
running job) or is needs-human with a reason — never an exception, never a silent no-op. Every
manifest loses exactly one `default` entry and nothing else.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import require

from actor_rollback.tasks.ci_workflow import bare_metal_targets, changed_lines, plan_ci_edit
from actor_rollback.tasks.cargo_manifest import remove_from_default

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
WORKFLOWS = sorted((CORPUS / "workflows").glob("*.yml"))
MANIFESTS = sorted((CORPUS / "cargo").glob("*.toml"))
RUNBOOK_TARGET = "thumbv7em-none-eabihf"



@pytest.fixture(autouse=True)
def corpus_is_there() -> None:
    require(CORPUS.exists(), f"the real-file corpus at {CORPUS} (shared/corpus beside the project, as on CI)")


def _text(path: Path) -> str:
    return path.read_bytes().decode()


def _off(node: dict) -> bool:
    return str(node.get("if", "")).replace(" ", "") in ("${{false}}", "false")


def _names(node, targets) -> bool:
    text = yaml.safe_dump(node) if not isinstance(node, str) else node
    return any(re.search(rf"(?<![\w.-]){re.escape(t)}(?![\w.-])", text) for t in targets)


def _without_edits(before: dict, after: dict) -> tuple[dict, dict]:
    """Both workflows with what P3.3 may change taken out: if: on jobs/steps, matrix lists, needs."""
    before, after = copy.deepcopy(before), copy.deepcopy(after)
    for data in (before, after):
        for job in data["jobs"].values():
            job.pop("if", None)
            job.pop("needs", None)
            for step in job.get("steps") or []:
                if isinstance(step, dict):
                    step.pop("if", None)
            matrix = (job.get("strategy") or {}).get("matrix")
            if isinstance(matrix, dict):
                for key in [k for k, v in matrix.items() if isinstance(v, list)]:
                    matrix[key] = "(list)"
    return before, after


def check_workflow_edit(name: str, text: str, targets: list[str], edit) -> None:
    before, after = yaml.safe_load(text), yaml.safe_load(edit.text)
    assert _without_edits(before, after)[0] == _without_edits(before, after)[1], f"{name}: more than P3.3's nodes changed"
    jobs = after["jobs"]
    running = {n for n, j in jobs.items() if not _off(j)}
    for job_name in running:
        job = jobs[job_name]
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in running, f"{name}: running job {job_name} needs {need}, which is off"
        for gone in set(jobs) - running:
            assert f"needs.{gone}." not in yaml.safe_dump(job), f"{name}: {job_name} reads outputs of off job {gone}"
        # Matrix lists lose only entries that name the targets; the rest keep running.
        old_matrix = ((before["jobs"][job_name].get("strategy") or {}).get("matrix")) or {}
        new_matrix = ((job.get("strategy") or {}).get("matrix")) or {}
        if isinstance(new_matrix, dict):
            for key, values in new_matrix.items():
                if isinstance(values, list) and key != "exclude":
                    assert not any(_names(v, targets) for v in values), f"{name}: {job_name} matrix {key} still builds"
                    removed = [v for v in old_matrix[key] if v not in values]
                    assert all(_names(v, targets) for v in removed), f"{name}: {job_name} lost a host entry"
        steps = [s for s in job.get("steps") or [] if isinstance(s, dict)]
        off_ids = {s.get("id") for s in steps if _off(s) and s.get("id")}
        for step in steps:
            if not _off(step):
                assert not any(f"steps.{i}." in yaml.safe_dump(step) for i in off_ids), f"{name}: dangling step output"
                matrix_named = _names(old_matrix, targets)
                assert matrix_named or not _names({k: step.get(k) for k in ("run", "with")}, targets), \
                    f"{name}: {job_name} still runs a step that builds {targets}"
    # Only lines the edit concerns: each added line is a marker, or what is left of a removed line.
    diff = changed_lines(text, edit.text)
    removed = [line[1:] for line in diff if line.startswith("-")]
    for line in (line[1:] for line in diff if line.startswith("+")):
        assert "by actor-rollback" in line or any(_is_subsequence(line.strip(), r.replace("- ", "", 1).strip())
                                                   for r in removed), f"{name}: unexpected added line {line!r}"


def _is_subsequence(short: str, long: str) -> bool:
    chars = iter(long)
    return all(c in chars for c in short)


def _tries(path: Path) -> list[list[str]]:
    seen = bare_metal_targets(_text(path))
    return [[RUNBOOK_TARGET]] + ([seen] if seen and seen != [RUNBOOK_TARGET] else [])


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_p3_3_every_corpus_workflow_is_edited_minimally_or_handed_to_a_person(path):
    text = _text(path)
    for targets in _tries(path):
        edit = plan_ci_edit(text, targets, path.name, "P3.3 (inc-corpus)")
        assert edit.status in ("changed", "needs-human"), f"{path.name} {targets}: {edit.status} without an edit"
        if edit.status == "needs-human":
            assert edit.text == text and edit.needs_human
            assert not any("could not be verified" in reason for reason in edit.needs_human), edit.needs_human
            assert all(path.name in reason for reason in edit.needs_human)
        else:
            check_workflow_edit(path.name, text, targets, edit)
            assert plan_ci_edit(edit.text, targets, path.name, "P3.3 (inc-corpus)").status == "already-done"


# The expected answers of corpus/SOURCES.md, for the files where the edit can be certain.
EXPECTED = {
    "rust-lang__hashbrown__rust": {"matrix": {"test": ["thumbv6m-none-eabi"]}},
    "rust-random__rand__test": {"jobs_off": ["test-no-std"]},
    "rust-lang__futures-rs__ci": {"jobs_off": ["no-std"]},
    "rust-embedded__cortex-m__on-target": {"jobs_off": ["hil-qemu"], "note": "only job"},
    "bevyengine__bevy__ci": {"jobs_off": ["check-compiles-no-std", "check-compiles-no-std-portable-atomic",
                                          "check-compiles-no-std-examples"]},
    "bevyengine__bevy__update-caches": {"include_removed": 2},
    "chronotope__chrono__test": {"matrix": {"no_std": ["thumbv6m-none-eabi"]}},
    "dalek-cryptography__curve25519-dalek__workspace": {"jobs_off": ["build-nostd-serial"]},
    "smol-rs__event-listener__ci": {"steps_off": {"test": 4}},
    "smol-rs__async-task__ci": {"steps_off": {"test": 2}},
    "RustCrypto__hashes__sha2": {"matrix": {"build": ["thumbv7em-none-eabi"]}},
}


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_p3_3_corpus_edits_match_the_expected_answers(stem):
    text = _text(CORPUS / "workflows" / f"{stem}.yml")
    edit = plan_ci_edit(text, bare_metal_targets(text), stem, "P3.3 (inc-corpus)")
    assert edit.status == "changed", edit.needs_human
    before, after = yaml.safe_load(text)["jobs"], yaml.safe_load(edit.text)["jobs"]
    want = EXPECTED[stem]
    assert sorted(n for n, j in after.items() if _off(j)) == sorted(want.get("jobs_off", []))
    for job, entries in want.get("matrix", {}).items():
        old, new = before[job]["strategy"]["matrix"]["target"], after[job]["strategy"]["matrix"]["target"]
        assert [t for t in old if t not in new] == entries and new
    if "include_removed" in want:
        old = before["build-caches"]["strategy"]["matrix"]["include"]
        assert len(old) - len(after["build-caches"]["strategy"]["matrix"]["include"]) == want["include_removed"]
    for job, count in want.get("steps_off", {}).items():
        assert sum(1 for s in after[job]["steps"] if _off(s)) == count and not _off(after[job])
    if "note" in want:
        assert any(want["note"] in note for note in edit.notes)


def test_p3_3_the_negative_control_is_never_edited():
    text = _text(CORPUS / "workflows" / "tqwewe__kameo__ci.yml")
    edit = plan_ci_edit(text, [RUNBOOK_TARGET], "kameo", "P3.3 (inc-corpus)")
    assert edit.status == "needs-human" and edit.text == text
    assert "none looks like a no_std build" in edit.needs_human[0]


def test_p3_3_corpus_count(capsys):
    counts = {"edited": 0, "needs-human": 0}
    for path in WORKFLOWS:
        for targets in _tries(path):
            edit = plan_ci_edit(_text(path), targets, path.name, "P3.3 (inc-corpus)")
            counts["edited" if edit.status == "changed" else "needs-human"] += 1
    with capsys.disabled():
        print(f"\nP3.3 on {len(WORKFLOWS)} corpus workflows ({sum(counts.values())} tries): "
              f"edited {counts['edited']} / needs-human {counts['needs-human']}")
    assert counts["edited"] >= 12 and sum(counts.values()) == sum(len(_tries(p)) for p in WORKFLOWS)


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_p1_1_every_corpus_manifest_loses_exactly_the_flag_and_nothing_else(path):
    text = path.read_text()
    data = tomllib.loads(text)
    default = data["features"]["default"]
    for flag in dict.fromkeys([default[0], default[-1], "std"]):
        edited = remove_from_default(text, flag)
        after = tomllib.loads(edited)
        expected = copy.deepcopy(data)
        expected["features"]["default"] = [e for e in default if e != flag]
        assert after == expected, f"{path.name}: removing {flag} changed more than default"
        diff = changed_lines(text, edited)
        assert all("default" in line or flag in line for line in diff if line.startswith("-")), diff
        assert len([line for line in diff if line.startswith("-")]) <= 1
