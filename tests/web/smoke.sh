#!/usr/bin/env bash
# Starts the test site on a free port, fetches every page and challenge, stops it.
set -euo pipefail
cd "$(dirname "$0")"
[[ -d node_modules ]] || { echo "smoke.sh: run tests/web/install.sh first" >&2; exit 1; }
out=$(mktemp)
node server.js --port 0 >"$out" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 50); do grep -q '^LISTENING ' "$out" && break; sleep 0.1; done
port=$(sed -n 's/^LISTENING \([0-9]*\)$/\1/p' "$out")
[[ -n $port ]] || { echo "server did not start:"; cat "$out"; exit 1; }
base="http://127.0.0.1:$port"
fail=0
check() { # method path needle
  local body
  if [[ $1 == POST ]]; then body=$(curl -fsS -X POST -H 'content-type: application/json' -d '{}' "$base$2") || { echo "FAIL $1 $2"; fail=1; return; }
  else body=$(curl -fsS "$base$2") || { echo "FAIL $1 $2"; fail=1; return; }; fi
  if grep -q -- "$3" <<<"$body"; then echo "ok   $1 $2"; else echo "FAIL $1 $2 (no '$3')"; fail=1; fi
}
check GET /altcha '<altcha-widget challenge="/altcha/challenge"'
check GET /altcha-v1 '/altcha/challenge-v1'
check GET /altcha-v2 '/altcha/challenge-v2'
check GET /cap 'data-cap-api-endpoint="/cap/"'
check GET /plain '<form'
check GET /altcha/challenge '"keyPrefix"'
check GET /altcha/challenge-v1 '"maxnumber"'
check GET /altcha/challenge-v2 '"keySignature"'
check POST /cap/challenge '"token"'
check GET /static/altcha/altcha.js 'altcha-widget'
check GET /static/cap/cap.min.js 'cap-widget'
curl -fsS -o /dev/null "$base/static/cap/cap_wasm_bg.wasm" && echo "ok   GET wasm" || { echo "FAIL wasm"; fail=1; }
if grep -rl 'cdn\.\|jsdelivr\|unpkg' <(for p in /altcha /altcha-v1 /altcha-v2 /cap /plain; do curl -fsS "$base$p"; done) >/dev/null; then echo "FAIL: a page names a CDN"; fail=1; fi
v=$(curl -fsS -X POST -H 'content-type: application/json' -d '{"payload":"bm9wZQ=="}' "$base/altcha/verify")
grep -q '"ok":false' <<<"$v" && echo "ok   garbage payload refused" || { echo "FAIL garbage payload: $v"; fail=1; }
[[ $fail == 0 ]] && echo "smoke: all ok" || { echo "smoke: failures"; exit 1; }
