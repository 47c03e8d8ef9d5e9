#!/bin/sh
# Installs Debian's Chromium for captcha-browser (idempotent).
# The pool launches /usr/lib/chromium/chromium directly (not the /usr/bin wrapper).
# Recommends bring chromium-sandbox, used when the pool runs as a non-root user.
set -eu
if [ -x /usr/lib/chromium/chromium ]; then
    echo "chromium already installed: $(/usr/lib/chromium/chromium --version 2>/dev/null || echo /usr/lib/chromium/chromium)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y chromium
/usr/lib/chromium/chromium --version || true
