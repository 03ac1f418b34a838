#!/usr/bin/env bash
# Installs redis-cli and redis-benchmark (Debian's redis-tools) when they
# are missing; the RESP tests of cmd/countd use them against a real countd.
# Needs root (or sudo) and apt-get; does nothing when both are present.
set -euo pipefail
if command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null; then
  echo "redis-tools: present ($(redis-cli --version))"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "redis-tools: apt-get not found; install redis-cli and redis-benchmark with your package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends redis-tools
echo "redis-tools: installed ($(redis-cli --version))"
