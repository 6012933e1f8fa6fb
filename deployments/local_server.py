"""The embedded default's Prefect server: one local server, started in the background on first use and reused.

Without `PREFECT_API_URL`, every `actor-rollback run` used to start and stop Prefect's ephemeral server (10–12 s
of each command). Now the first command that needs Prefect starts `prefect server start` on loopback — the same
database as the ephemeral server (`$PREFECT_HOME/prefect.db`), so the record stays where it was and its UI
can show it — and later commands use it at once.

Its lifetime is said and bounded, since it outlives the command that started it: a small keeper process owns
it, and stops it (and itself) after `ACTOR_ROLLBACK_SERVER_IDLE_MINUTES` (60) without a command using it and
with no flow run in progress; `actor-rollback server stop` stops it now, `server status` says where it is and
when it will stop. `ACTOR_ROLLBACK_LOCAL_SERVER=off` keeps Prefect's ephemeral server instead (one per command).
Its state is `$PREFECT_HOME/actor-rollback-server.json`; two commands starting at once start one server (a file
lock). Nothing here imports Prefect, nor httpx (the tool's HTTP client elsewhere): the health and idle checks
are two loopback GETs, for which urllib costs 24 ms of import where httpx costs 92 ms, paid by every command that
asks and by the keeper process that lives beside the server; the command that asks pays nothing for a server
that is already up.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from actor_rollback.tasks.pids import pid_alive

IDLE_MINUTES_ENV = "ACTOR_ROLLBACK_SERVER_IDLE_MINUTES"
SWITCH_ENV = "ACTOR_ROLLBACK_LOCAL_SERVER"
START_TIMEOUT_SECONDS = 90
CHECK_SECONDS = 15


def home() -> Path:
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def state_file() -> Path:
    return home() / "actor-rollback-server.json"


def used_file() -> Path:  # its mtime is the last use: each command touches it (cheaper than rewriting the state)
    return home() / "actor-rollback-server.used"


def idle_minutes() -> float:
    try:
        return max(float(os.environ.get(IDLE_MINUTES_ENV, "60")), 0.1)
    except ValueError:
        return 60.0


def read_state() -> dict | None:
    try:
        return json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def running() -> dict | None:
    """The local server's state when it is up and answers; None otherwise."""
    state = read_state()
    if state and pid_alive(int(state.get("keeper_pid", 0))) and healthy(state["url"]):
        return state
    return None


@contextmanager
def _starting_lock():
    home().mkdir(parents=True, exist_ok=True)
    with open(home() / "actor-rollback-server.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def touch() -> None:
    used_file().touch()


def ensure(say=lambda line: None) -> str | None:
    """The API URL to use: PREFECT_API_URL when set (nothing started), else the local server — started now when it
    is not up. None when the switch is off or it cannot start (Prefect's ephemeral server is used, as before)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if os.environ.get(SWITCH_ENV, "on").lower() in ("off", "0", "false", "no"):
        return None
    state = running()
    if state is None:
        with _starting_lock():
            state = running() or _start(say)
    if state is None:
        return None
    touch()
    os.environ["PREFECT_API_URL"] = state["url"]
    return state["url"]


def _start(say) -> dict | None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = home() / "actor-rollback-server.log"
    minutes = idle_minutes()
    say(f"starting the local Prefect server on 127.0.0.1:{port} (database {home() / 'prefect.db'}; it stops after "
        f"{minutes:g} min unused — `actor-rollback server stop` stops it now)")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with open(log, "ab") as out:
        keeper = subprocess.Popen([sys.executable, "-m", "actor_rollback.deployments.local_server", "keep", str(port), str(minutes)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)  # its own session: a Ctrl-C of this command leaves it be
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if keeper.poll() is not None:
            say(f"the local Prefect server did not start (see {log}); using Prefect's ephemeral server")
            return None
        if healthy(url, timeout=1):
            state = read_state()
            return state if state and state.get("url") == url else None
        time.sleep(0.25)
    keeper.terminate()
    say(f"the local Prefect server did not answer within {START_TIMEOUT_SECONDS} s (see {log}); "
        "using Prefect's ephemeral server")
    return None


def stop() -> dict | None:
    """Stop the local server now; its state as it was, or None when none was running."""
    state = read_state()
    if not state:
        return None
    pid = int(state.get("keeper_pid", 0))
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    state_file().unlink(missing_ok=True)
    return state


def status() -> dict:
    state = running()
    if state is None:
        return {"running": False, "database": str(home() / "prefect.db"),
                "note": "starts on the next command that needs Prefect (unless PREFECT_API_URL is set)"}
    try:
        last = datetime.fromtimestamp(used_file().stat().st_mtime, timezone.utc)
    except OSError:
        last = datetime.fromisoformat(state["started_at"])
    stops = last.timestamp() + float(state["idle_minutes"]) * 60
    return {"running": True, **state, "last_used": last.isoformat(timespec="seconds"),
            "stops_after": datetime.fromtimestamp(stops, timezone.utc).isoformat(timespec="seconds"),
            "ui": state["url"].removesuffix("/api")}


# ---------------------------------------------------------------- the keeper process


def _busy(url: str) -> bool:
    """A flow run is in progress (or the server cannot say): the server is not idle."""
    body = json.dumps({"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING", "CANCELLING"]}}}}).encode()
    request = urllib.request.Request(f"{url}/flow_runs/count", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(json.loads(answer.read())) > 0
    except (OSError, ValueError):
        return True


def _end_with_parent() -> None:
    """In the server's process before it starts: the kernel ends it when the keeper ends, however it ends."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def keep(port: int, minutes: float) -> int:
    """Run `prefect server start` and stop it when idle, or on SIGTERM; the state file lives as long as it does."""
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port), "--analytics-off"], stdin=subprocess.DEVNULL,
                              preexec_fn=_end_with_parent)
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    state = {"url": url, "port": port, "keeper_pid": os.getpid(), "server_pid": server.pid,
             "database": str(home() / "prefect.db"), "idle_minutes": minutes,
             "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_file())
    touch()
    ready = False
    try:
        while not stopping and server.poll() is None:
            time.sleep(min(CHECK_SECONDS, minutes * 60 / 4))
            if not ready:  # its own start-up is not idleness: the count begins when it first answers
                ready = healthy(url)
                if ready:
                    touch()
                continue
            try:
                idle = time.time() - used_file().stat().st_mtime > minutes * 60
            except OSError:
                idle = True
            if idle and healthy(url) and not _busy(url):
                print(f"{datetime.now(timezone.utc):%H:%M:%S} idle for {minutes:g} min: stopping", flush=True)
                break
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        current = read_state()
        if current and current.get("keeper_pid") == os.getpid():
            state_file().unlink(missing_ok=True)
    return 0


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "keep":
    sys.exit(keep(int(sys.argv[2]), float(sys.argv[3])))
