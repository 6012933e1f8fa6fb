#!/usr/bin/env bash
# `make serve`: a local Prefect server (if none is set) and the rollback deployments, for the UI.
# REPO=path/to/clone make serve   — without REPO a sample workspace is created to try it on.
# make serve ARGS="--receiver-port 9096"   — more options for `actor-rollback serve`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_RUNNER_POLL_FREQUENCY="${PREFECT_RUNNER_POLL_FREQUENCY:-1}"
if [ -z "${PREFECT_API_URL:-}" ]; then
  port="${PREFECT_PORT:-4200}"
  export PREFECT_API_URL="http://127.0.0.1:$port/api"
  "$here/.venv/bin/prefect" server start --host 127.0.0.1 --port "$port" > "${TMPDIR:-/tmp}/actor-rollback-prefect-server.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null' EXIT
  for _ in $(seq 1 120); do curl -fs "$PREFECT_API_URL/health" >/dev/null 2>&1 && break; sleep 0.5; done
  echo "Prefect UI: http://127.0.0.1:$port"
fi
repo="${REPO:-}"
if [ -z "$repo" ]; then
  dir="$(mktemp -d -t actor-rollback-serve-XXXX)"
  "$here/.venv/bin/python" -c "import sys; from actor_rollback.deployments.sample import create_sample_workspace; print(create_sample_workspace(sys.argv[1]).repo)" "$dir" > "$dir/.repo"
  repo="$(cat "$dir/.repo")"
  echo "no REPO given: serving against a sample workspace at $repo"
fi
if [ -z "${ACTOR_ROLLBACK_RECEIVER_TOKEN:-}" ]; then
  export ACTOR_ROLLBACK_RECEIVER_TOKEN="$("$here/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
  echo "alert receiver token (give it to Alertmanager as a bearer token): $ACTOR_ROLLBACK_RECEIVER_TOKEN"
fi
# not exec: the EXIT trap must stop the server this script started when serve ends, however it ends
"$here/.venv/bin/actor-rollback" serve --repo "$repo" "$@"  # e.g. --receiver-port 9096
