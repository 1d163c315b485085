#!/usr/bin/env bash
# Make `prometheus` and `promtool` available for the tests (idempotent).
#
# The tests run their own prometheus process (a temporary config, data directory and
# port); they never use the service the Debian package registers (port 9090,
# /etc/prometheus), whether it runs or not.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing prometheus (Debian package) ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    command -v prometheus >/dev/null && command -v promtool >/dev/null
    exit 0
fi

cat >&2 <<'HELP'
prometheus and promtool are needed on PATH (the tests run a real Prometheus).
Install them with one of:
  sudo apt-get install --no-install-recommends prometheus        # Debian, Ubuntu
  brew install prometheus                                         # macOS
  or unpack a release from https://prometheus.io/download/ and add it to PATH.
HELP
exit 1
