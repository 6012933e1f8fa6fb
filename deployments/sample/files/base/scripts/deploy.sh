#!/usr/bin/env bash
# Deploys the actor system: ./scripts/deploy.sh ENVIRONMENT --version=VERSION   (or --stop)
# Here "deploying" restarts service/actor_system.py with what the workspace now builds: whether
# new-scheduler is in the default features, and config/actor_system.toml.
set -euo pipefail
env_name="${1:?usage: deploy.sh ENVIRONMENT --version=VERSION | --stop}"
version="" stop="" override=""
for arg in "${@:2}"; do
  case "$arg" in
    --version=*) version="${arg#--version=}" ;;
    --stop) stop=1 ;;
    --new-scheduler=on|--new-scheduler=off) override="${arg#--new-scheduler=}" ;;  # a canary with the flag on
    *) echo "deploy.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "$0")/.." && pwd)"
# The state lives beside the clone, not in the tree deployed from (a rollback deploys from a work tree of its own).
clone="$(dirname "$(git -C "$here" rev-parse --path-format=absolute --git-common-dir)")"
state="${ACTOR_DEPLOY_STATE:-$clone/.deploy}"
port="${ACTOR_SERVICE_PORT:-19100}"
mkdir -p "$state"

stop_service() {
  [ -f "$state/service.pid" ] || return 0
  pid="$(cat "$state/service.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/service.pid"
}
if [ -n "$stop" ]; then stop_service; echo "stopped actor-system in $env_name"; exit 0; fi
[ -n "$version" ] || { echo "deploy.sh: --version=VERSION is required" >&2; exit 2; }

commit="$(git -C "$here" rev-parse --short HEAD)"
features="$(grep -E '^default *=' "$here/modules/actor-core/Cargo.toml" | head -n 1)"
case "$features" in *new-scheduler*) scheduler=on ;; *) scheduler=off ;; esac
[ -n "$override" ] && scheduler="$override"
python="${ACTOR_SERVICE_PYTHON:-${ACTOR_ROLLBACK_PYTHON:-python3}}"

stop_service
[ -f "$state/actor-system.log" ] && mv "$state/actor-system.log" "$state/actor-system.log.1"
release="$state/release-$env_name"  # what runs is a copy: the tree it came from may be removed after the deploy
rm -rf "$release.new" && mkdir -p "$release.new" && cp -r "$here/service" "$here/config" "$release.new/"
rm -rf "$release" && mv "$release.new" "$release"
setsid "$python" "$release/service/actor_system.py" --port "$port" --version "$version" \
  --new-scheduler "$scheduler" --config "$release/config/actor_system.toml" --log "$state/actor-system.log" \
  </dev/null >"$state/service.out" 2>&1 &
echo $! > "$state/service.pid"
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  kill -0 "$(cat "$state/service.pid")" 2>/dev/null || { echo "deploy.sh: the service did not start:" >&2; cat "$state/service.out" >&2; exit 1; }
  sleep 0.1
done
echo "$version" > "$state/$env_name.version"
printf '%s %s version=%s commit=%s new-scheduler=%s\n' "$(date -u +%FT%TZ)" "$env_name" "$version" "$commit" "$scheduler" >> "$state/deploys.log"
echo "deployed actor-system to $env_name: version=$version commit=$commit new-scheduler=$scheduler port=$port"
