#!/usr/bin/env bash
# Installs the official client libraries the client tests drive: a venv with the pinned PyPI
# clients (requirements.txt; $CAPTCHA_TEST_VENV, default ~/.cache/captcha-test-venv) and the npm
# clients from the lockfile (tests/clients/node_modules). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${CAPTCHA_TEST_VENV:-$HOME/.cache/captcha-test-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import twocaptcha, anticaptchaofficial" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
fi
(cd "$here" && npm ci --no-audit --no-fund --silent)
