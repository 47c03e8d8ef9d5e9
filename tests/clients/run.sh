#!/usr/bin/env bash
# Runs the official client libraries against a live captchad on 127.0.0.1 (tests/serverless.sh runs
# the same scripts against the serverless pipeline):
# classic API: 2captcha-python (over TLS) and npm @2captcha/captcha-solver;
# JSON task API: anticaptchaofficial (PyPI, incl. an ALTCHA page of the widget
# site in tests/web) and npm @antiadmin/anticaptchaofficial.
# Installs them itself: a venv (pinned) and `npm ci` (lockfile).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
cd "$top"

venv="${CAPTCHA_TEST_VENV:-$HOME/.cache/captcha-test-venv}"
"$here/install.sh"
"$top/tests/web/install.sh" >/dev/null

# The binary `cargo test --workspace` builds (same features: no rebuild after it).
cargo test --workspace --locked --no-run -q
bin="${CARGO_TARGET_DIR:-$top/target}/debug/captchad"
work="$(mktemp -d)"
pid=""
site_pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$site_pid" ] && kill "$site_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A throwaway certificate for 127.0.0.1 (the python client speaks https only).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# The widget site (ALTCHA/Cap pages) on a free loopback port.
(cd "$top/tests/web" && exec node server.js --port 0) >"$work/site.log" 2>&1 &
site_pid=$!
for _ in $(seq 1 100); do
  grep -q "^LISTENING" "$work/site.log" 2>/dev/null && break
  sleep 0.1
done
site="http://127.0.0.1:$(sed -n 's|^LISTENING ||p' "$work/site.log")"

key="$("$bin" account create --data-dir "$work/data" --balance 1.00 | head -n 1)"
"$bin" serve --data-dir "$work/data" --listen 127.0.0.1:0 --allow-private-network 127.0.0.0/8 \
  --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" >"$work/out.log" 2>"$work/err.log" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "^Listening on" "$work/out.log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/err.log"; exit 1; }
  sleep 0.1
done
addr="$(sed -n 's|^Listening on https://||p' "$work/out.log")"
[ -n "$addr" ] || { echo "captchad did not start"; cat "$work/err.log"; exit 1; }
images="$top/shared/ocr/validation/captcha-default"

REQUESTS_CA_BUNDLE="$work/cert.pem" "$venv/bin/python" "$here/python_client.py" "$addr" "$key" "$images" 5
NODE_EXTRA_CA_CERTS="$work/cert.pem" node "$here/node_client.js" "https://$addr" "$key" "$images" 5
REQUESTS_CA_BUNDLE="$work/cert.pem" "$venv/bin/python" "$here/anticaptcha_client.py" "https://$addr" "$key" "$images" 5 "$site"
NODE_EXTRA_CA_CERTS="$work/cert.pem" node "$here/anticaptcha_client.js" "https://$addr" "$key" "$images" 5
echo "4 passed, 0 failed"
