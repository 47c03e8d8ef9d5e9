#!/usr/bin/env bash
# Installs the widget test site's npm packages exactly as locked (npm ci).
# Idempotent: skips when node_modules already matches package-lock.json.
# Honours npm's cache (npm_config_cache or ~/.npm); nothing is installed globally.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "install.sh: node (>= 20) is required" >&2; exit 1; }
stamp=node_modules/.install-stamp
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
  echo "tests/web: node_modules up to date"
  exit 0
fi
npm ci --ignore-scripts --no-audit --no-fund --prefer-offline
echo "$want" > "$stamp"
echo "tests/web: installed"
