"""P3.3 on the shapes real workflows have: surgical text edits, coherent disabling, honest refusals.

Each workflow here is written the way public Rust projects write theirs (the corpus test runs the
real ones); the edit must keep every byte it does not concern.
"""

from __future__ import annotations

import pytest
import yaml

from actor_rollback.runbook.errors import BadInputError
from actor_rollback.tasks.ci_workflow import changed_lines, plan_ci_edit

pytestmark = pytest.mark.fast  # `make test-fast`: no service, no cargo, no git remote

TARGET = "thumbv7em-none-eabihf"
NOTE = "P3.3 (inc-9)"


def edit(text: str, targets=(TARGET,), jobs=()):
    return plan_ci_edit(text, list(targets), "ci.yml", NOTE, list(jobs))


FLOW_SPACES = """\
name: CI
on:
  push:
    branches: [ main ]     # flow sequence with inner spaces
  pull_request:
    branches: [ 'main', "release/*" ]
env:
  RUSTFLAGS: -D warnings
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: |
          cargo test --workspace
          cargo doc --no-deps
  no-std:
    name: "no_std (thumbv7em)"
    runs-on: ubuntu-latest
    steps:
    - uses: actions/checkout@v4
    - run: rustup target add thumbv7em-none-eabihf
    - run: >
        cargo build --no-default-features
        --target thumbv7em-none-eabihf
  release:
    needs: [ test, no-std ]
    runs-on: ubuntu-latest
    steps: [{uses: actions/checkout@v4}, {run: cargo build --release}]
"""


def test_p3_3_flow_sequences_with_inner_spaces_are_edited_with_every_other_byte_kept():
    result = edit(FLOW_SPACES)
    assert result.status == "changed", result.needs_human
    assert changed_lines(FLOW_SPACES, result.text) == [
        "+    if: ${{ false }}  # disabled by actor-rollback P3.3 (inc-9)",
        "-    needs: [ test, no-std ]",
        "+    # needs: no-std removed by actor-rollback P3.3 (inc-9)",
        "+    needs: [ test ]",
    ]
    after = yaml.safe_load(result.text)
    assert after["jobs"]["no-std"]["if"] == "${{ false }}" and after["jobs"]["release"]["needs"] == ["test"]


def test_p3_3_crlf_files_keep_their_line_endings():
    text = FLOW_SPACES.replace("\n", "\r\n")
    result = edit(text)
    assert result.status == "changed"
    assert "\n" not in result.text.replace("\r\n", "")
    assert result.text.count("\r\n") == text.count("\r\n") + 2  # the if: line and the marker comment


def test_p3_3_a_job_with_a_one_line_if_gets_it_replaced_and_the_old_condition_kept_in_a_comment():
    text = FLOW_SPACES.replace('    name: "no_std (thumbv7em)"\n', '    name: "no_std"\n    if: github.event_name == \'push\'\n')
    result = edit(text)
    assert result.status == "changed"
    assert "+    if: ${{ false }}  # disabled by actor-rollback P3.3 (inc-9); was: github.event_name == 'push'" in \
        changed_lines(text, result.text)
    assert yaml.safe_load(result.text)["jobs"]["no-std"]["if"] == "${{ false }}"


def test_p3_3_a_multi_line_if_is_needs_human_naming_its_line():
    text = FLOW_SPACES.replace('    name: "no_std (thumbv7em)"\n', '    name: "no_std"\n    if: >\n      github.ref == \'x\'\n')
    result = edit(text)
    assert result.status == "needs-human" and result.text == text
    assert any("multi-line if: on line 19" in line for line in result.needs_human)


def test_p3_3_an_anchored_job_is_refused_naming_the_anchor():
    text = FLOW_SPACES.replace("  no-std:\n", "  no-std: &embedded\n")
    result = edit(text)
    assert result.status == "needs-human"
    assert any("anchor &embedded" in line for line in result.needs_human)


SCRIPT_ONLY = """\
name: CI
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: cargo test
  no_std:
    runs-on: ubuntu-latest
    steps:
      - run: ./scripts/ci-check.sh no-std
  embedded:
    runs-on: ubuntu-latest
    steps:
      - run: rustup target add thumbv6m-none-eabi riscv32imc-unknown-none-elf
      - run: cargo build --target thumbv6m-none-eabi
"""


def test_p3_3_nothing_matching_is_needs_human_naming_the_candidates_and_the_key():
    result = edit(SCRIPT_ONLY)
    assert result.status == "needs-human" and result.text == SCRIPT_ONLY
    reason = " ".join(result.needs_human)
    assert "no job or step builds thumbv7em-none-eabihf" in reason
    assert "job no_std (line 8)" in reason and "job embedded (line 12)" in reason
    assert "phases.3.ci_disable_targets" in reason and "phases.3.ci_disable_jobs" in reason
    assert "seen: riscv32imc-unknown-none-elf, thumbv6m-none-eabi" in reason


def test_p3_3_already_done_only_when_a_previous_rollbacks_edit_is_there():
    first = edit(FLOW_SPACES)
    again = edit(first.text)
    assert again.status == "already-done"
    assert any("a previous rollback's edit is there" in line for line in again.already)


def test_p3_3_ci_disable_jobs_turns_off_a_job_no_target_names_and_keeps_its_dependents_running():
    text = SCRIPT_ONLY + "  release:\n    needs: no_std\n    runs-on: ubuntu-latest\n    steps:\n      - run: make\n"
    result = edit(text, targets=[], jobs=["no_std"])
    assert result.status == "changed", result.needs_human
    after = yaml.safe_load(result.text)
    assert after["jobs"]["no_std"]["if"] == "${{ false }}" and "needs" not in after["jobs"]["release"]


MATRIX = """\
jobs:
  check:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        target:
          - x86_64-unknown-linux-gnu
          - thumbv7em-none-eabihf   # the embedded build
          - i686-unknown-linux-musl
        include:
          - target: thumbv7em-none-eabihf
            features: no-std
          - target: x86_64-unknown-linux-gnu
            features: std
    steps:
      - uses: dtolnay/rust-toolchain@stable
        with:
          targets: ${{ matrix.target }}
      - run: cargo check --target ${{ matrix.target }} --features ${{ matrix.features }}
  flow:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        target: [x86_64-unknown-linux-gnu, "thumbv7em-none-eabihf"]
    steps:
      - run: cargo build --target ${{ matrix.target }}
"""


def test_p3_3_a_matrix_entry_is_taken_out_and_the_host_entries_keep_running():
    result = edit(MATRIX)
    assert result.status == "changed", result.needs_human
    after = yaml.safe_load(result.text)
    check = after["jobs"]["check"]
    assert check["strategy"]["matrix"]["target"] == ["x86_64-unknown-linux-gnu", "i686-unknown-linux-musl"]
    assert check["strategy"]["matrix"]["include"] == [{"target": "x86_64-unknown-linux-gnu", "features": "std"}]
    assert "if" not in check and "if" not in after["jobs"]["flow"]
    assert after["jobs"]["flow"]["strategy"]["matrix"]["target"] == ["x86_64-unknown-linux-gnu"]
    assert '        target: [x86_64-unknown-linux-gnu]' in result.text.splitlines()


def test_p3_3_a_matrix_left_empty_turns_the_job_off():
    text = MATRIX.replace("          - x86_64-unknown-linux-gnu\n", "").replace("          - i686-unknown-linux-musl\n", "")
    result = edit(text)
    after = yaml.safe_load(result.text)
    assert after["jobs"]["check"]["if"] == "${{ false }}"
    assert after["jobs"]["check"]["strategy"] == yaml.safe_load(text)["jobs"]["check"]["strategy"]


HALF = """\
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: dtolnay/rust-toolchain@stable
        with:
          targets: thumbv7em-none-eabihf, thumbv6m-none-eabi
      - run: cargo build
      - run: cargo build --target thumbv7em-none-eabihf
      - run: cargo build --target thumbv6m-none-eabi
"""


def test_p3_3_an_install_other_builds_still_need_is_never_disabled_alone():
    result = edit(HALF)
    assert result.status == "needs-human" and result.text == HALF
    assert any("also installs thumbv6m-none-eabi" in line for line in result.needs_human)
    both = edit(HALF, targets=[TARGET, "thumbv6m-none-eabi"])
    steps = yaml.safe_load(both.text)["jobs"]["build"]["steps"]
    assert [s.get("if") for s in steps] == ["${{ false }}", None, "${{ false }}", "${{ false }}"]


def test_p3_3_a_job_that_only_installs_the_target_and_builds_through_a_script_is_off_as_a_whole():
    text = """\
jobs:
  no-std:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: rustup target add thumbv7em-none-eabihf
      - run: ./scripts/ci-check.sh no-std
      - run: cargo test --lib
"""
    result = edit(text)
    assert yaml.safe_load(result.text)["jobs"]["no-std"]["if"] == "${{ false }}"
    assert any("only job" in note for note in result.notes)
    generic = text.replace("no-std:\n", "checks:\n")
    refused = edit(generic)
    assert refused.status == "needs-human"
    assert any('phases.3.ci_disable_jobs = ["checks"]' in line for line in refused.needs_human)


def test_p3_3_a_disabled_steps_outputs_read_elsewhere_are_never_left_dangling():
    text = """\
jobs:
  plan:
    runs-on: ubuntu-latest
    outputs:
      size: ${{ steps.embedded.outputs.size }}
    steps:
      - run: cargo test
      - id: embedded
        run: cargo build --target thumbv7em-none-eabihf && echo size=1 >> $GITHUB_OUTPUT
"""
    result = edit(text)
    assert result.status == "needs-human" and result.text == text
    assert any("(id embedded) is read by the job's outputs" in line for line in result.needs_human)


def test_p3_3_a_job_reading_a_disabled_jobs_outputs_is_needs_human():
    text = """\
jobs:
  matrix:
    runs-on: ubuntu-latest
    outputs:
      chips: ${{ steps.c.outputs.chips }}
    steps:
      - id: c
        run: cargo xtask chips --target thumbv7em-none-eabihf
  build:
    needs: matrix
    strategy:
      matrix:
        chip: ${{ fromJSON(needs.matrix.outputs.chips) }}
    runs-on: ubuntu-latest
    steps:
      - run: cargo build
"""
    result = edit(text)
    assert result.status == "needs-human"
    assert any("reads needs.matrix.…" in line for line in result.needs_human)


def test_p3_3_a_block_needs_list_loses_only_the_disabled_job():
    text = FLOW_SPACES.replace("    needs: [ test, no-std ]\n", "    needs:\n      - test\n      - no-std  # embedded\n")
    result = edit(text)
    assert yaml.safe_load(result.text)["jobs"]["release"]["needs"] == ["test"]
    assert changed_lines(text, result.text)[-2:] == [
        "-      - no-std  # embedded", "+      # needs: no-std removed by actor-rollback P3.3 (inc-9)"]


def test_p3_3_invalid_yaml_and_a_file_without_jobs_are_bad_input():
    with pytest.raises(BadInputError, match="is not valid YAML"):
        edit("jobs: [unclosed\n")
    with pytest.raises(BadInputError, match="has no jobs: mapping"):
        edit("name: not a workflow\n")
