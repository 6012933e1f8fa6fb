"""A Prefect API answer of 503 is retried after 0.05 s, then 0.25 s, before Prefect's own backoff.

Why: on SQLite (the embedded default, `make serve`) the Prefect server answers 503 when another
writer — its own event, task-run and log recorders — holds the database at that instant
(`SQLITE_BUSY`; docs/PERFORMANCE.md, "The warm path's bimodal ~2 s"). The collision lasts
milliseconds, but Prefect's client, with no `Retry-After` in the answer, waits `2 ** attempt`
seconds: 2 s on the Critical path, on about one alert in three, on any of the writes before the
flag is pushed (the triage run, the subflow's task and flow runs, the target lock, its records).

How: Prefect's client honours `Retry-After`; a 503 that has none gets one — 0.05 s the first time
for that request, 0.25 s the second. From the third on, nothing is added and Prefect's backoff
applies (8 s, 16 s, …), so a server that is really down or restarting is waited for about as
long as before (≈ 56 s over Prefect's 5 retries instead of 62 s). Nothing else changes: the same
requests, the same records. Installed once per process by `install()` (flows/__init__.py), so
`serve`, the CLI, the workers' flow-run processes and the tests all have it.

It wraps a private method of Prefect's client (`_send_with_retry`, prefect 3.9, pinned in
pyproject.toml); `tests/test_busy_retry.py` fails if an upgrade breaks it.
"""

from __future__ import annotations

import functools
import inspect
import os

QUICK_RETRIES = ("0.05", "0.25")  # seconds before the 1st and 2nd retry of a 503 with no Retry-After
_COUNT = "actor_rollback_quick_503_retries"
_installed = False


def _marking(send):
    """`send` with a Retry-After put on the first answers of 503 to each request."""

    def mark(request, response):
        if response.status_code == 503 and "Retry-After" not in response.headers:
            count = request.extensions.get(_COUNT, 0)
            if count < len(QUICK_RETRIES):
                response.headers["Retry-After"] = QUICK_RETRIES[count]
                request.extensions[_COUNT] = count + 1
        return response

    if inspect.iscoroutinefunction(send):  # the async client's httpx send (a bound method: inspect unwraps it)
        async def send_async(request, *args, **kwargs):
            return mark(request, await send(request, *args, **kwargs))

        return send_async

    def send_sync(request, *args, **kwargs):
        return mark(request, send(request, *args, **kwargs))

    return send_sync


def _wrap(cls) -> None:
    original = cls._send_with_retry

    @functools.wraps(original)
    def send_with_retry(self, request, send, *args, **kwargs):
        return original(self, request, _marking(send), *args, **kwargs)

    cls._send_with_retry = send_with_retry


SWITCH = "ACTOR_ROLLBACK_QUICK_503_RETRY"  # "0": Prefect's own backoff only (bench/time_to_mitigation.py's baseline)


def install() -> None:
    """Once per process; idempotent. Not with ACTOR_ROLLBACK_QUICK_503_RETRY=0."""
    global _installed
    if _installed or os.environ.get(SWITCH, "1") == "0":
        return
    from prefect.client.base import PrefectHttpxAsyncClient, PrefectHttpxSyncClient

    _wrap(PrefectHttpxSyncClient)
    _wrap(PrefectHttpxAsyncClient)
    _installed = True
