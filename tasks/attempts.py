"""A few attempts with backoff, inside one step, for reads whose failure is reported, not raised.

One of the project's three retry mechanisms, each for what the others cannot do:
- a step's Prefect task retries (tasks/steps.py: TransientError only, 1, 2, 4 s, each visible in the UI)
  redo a whole step — right for a push or a fetch;
- this one redoes one read inside a step: the metrics watch must not wait out its window again because
  one scrape failed, and a logs or metrics source still unreachable after the attempts is a verdict
  (`needs-human`: no evidence), not a failed step;
- the receiver's intake spool (deployments/intake.py) retries starting triage runs from a file that
  outlives the process, because what fails there is reaching Prefect itself.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def with_attempts(read: Callable[[], T], attempts: int, retry_on: type[Exception] | tuple[type[Exception], ...]) -> T:
    """Call `read` up to `attempts` times, waiting 1, 2, 4 … s between tries on `retry_on`."""
    for attempt in range(1, attempts + 1):
        try:
            return read()
        except retry_on:
            if attempt == attempts:
                raise
            time.sleep(2 ** (attempt - 1))
    raise AssertionError("unreachable")
