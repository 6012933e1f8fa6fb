"""Prefect variables written safely when several runs touch the same one.

`Variable.set(..., overwrite=True)` reads, then updates or creates: a run deleting the variable
in between makes the update fail (404), two creating it at once make one fail (409). The records
this tool keeps (the target lock's holder, the retry locks) are written with create-or-update
that retries those races instead.
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError


def put_variable(name: str, value, tags: list[str] | None = None, attempts: int = 5) -> None:
    with get_client(sync_client=True) as client:
        for _ in range(attempts):
            try:
                client.create_variable(VariableCreate(name=name, value=value, tags=tags or []))
                return
            except ObjectAlreadyExists:
                pass
            try:
                client.update_variable(VariableUpdate(name=name, value=value, tags=tags or []))
                return
            except (ObjectNotFound, PrefectHTTPStatusError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", 404)
                if status != 404:
                    raise
        raise RuntimeError(f"could not write the Prefect variable {name} after {attempts} attempts")
