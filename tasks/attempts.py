"""A few attempts with backoff, inside one step, for reads whose failure is reported, not raised."""

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
