#!/usr/bin/env bash
# Installs Debian's chromium (the browser `make ui-test` drives headless)
# when no Chromium is on PATH. Needs root and Debian's package registry;
# does nothing when chromium is already there. Waits up to 5 minutes for
# another apt-get holding the dpkg lock.
set -euo pipefail
for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null 2>&1; then
    echo "install-chromium: $("$b" --version 2>/dev/null || echo "$b") already installed"
    exit 0
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "install-chromium: chromium is missing and installing it needs root: run 'apt-get install chromium' as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -qq
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "install-chromium: $(chromium --version) installed"
