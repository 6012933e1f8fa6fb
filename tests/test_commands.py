"""P1.2c (local command) and P1.3a (deploy script): bounded, with the output's tail as evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import commit_change, config, context

from actor_rollback.runbook.errors import BadInputError, StepError
from actor_rollback.tasks.commands import check_ci, deploy_with_command, live_record, run_bounded


def test_p1_2c_failing_ci_command_fails_the_step_with_its_output(sample):
    cfg = config(**{"ci.command": "bash -c 'echo compiling; echo test scheduler ... FAILED; exit 101'"})
    with pytest.raises(StepError, match=r"exited 101.*test scheduler \.\.\. FAILED"):
        check_ci(context(sample.repo, step_id="P1.2c", cfg=cfg))


def test_p1_2c_a_command_that_fails_silently_says_it_printed_nothing_not_an_empty_last_output(sample):
    cfg = config(**{"ci.command": "false"})
    with pytest.raises(StepError, match=r"exited 1; it printed nothing") as failed:
        check_ci(context(sample.repo, step_id="P1.2c", cfg=cfg))
    assert "last output" not in str(failed.value)


def test_a_hanging_command_is_killed_with_its_children_at_the_timeout(tmp_path):
    marker = tmp_path / "child-survived"
    start = time.monotonic()
    outcome = run_bounded(f"bash -c 'sleep 5 && touch {marker} & sleep 30'", tmp_path, timeout=1)
    assert outcome.returncode is None and time.monotonic() - start < 5
    time.sleep(5.5)
    assert not marker.exists(), "the whole process group is killed, not just the shell"


def alive(marker: str) -> list[int]:
    """Processes whose command line names `marker` (a unique word each test gives its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return [pid for pid in found if pid != os.getpid()]


def sleeper(marker: str) -> str:
    """A long sleeper named by `marker`, started by absolute path: a `python3` on PATH may be a shim (pyenv's is a
    shell script) whose own short-lived processes carry the same arguments and would be counted."""
    return f"{sys.executable} -c 'import time; time.sleep(600)' {marker}"


@pytest.fixture
def marker(request):
    word = f"actor-rollback-test-{os.getpid()}-{request.node.name[:40]}"
    yield word
    for pid in alive(word):  # nothing a test started outlives it, whatever it asserted
        os.kill(pid, 9)


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "command.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_p1_3a_a_deploy_that_starts_its_service_in_the_background_succeeds_at_its_exit_and_keeps_the_service(
        tmp_path, marker):
    command = script(tmp_path, f"echo starting\n{sleeper(marker)} &\necho started\nexit 0\n")
    start = time.monotonic()
    outcome = run_bounded(command, tmp_path, timeout=20)
    assert outcome.returncode == 0 and outcome.tail == ["starting", "started"]
    assert time.monotonic() - start < 5, "the background service's open output must not keep the step waiting"
    assert len(alive(marker)) == 1, "the service the deploy started is the deploy's result: it keeps running"


def test_a_timeout_kills_setsid_descendants_too(tmp_path, marker):
    command = script(tmp_path, f"setsid {sleeper(marker)} &\n{sleeper(marker)}\n")
    start = time.monotonic()
    outcome = run_bounded(command, tmp_path, timeout=1.5)
    assert outcome.returncode is None and time.monotonic() - start < 5
    assert alive(marker) == [], "a setsid child left its process group, and is still killed"


def test_a_sigkilled_runner_takes_its_commands_along(tmp_path, marker):
    command = script(tmp_path, f"setsid {sleeper(marker)} &\n{sleeper(marker)}\n")
    runner = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                               "from actor_rollback.tasks.commands import run_bounded; "
                               f"run_bounded({command!r}, Path({str(tmp_path)!r}), 600)"],
                              cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 20
    while len(alive(marker)) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(alive(marker)) == 2
    runner.kill()
    runner.wait()
    deadline = time.monotonic() + 3
    while alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(marker) == [], "the runner died: nothing it started runs on (the rerun's deploy would race it)"


def _orphan_a_running_command(tmp_path: Path, command: str, record: Path) -> int:
    """Start `command` under its supervisor, then SIGKILL the supervisor alone (as an OOM kill would): the command
    runs on with no one owning it, and the record names it. Returns the command's pid."""
    thread = threading.Thread(target=run_bounded, args=(command, tmp_path, 600), kwargs={"record": record})
    thread.start()
    deadline = time.monotonic() + 20
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    body = json.loads(record.read_text())
    os.kill(body["supervisor"], 9)
    thread.join(10)
    return body["command"]


def test_p1_3a_a_rerun_never_starts_the_deploy_beside_a_live_one_of_an_earlier_run(tmp_path, marker):
    log = tmp_path / "deploy.log"
    command = script(tmp_path, f"echo start >> {log}\n{sleeper(marker)} &\nsleep 2\necho end >> {log}\n")
    record = tmp_path / "running" / "deploy.json"
    _orphan_a_running_command(tmp_path, command, record)
    outcome = run_bounded(command, tmp_path, timeout=30, record=record)
    assert outcome.returncode == 0
    assert log.read_text().split() == ["start", "end", "start", "end"], "the rerun's deploy waited for the live one"
    assert not record.exists(), "a finished command leaves no record"


def test_a_live_earlier_run_past_the_timeout_fails_the_step_naming_it_and_starts_nothing(tmp_path, marker):
    log = tmp_path / "deploy.log"
    command = script(tmp_path, f"echo start >> {log}\nexec {sleeper(marker)}\n")
    record = tmp_path / "running" / "deploy.json"
    orphan = _orphan_a_running_command(tmp_path, command, record)
    with pytest.raises(StepError, match=rf"from an earlier run \(pid {orphan}, .*still running.*kill -TERM"):
        run_bounded(command, tmp_path, timeout=1, record=record)
    assert log.read_text().split() == ["start"], "nothing was started beside it"
    assert alive(marker) == [orphan], "the earlier run is left to the person (the message says how to end it)"


def test_a_record_of_a_command_that_ended_is_not_mistaken_for_a_live_one(tmp_path):
    record = tmp_path / "deploy.json"
    later = 10 ** 15  # clock ticks no process here started at
    record.write_text(json.dumps({"supervisor": os.getpid(), "supervisor_start": later, "command": os.getpid(),
                                  "command_start": later, "process_group": os.getpgid(0), "argv": ["x"]}))
    assert live_record(record) is None, "same pids, other start times: other processes (pids are reused)"
    assert run_bounded("true", tmp_path, timeout=5, record=record).returncode == 0


def test_p1_3a_deploy_runs_the_runbook_script_with_the_rollback_version(sample):
    result = deploy_with_command(context(sample.repo, step_id="P1.3a"))
    assert result.status == "done"
    assert any("version=rollback-phase1" in line for line in result.evidence)
    state = Path(os.environ["ACTOR_DEPLOY_STATE"])  # the session's "production" (conftest)
    assert (state / "production.version").read_text().strip() == "rollback-phase1"


def test_p1_3a_failing_deploy_script_fails_the_step(sample):
    commit_change(sample.repo, "scripts/deploy.sh", "#!/bin/sh\necho 'registry unreachable' >&2\nexit 3\n",
                  "break deploy")
    (sample.repo / "scripts/deploy.sh").chmod(0o755)
    with pytest.raises(StepError, match="exited 3.*registry unreachable"):
        deploy_with_command(context(sample.repo, step_id="P1.3a"))


def test_unknown_program_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no such program"):
        run_bounded("no-such-program --x", tmp_path, timeout=5)


@pytest.mark.parametrize("command,says", [("", "deploy.command is empty"),
                                          ("./scripts/deploy.sh 'production", "fix its quoting"),
                                          ("./scripts/no-such.sh production",
                                           r"./scripts/no-such.sh does not exist in .*; fix deploy.command")])
@pytest.mark.parametrize("dry_run", [True, False])
def test_p1_3a_an_empty_unreadable_or_missing_deploy_command_is_bad_input_in_the_plan_and_the_run(sample, command, says,
                                                                                                 dry_run):
    ctx = context(sample.repo, step_id="P1.3a", cfg=config(**{"deploy.command": command}), dry_run=dry_run)
    with pytest.raises(BadInputError, match=says):  # was an IndexError in the run, exit 1
        deploy_with_command(ctx)
