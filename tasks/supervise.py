"""The small parent every configured command runs under (run as a script, standard library only).

    python supervise.py RUNNER_PID OUTPUT_FILE RECORD_FILE|- -- COMMAND [ARG...]

- It is a child subreaper (PR_SET_CHILD_SUBREAPER): a descendant whose parent exits — a `setsid` or
  double-forked daemon included — becomes its child, so it can always find the whole tree.
- It dies with the runner (PR_SET_PDEATHSIG → SIGTERM): a SIGKILLed or cancelled runner takes its commands along.
- On SIGTERM (the runner's timeout or cancel, or the runner's death) it SIGKILLs every descendant and exits 143.
- The command's output goes to OUTPUT_FILE, not a pipe: a background child that keeps the descriptor open (a
  service the deploy script starts with `&`) never keeps the step waiting. Success is the command's exit status;
  what it leaves running after a normal exit (the deployed service) is left alone.
- While the command runs, RECORD_FILE (unless "-") names it: this supervisor's and the command's pid and start
  time. It is removed when the command ends; one left behind (this supervisor SIGKILLed) lets the next run of
  the same command see that it is still alive (tasks/commands.py: live_record).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def descendants(root: int) -> list[int]:
    """Every process whose parent chain leads to `root` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def kill_tree() -> None:
    """SIGKILL every descendant until none is left (an orphan of a killed one is re-parented here and found)."""
    me = os.getpid()
    for _ in range(200):
        pids = descendants(me)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap()
        time.sleep(0.01)


def start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22): a pid with another start time
    is another process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def write_record(record: str, child: subprocess.Popen, command: list[str]) -> None:
    me = os.getpid()
    body = {"supervisor": me, "supervisor_start": start_ticks(me), "command": child.pid,
            "command_start": start_ticks(child.pid), "process_group": os.getpgid(0), "argv": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    partial = f"{record}.{me}.partial"
    with open(partial, "w") as out:
        json.dump(body, out)
    os.replace(partial, record)


def remove_record(record: str) -> None:
    try:
        with open(record) as current:
            if json.load(current).get("supervisor") != os.getpid():
                return  # another run's by now
        os.unlink(record)
    except (OSError, ValueError):
        pass


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    runner, output, record, sep, *command = argv
    if sep != "--" or not command:
        print("usage: supervise.py RUNNER_PID OUTPUT_FILE RECORD_FILE|- -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    if os.getppid() != int(runner):  # the runner died before the death signal was armed
        return 143
    with open(output, "ab", buffering=0) as out:
        try:
            child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            return 127
        except PermissionError:
            return 126
    if record != "-":
        write_record(record, child, command)
    try:
        # The death signal follows the runner's thread that started this; the parent check, the whole runner.
        while not stopping and os.getppid() == int(runner):
            code = child.poll()
            if code is not None:
                reap()  # zombies of what it started and left; live ones (a deployed service) stay
                return code if code >= 0 else 128 - code
            time.sleep(0.02)
        kill_tree()
        child.poll()
        return 143
    finally:
        if record != "-":
            remove_record(record)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
