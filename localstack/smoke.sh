#!/usr/bin/env bash
# install -> start -> deploy (queues/DLQs/tables via CloudFormation) -> SQS and DynamoDB checks
# against the deployed resources -> delete stack -> stop. Prints "N passed, M failed".
# If LocalStack was already running (started by localstack/start.sh), it is left running.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"
STACK="${SMOKE_STACK:-captcha-smoke}"
PREFIX="${SMOKE_PREFIX:-smoke-}"
MAX_RECEIVE=3
passed=0; failed=0
ok()   { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

t0=$SECONDS
if "$here/install.sh"; then ok "install ($((SECONDS - t0))s)"; else fail "install"; finish; fi

was_running=0
localstack_pid >/dev/null && was_running=1
t0=$SECONDS
if "$here/start.sh"; then ok "start incl. DynamoDB warm-up ($((SECONDS - t0))s)"; else fail "start"; finish; fi
health="$(curl -fsS --max-time 5 "$LOCALSTACK_URL/_localstack/health" || true)"
if echo "$health" | "$LOCALSTACK_PY" -c '
import json, sys
s = json.load(sys.stdin)["services"]
sys.exit(0 if all(s.get(k) in ("running", "available") for k in ("sqs", "dynamodb", "cloudformation")) else 1)'
then ok "health lists sqs, dynamodb, cloudformation"; else fail "health: $health"; fi
if ss -ltn 2>/dev/null | awk '{print $4}' | grep -qx "127.0.0.1:$LOCALSTACK_PORT"; then
    ok "gateway listens on 127.0.0.1:$LOCALSTACK_PORT only"
else
    fail "gateway is not bound to 127.0.0.1:$LOCALSTACK_PORT"
fi

. "$here/env.sh"
deploy=( "$here/../infra/deploy-localstack.sh" --stack "$STACK" --prefix "$PREFIX" --max-receive-count "$MAX_RECEIVE" )
t0=$SECONDS
if "${deploy[@]}" deploy; then
    ok "deploy stack $STACK ($((SECONDS - t0))s)"
    log="$(mktemp)"
    "$LOCALSTACK_PY" "$here/smoke.py" "$STACK" "$MAX_RECEIVE" 2>"$log" | tee "$log.out"
    p=$(grep -c '^ok ' "$log.out" || true); f=$(grep -c '^FAIL' "$log.out" || true)
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$p" -eq 0 ] || [ "$f" -ne 0 ]; then
        [ "$p" -eq 0 ] && fail "smoke.py ran no check"
        sed 's/^/    /' "$log" | tail -40
    fi
    rm -f "$log" "$log.out"
else
    fail "deploy stack $STACK"
fi
if "${deploy[@]}" delete; then ok "delete stack $STACK"; else fail "delete stack $STACK"; fi

if [ "$was_running" -eq 1 ]; then
    echo "smoke: LocalStack was already running before; leaving it running"
else
    "$here/stop.sh"
    if localstack_pid >/dev/null || localstack_healthy; then fail "stop"; else ok "stop"; fi
fi
finish
