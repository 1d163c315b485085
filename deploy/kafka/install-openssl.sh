#!/usr/bin/env bash
# Make the `openssl` CLI available: the security tests make their certificates with it
# (devtools/secure_kafka.py). Idempotent.
set -euo pipefail

if command -v openssl >/dev/null; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing openssl (Debian package) ..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl
    exit 0
fi

echo "the openssl CLI is needed on PATH (sudo apt-get install openssl; brew install openssl)" >&2
exit 1
