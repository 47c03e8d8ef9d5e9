#!/usr/bin/env bash
# Starts LocalStack (host mode) on 127.0.0.1:4566 in the background, waits until it is healthy and
# warms DynamoDB up (the first call starts the JVM). Idempotent: if our LocalStack already runs,
# it only checks health and warms up. Stop it with ./stop.sh (by the PID recorded here).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
START_TIMEOUT="${LOCALSTACK_START_TIMEOUT:-120}"

"$LOCALSTACK_SCRIPTS_DIR/install.sh" >/dev/null
localstack_env

if pid="$(localstack_pid)"; then
    echo "start: LocalStack already running (pid $pid)"
else
    if localstack_healthy || (exec 3<>"/dev/tcp/127.0.0.1/$LOCALSTACK_PORT") 2>/dev/null; then
        echo "start: 127.0.0.1:$LOCALSTACK_PORT is taken by a process we did not start; not touching it" >&2
        exit 1
    fi
    rm -f "$LOCALSTACK_PIDFILE"
    # A fresh state each start (PERSISTENCE=0); the libs under $LOCALSTACK_LIB stay.
    rm -rf "$LOCALSTACK_FS/var/lib/localstack/tmp" "$LOCALSTACK_FS/tmp"
    mkdir -p "$LOCALSTACK_FS"
    # setsid: detached from this shell's session, so it outlives the caller; stop.sh ends it by PID.
    setsid "$LOCALSTACK_PY" -m localstack.runtime.main </dev/null >"$LOCALSTACK_LOG" 2>&1 &
    echo $! > "$LOCALSTACK_PIDFILE"
    echo "start: LocalStack $LOCALSTACK_VERSION starting (pid $!, log $LOCALSTACK_LOG)"
fi

t0=$SECONDS
until localstack_healthy; do
    if ! localstack_pid >/dev/null; then
        echo "start: LocalStack exited; last log lines:" >&2
        tail -30 "$LOCALSTACK_LOG" >&2 || true
        rm -f "$LOCALSTACK_PIDFILE"
        exit 1
    fi
    if (( SECONDS - t0 > START_TIMEOUT )); then
        echo "start: not healthy after ${START_TIMEOUT}s; last log lines:" >&2
        tail -30 "$LOCALSTACK_LOG" >&2 || true
        "$LOCALSTACK_SCRIPTS_DIR/stop.sh" >&2 || true
        exit 1
    fi
    sleep 0.5
done
echo "start: healthy after $((SECONDS - t0))s at $LOCALSTACK_URL"

# Warm-up: the first DynamoDB call starts DynamoDB Local's JVM, the first SQS call loads SQS.
. "$LOCALSTACK_SCRIPTS_DIR/env.sh"
"$LOCALSTACK_PY" - <<'PY'
import sys, time
import boto3
from botocore.config import Config
cfg = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60)
deadline = time.time() + 90
for name, call in (("dynamodb", lambda c: c.list_tables()), ("sqs", lambda c: c.list_queues()),
                   ("cloudformation", lambda c: c.list_stacks())):
    c = boto3.client(name, config=cfg)
    t = time.time()
    while True:
        try:
            call(c)
            break
        except Exception as e:  # the JVM may still be starting
            if time.time() > deadline:
                sys.exit(f"start: {name} not answering: {e}")
            time.sleep(0.5)
    print(f"start: {name} ready ({time.time() - t:.1f}s)")
PY
