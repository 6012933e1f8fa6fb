"""`actor-rollback server status|start|stop`: the local Prefect server of the embedded default
(deployments/local_server.py) — where it is, when it stops, and stopping it now."""

from __future__ import annotations

import json
import os

import typer
from rich.markup import escape

from actor_rollback.deployments.cli.common import JsonOpt, app, err, out

server_app = typer.Typer(no_args_is_help=True, help="The local Prefect server used when PREFECT_API_URL is not set.")
app.add_typer(server_app, name="server")


def _show(data: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
    elif data.get("running"):
        out.print(escape(f"local Prefect server: {data['ui']} (API {data['url']}), keeper pid {data['keeper_pid']}, "
                         f"database {data['database']}; last used {data['last_used']}, stops after "
                         f"{data['stops_after']} if unused and idle"))
    else:
        out.print(escape(f"no local Prefect server running; {data.get('note', '')}"))


@server_app.command("status")
def status(as_json: JsonOpt = False) -> None:
    """Where the local server is, its database, and when it stops on its own."""
    from actor_rollback.deployments.local_server import status as read

    data = read()
    if os.environ.get("PREFECT_API_URL"):
        data["note"] = f"PREFECT_API_URL is set ({os.environ['PREFECT_API_URL']}): commands use that server, not this one"
    _show(data, as_json)


@server_app.command("start")
def start(as_json: JsonOpt = False) -> None:
    """Start it now (commands that need Prefect start it on first use anyway)."""
    from actor_rollback.deployments.local_server import ensure, status as read

    os.environ.pop("PREFECT_API_URL", None)
    if ensure(say=lambda line: err.print(escape(line))) is None:
        err.print("the local server did not start (or ACTOR_ROLLBACK_LOCAL_SERVER=off): Prefect's ephemeral server "
                  "is used instead")
        raise typer.Exit(1)
    _show(read(), as_json)


@server_app.command("stop")
def stop(as_json: JsonOpt = False) -> None:
    """Stop it now; the next command that needs Prefect starts it again."""
    from actor_rollback.deployments.local_server import stop as end

    was = end()
    if as_json:
        print(json.dumps({"stopped": bool(was), **(was or {})}))
    else:
        out.print(escape(f"stopped the local Prefect server at {was['url']}") if was else "no local Prefect server was running")
