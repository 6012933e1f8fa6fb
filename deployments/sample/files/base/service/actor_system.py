#!/usr/bin/env python3
"""The actor system as deployed: a stand-in service that serves Prometheus metrics and writes a log.

Its behaviour follows what was deployed. With the `new-scheduler` feature in the default
features, the ReadyQueueCoordinator's overhead shows: throughput drops, message latency and the
error rate rise, a backlog of pending messages grows, and error lines appear in the log. With
the flag off it is healthy. The worker-task gauge follows config/actor_system.toml.
"""

import argparse
import logging
import random
import signal
import sys
import time
import tomllib

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PROFILES = {  # messages per second, error share, mean latency (s), backlog growth per second
    "off": (1000.0, 0.0, 0.004, 0.0),
    "on": (700.0, 0.04, 0.03, 40.0),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--new-scheduler", choices=["on", "off"], required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log = logging.getLogger("actor-system")
    with open(args.config, "rb") as f:
        scheduler = tomllib.load(f).get("scheduler", {})

    processed = Counter("actor_messages_processed", "Messages handled by actors")
    errors = Counter("actor_message_errors", "Messages whose handling failed")
    latency = Histogram("actor_message_latency_seconds", "Time from enqueue to handled",
                        buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0))
    workers = Gauge("actor_worker_tasks", "Worker tasks running")
    pending = Gauge("actor_pending_messages", "Messages waiting in mailboxes")
    info = Gauge("actor_system_info", "What is deployed", ["version", "scheduler"])
    info.labels(args.version, "ready-queue-coordinator" if args.new_scheduler == "on" else "ready-queue-scheduler").set(1)
    workers.set(int(scheduler.get("worker_count", 4)))

    rate, error_share, mean_latency, backlog = PROFILES[args.new_scheduler]
    start_http_server(args.port, addr="127.0.0.1")
    log.info("started version=%s new-scheduler=%s scheduler=%s workers=%s", args.version, args.new_scheduler,
             scheduler.get("type"), scheduler.get("worker_count"))
    signal.signal(signal.SIGTERM, lambda *_: (log.info("stopping"), sys.exit(0)))

    rng = random.Random(7)
    tick, second = 0.1, time.monotonic()
    while True:
        handled = rate * tick
        processed.inc(handled)
        failed = handled * error_share
        errors.inc(failed)
        for _ in range(20):  # a sample of the tick's messages stands for all of them
            latency.observe(rng.expovariate(1 / mean_latency))
        pending.inc(backlog * tick)
        if time.monotonic() - second >= 1:
            second = time.monotonic()
            log.info("handled %.0f messages/s", rate)
            if error_share:
                log.error("ready-queue coordinator: mailbox overflow for actor %d (%.0f messages failed)",
                          rng.randrange(97), rate * error_share)
        time.sleep(tick)


if __name__ == "__main__":
    main()
