"""Progress of the long steps (the metrics watch, the benchmark rounds) while they work.

Inside a Prefect run each long step owns a progress artifact that moves as it goes (the run page
shows it instead of a bare bar); in this process, whoever listens — the CLI's progress bar on a
terminal, plain lines when piped — hears the same updates. A failure to publish never fails the step.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from actor_rollback.tasks.context import StepContext, artifact_key, in_prefect_run, step_logger


@dataclass(frozen=True)
class ProgressUpdate:
    step: str  # "P1.C3 benchmarks"
    done: float
    total: float
    text: str
    finished: bool = False

    @property
    def percent(self) -> float:
        return 100.0 if self.total <= 0 else max(0.0, min(100.0, 100.0 * self.done / self.total))


Listener = Callable[[ProgressUpdate], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Hear every long step's progress in this process while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


class StepProgress:
    """`progress = StepProgress(ctx, "benchmarks", total=6)`, then `progress.update(n, "round 2/3 …")`."""

    MIN_INTERVAL = 1.0  # seconds between artifact updates: the UI polls, the API need not hear every tick

    def __init__(self, ctx: StepContext, name: str, total: float, text: str = "starting") -> None:
        self.step, self.total = f"{ctx.step_id} {name}".strip(), total
        self._artifact = None
        self._sent = 0.0
        if in_prefect_run():
            try:
                from prefect.artifacts import create_progress_artifact

                self._artifact = create_progress_artifact(
                    progress=0.0, key=artifact_key("progress", name, ctx.phase, ctx.incident),
                    description=f"{self.step}: {text}")
            except Exception as exc:  # the audit record of the step matters more than its progress bar
                step_logger().warning("%s: no progress artifact (%s)", self.step, exc)
        self._tell(ProgressUpdate(self.step, 0.0, total, text))

    def update(self, done: float, text: str, finished: bool = False) -> None:
        update = ProgressUpdate(self.step, done, self.total, text, finished)
        now = time.monotonic()
        if self._artifact is not None and (finished or done >= self.total or now - self._sent >= self.MIN_INTERVAL):
            self._sent = now
            try:
                from prefect.artifacts import update_progress_artifact

                update_progress_artifact(self._artifact, update.percent, description=f"{self.step}: {text}")
            except Exception as exc:
                step_logger().warning("%s: progress not published (%s)", self.step, exc)
        self._tell(update)

    def finish(self, text: str) -> None:
        self.update(self.total, text, finished=True)

    @staticmethod
    def _tell(update: ProgressUpdate) -> None:
        with _lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(update)


def wait_with_progress(progress: StepProgress, seconds: float, what: str, tick: float = 1.0) -> None:
    """Sleep `seconds`, moving the progress as time passes (a metrics window)."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        progress.update(elapsed, f"{what}: {elapsed:.0f} of {seconds:g} s")
        time.sleep(min(tick, seconds - elapsed))
    progress.update(seconds, f"{what}: {seconds:g} s done")


_tables: dict[tuple[str, str], object] = {}  # (flow run id, key) → the table artifact's id, made once per run


def table_in_place(key: str, rows: list[dict], description: str) -> None:
    """One table artifact per run and key, updated in place — not a new card of the same name each round."""
    if not in_prefect_run():
        return
    from prefect.artifacts import TableArtifact, create_table_artifact
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactUpdate
    from prefect.runtime import flow_run

    made = (str(flow_run.get_id()), key)
    try:
        if made not in _tables:
            _tables[made] = create_table_artifact(table=rows, key=key, description=description)
            return
        with get_client(sync_client=True) as client:
            client.update_artifact(_tables[made], ArtifactUpdate(data=TableArtifact(table=rows).format(),
                                                                 description=description))
    except Exception as exc:  # the step's own record matters more than its interim table
        step_logger().warning("%s: table not published (%s)", key, exc)
