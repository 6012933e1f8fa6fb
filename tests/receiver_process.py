"""A receiver in a process of its own, for tests that kill it or starve its file descriptors.

    python tests/receiver_process.py SPOOL_DIR PORT (--record FILE | --deployment NAME) [--nofile N]
                                     [--per-client N]

Prints `listening <url>` once it listens; runs until SIGTERM or SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import threading

from actor_rollback.deployments.receiver import AlertReceiver, deployment_starter
from actor_rollback.runbook.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spool")
    parser.add_argument("port", type=int)
    parser.add_argument("--record", default="")
    parser.add_argument("--deployment", default="")
    parser.add_argument("--nofile", type=int, default=0)
    parser.add_argument("--per-client", type=int, default=-1, help="receiver.max_connections_per_client")
    args = parser.parse_args()
    if args.nofile:  # the usual 1,024 open files of a service
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    lock = threading.Lock()

    def record(incident, key):
        with lock, open(args.record, "a") as out:
            out.write(json.dumps({"key": key, "id": incident.id}) + "\n")
        return f"recorded-{key}"

    starter = deployment_starter(args.deployment, {}) if args.deployment else record
    cfg = load_config(None)
    receiving = cfg.receiver if args.per_client < 0 else cfg.receiver.model_copy(
        update={"max_connections_per_client": args.per_client})
    receiver = AlertReceiver(receiving, starter, port=args.port, severity=cfg.severity, spool_dir=args.spool).start()
    print(f"listening {receiver.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    receiver.stop()


if __name__ == "__main__":
    main()
