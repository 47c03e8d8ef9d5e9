#!/usr/bin/env bash
# End-to-end test of the serverless pipeline on this machine, no Docker:
#   LocalStack (SQS, DynamoDB, CloudFormation) ← the queues/tables stack of infra/template.yaml
#   the seven Lambda functions' real binaries on `cargo lambda watch`'s runtime API (PyPI cargo-lambda, pinned)
#   tests/serverless (captcha-serverless-tests): API Gateway REST proxy events to submit/poll,
#   event-source pollers that feed route / solve-ocr / solve-browser / pingback like Lambda's
#   SQS mappings (partial batch responses), scheduled-event invocations of captcha-sweep, the cases,
#   latency and init-time numbers; the four official clients (tests/clients) over an HTTPS bridge
#   that turns requests into the proxy events of the template's API routes. captcha-solve-browser drives the Chromium of
#   shared/browser/install-chromium.sh (confined to 127.0.0.1 by resolver rules).
# Idempotent; leaves LocalStack running if it was running before. Prints `N passed, M failed`.
#   tests/serverless.sh            (env: CARGO_TARGET_DIR, LAMBDA_INVOKE_PORT=9000, E2E_LATENCY_TASKS=20)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
t_start=$(date +%s.%N)
stamp() { printf '[serverless %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $t_start" | bc)" "$*"; }

CARGO_LAMBDA_VERSION=1.9.2
CARGO_LAMBDA_HOME="${CARGO_LAMBDA_HOME:-$HOME/.cache/captcha-cargo-lambda}"
PORT="${LAMBDA_INVOKE_PORT:-9000}"
STACK=captcha-e2e
PREFIX=captcha-e2e-
target="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d "${TMPDIR:-/tmp}/captcha-serverless.XXXXXX")"
functions=(captcha-submit captcha-poll captcha-route captcha-solve-ocr captcha-solve-browser captcha-pingback captcha-sweep)

# ---------------------------------------------------------------- cargo-lambda (own venv, pinned)
if [ "$(cat "$CARGO_LAMBDA_HOME/installed" 2>/dev/null)" != "$CARGO_LAMBDA_VERSION" ]; then
    stamp "installing cargo-lambda $CARGO_LAMBDA_VERSION"
    python3 -m venv "$CARGO_LAMBDA_HOME/venv"
    "$CARGO_LAMBDA_HOME/venv/bin/pip" install -q "cargo-lambda==$CARGO_LAMBDA_VERSION"
    echo "$CARGO_LAMBDA_VERSION" > "$CARGO_LAMBDA_HOME/installed"
fi
export PATH="$CARGO_LAMBDA_HOME/venv/bin:$PATH"

# The widget test site's npm packages (ALTCHA / Cap case) and Chromium (the browser pool).
tests/web/install.sh
shared/browser/install-chromium.sh
# The official clients (driven through an HTTPS bridge that serves the template's API routes).
tests/clients/install.sh

# ---------------------------------------------------------------- LocalStack + the stack
localstack/install.sh
. localstack/common.sh
was_running=0
if localstack_pid >/dev/null 2>&1; then was_running=1; fi
localstack/start.sh
. localstack/env.sh
stamp "deploying the queues/tables stack ($STACK)"
infra/deploy-localstack.sh delete --stack "$STACK" --prefix "$PREFIX" >/dev/null 2>&1 || true
infra/deploy-localstack.sh deploy --stack "$STACK" --prefix "$PREFIX" --env-file "$work/stack.env" >/dev/null

watch_pid=""
fn_pids=()
cleanup() {
    local rc=$?
    for p in "${fn_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    if [ -n "$watch_pid" ] && kill -0 "$watch_pid" 2>/dev/null; then
        kill -TERM -- "-$watch_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$watch_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$watch_pid" 2>/dev/null || true
    fi
    infra/deploy-localstack.sh delete --stack "$STACK" --prefix "$PREFIX" >/dev/null 2>&1 || true
    if [ "$was_running" = 0 ]; then localstack/stop.sh >/dev/null 2>&1 || true; fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT INT TERM

# ---------------------------------------------------------------- build (debug)
stamp "building the functions and the test"
# Every binary of the workspace in one build: one feature set, shared with later runs.
CARGO_TARGET_DIR="$target" cargo build -q --locked --workspace --bins

# ---------------------------------------------------------------- the functions under cargo lambda watch
# The function environment: the stack outputs + the template's parameters (infra/README.md) + the
# test's knobs (a low in-flight cap for NO_SLOT_AVAILABLE, callbacks and pages on 127.0.0.1, a short
# solve timeout so the sweeper case need not wait 240 s: only that case invokes captcha-sweep).
{
    sed -e 's/^export //' -e 's/"//g' "$work/stack.env"
    cat <<ENV
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
AWS_REGION=$AWS_REGION
AWS_DEFAULT_REGION=$AWS_REGION
RUST_LOG=info
CAPTCHA_PRICE_IMAGE=0.001
CAPTCHA_PRICE_TOKEN=0.003
CAPTCHA_MAX_IN_FLIGHT=12
CAPTCHA_MAX_RPS=1000
CAPTCHA_RESULT_RETENTION_SECS=600
CAPTCHA_MAX_ATTEMPTS=3
CAPTCHA_ALLOW_PRIVATE_NETWORK=127.0.0.0/8
CAPTCHA_SOLVE_TIMEOUT_SECS=3
CAPTCHA_TASK_DEADLINE_SECS=900
CAPTCHA_CHROMIUM_PATH=${CAPTCHA_CHROMIUM_PATH:-/usr/lib/chromium/chromium}
CAPTCHA_CHROMIUM_HOST_RESOLVER_RULES='MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'
CAPTCHA_BROWSER_PAGES=2
CAPTCHA_BROWSER_WIDGETS=1
CAPTCHA_BROWSER_DEADLINE_SECS=30
ENV
} > "$work/functions.env"
set -a; . "$work/functions.env"; set +a

if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "serverless: 127.0.0.1:$PORT is already taken (LAMBDA_INVOKE_PORT)" >&2
    exit 1
fi
# `cargo lambda watch --only-lambda-apis` serves the Lambda runtime API and the invoke endpoint; the
# functions' binaries (built above, once for all six) are started here, each polling
# `/.rt/<function>` as a Lambda instance would. (Letting watch start them runs `cargo run --bin X`
# per function, which resolves features per package and rebuilds most of the dependency tree.)
stamp "starting cargo lambda watch (runtime + invoke APIs) on 127.0.0.1:$PORT"
setsid cargo-lambda lambda watch --only-lambda-apis --ignore-changes \
    --invoke-address 127.0.0.1 --invoke-port "$PORT" > "$work/watch.log" 2>&1 &
watch_pid=$!
for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    kill -0 "$watch_pid" 2>/dev/null || { cat "$work/watch.log" >&2; exit 1; }
    sleep 0.1
done
instances() { case "$1" in captcha-submit|captcha-poll) echo 3 ;; *) echo 1 ;; esac; }
for f in "${functions[@]}"; do
    for i in $(seq 1 "$(instances "$f")"); do
        AWS_LAMBDA_FUNCTION_NAME="$f" AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 \
        AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$PORT/.rt/$f" \
            setsid "$target/debug/$f" > "$work/$f-$i.log" 2>&1 &
        fn_pids+=("$!")
    done
done
stamp "started ${#fn_pids[@]} function instances"

# ---------------------------------------------------------------- the end-to-end cases
stamp "running the end-to-end cases"
rc=0
"$LOCALSTACK_PY" infra/api_routes.py > "$work/routes.txt"
# A throwaway certificate for the HTTPS bridge on 127.0.0.1 (2captcha-python speaks https only).
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
E2E_API_ROUTES="$work/routes.txt" E2E_TLS_CERT="$work/cert.pem" E2E_TLS_KEY="$work/key.pem" LAMBDA_INVOKE_URL="http://127.0.0.1:$PORT" "$target/debug/captcha-serverless-tests" || rc=$?

echo "Lambda init (process start → first runtime poll), per instance:"
cat "$work"/captcha-*.log | grep -ho 'CAPTCHA_LAMBDA_INIT.*' | sed 's/^CAPTCHA_LAMBDA_INIT /  /' | sort | uniq -c | sort -k2 || true
if [ "$rc" != 0 ]; then
    for f in "$work"/watch.log "$work"/captcha-*.log; do
        echo "--- last 30 lines of $(basename "$f")" >&2
        tail -30 "$f" >&2
    done
fi
stamp "done (rc=$rc)"
exit $rc
