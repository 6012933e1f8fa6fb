"""The receiver's durable intake: an accepted incident is on disk before the 202 goes out.

SQLite in WAL mode with `synchronous=FULL` (each commit is fsynced): a row per idempotency key,
so an alert that repeats — a re-send, a storm, a receiver restarted — is one row and one run.
Rows stay until Prefect has the run; a start that fails is retried with backoff and never given
up, and a receiver that starts again drains what the last one left.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS intake (
    key TEXT PRIMARY KEY,
    incident TEXT NOT NULL,          -- the Incident as JSON
    received_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0, -- not before this time (backoff after a failed start)
    last_error TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL DEFAULT '',
    done_at REAL
)
"""


class IntakeSpool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()

    def add(self, rows: list[tuple[str, str]]) -> list[bool]:
        """(key, incident JSON) rows in one fsynced transaction; for each, whether it is new."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                fresh = [self._db.execute("INSERT OR IGNORE INTO intake (key, incident, received_at) VALUES (?, ?, ?)",
                                          (key, incident, now)).rowcount == 1 for key, incident in rows]
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # (SQLite may have rolled it back itself: a full disk)
                    self._db.execute("ROLLBACK")
                raise
        return fresh

    def claim(self) -> tuple[str, str] | None:
        """The oldest due row no worker holds: (key, incident JSON)."""
        with self._lock:
            for key, incident in self._db.execute(
                    "SELECT key, incident FROM intake WHERE done_at IS NULL AND next_at <= ? ORDER BY received_at "
                    "LIMIT 64", (time.time(),)):
                if key not in self._in_flight:
                    self._in_flight.add(key)
                    return key, incident
        return None

    def done(self, key: str, run_id: str) -> None:
        with self._lock:
            try:
                self._db.execute("UPDATE intake SET done_at = ?, run_id = ?, last_error = '' WHERE key = ?",
                                 (time.time(), run_id, key))
                # Prefect answers again: what waits out a backoff goes now, not up to 10 s later
                self._db.execute("UPDATE intake SET next_at = 0 WHERE done_at IS NULL AND next_at > 0")
            finally:  # (a full disk: the row stays pending and is claimed again — its start is idempotent)
                self._in_flight.discard(key)

    def failed(self, key: str, error: str) -> float:
        """Record a failed start; the delay before the next attempt (0.5 s doubling, at most 10 s)."""
        with self._lock:
            try:
                attempts = self._db.execute("SELECT attempts FROM intake WHERE key = ?", (key,)).fetchone()[0] + 1
                delay = min(10.0, 0.5 * 2 ** (attempts - 1))
                self._db.execute("UPDATE intake SET attempts = ?, next_at = ?, last_error = ? WHERE key = ?",
                                 (attempts, time.time() + delay, error[:500], key))
            finally:
                self._in_flight.discard(key)
        return delay

    def release(self, key: str) -> None:
        """A claim given up without a word about the start (its worker ended): the row is due again."""
        with self._lock:
            self._in_flight.discard(key)

    def oldest_waiting(self) -> float | None:
        """How long (s) the oldest accepted incident with no run yet has waited; None when none waits."""
        with self._lock:
            oldest, = self._db.execute("SELECT MIN(received_at) FROM intake WHERE done_at IS NULL").fetchone()
        return None if oldest is None else max(0.0, time.time() - oldest)

    def reopen(self, keys: list[str]) -> None:
        """Incidents whose run did not get to the end here: pending again, for the next receiver to start."""
        with self._lock:
            self._db.executemany("UPDATE intake SET done_at = NULL, run_id = '', next_at = 0 WHERE key = ?",
                                 [(key,) for key in keys])

    def backlog(self) -> tuple[int, str]:
        """How many accepted incidents have no run yet, and the newest start error among them."""
        with self._lock:
            count, = self._db.execute("SELECT COUNT(*) FROM intake WHERE done_at IS NULL").fetchone()
            row = self._db.execute("SELECT last_error FROM intake WHERE done_at IS NULL AND last_error != '' "
                                   "ORDER BY next_at DESC LIMIT 1").fetchone()
        return count, row[0] if row else ""

    def started_in_process(self, since: float) -> dict[str, str]:
        """key → incident JSON of the incidents whose triage this receiver ran in its own process (the warm
        path) since `since`: what the lost-run retrier checks after a receiver died mid-triage."""
        with self._lock:
            return dict(self._db.execute("SELECT key, incident FROM intake WHERE done_at IS NOT NULL AND done_at >= ? "
                                         "AND run_id LIKE 'in-process %'", (since,)))

    def runs(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT key, run_id FROM intake WHERE done_at IS NOT NULL"))

    def close(self) -> None:
        with self._lock:
            self._db.close()
