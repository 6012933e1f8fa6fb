#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests need, when missing (as root);
# otherwise says exactly what to install.
set -euo pipefail
# package → a file that proves it is installed
declare -A need=(
  [git]=/usr/bin/git
  [librust-criterion-dev]=/usr/share/cargo/registry/criterion-0.3.6/Cargo.toml
  [chromium]=/usr/bin/chromium
  [prometheus]=/usr/bin/prometheus
  [prometheus-alertmanager]=/usr/bin/prometheus-alertmanager
  [redis-server]=/usr/bin/redis-server   # the HA topology's messaging between Prefect servers (#19)
  [haproxy]=/usr/sbin/haproxy            # and the load balancer in front of its API servers
  [valgrind]=/usr/bin/valgrind           # benchmarks.mode = "instructions": Callgrind counts (#27)
)
missing=()
for package in "${!need[@]}"; do
  [ -e "${need[$package]}" ] || missing+=("$package")
done
# PostgreSQL (the production-stack tests run a Prefect server on it): initdb on PATH or in Debian's folder
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not on PATH (looked in \$HOME/.cargo/bin too): install Rust (rustup) to build the sample workspace" >&2
  exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
