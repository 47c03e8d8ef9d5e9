#!/usr/bin/env bash
# captcha-aws's integration tests: the core's shared port suite (and a few
# adapter tests) on SQS + DynamoDB in LocalStack. Installs and starts LocalStack
# if needed (localstack/), deploys the queues/tables stack as the model the
# tests clone per test, runs the ignored tests, and leaves LocalStack as it
# found it: stopped again if this script started it, else running with the test
# stack removed (if this script created it). Safe to re-run.
#   tests/aws.sh [extra cargo test args after --, e.g. -- scenario_name]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. localstack/common.sh
STACK="${CAPTCHA_AWS_TEST_STACK:-captcha-awstest}"
PREFIX="${CAPTCHA_AWS_TEST_PREFIX:-awstest-}"
t0=$SECONDS

was_running=0
localstack_pid >/dev/null && was_running=1
localstack/install.sh >/dev/null
localstack/start.sh

env_file="$(mktemp)"
created=0
finish() {
    rc=$?
    rm -f "$env_file"
    if [ "$was_running" = 0 ]; then
        localstack/stop.sh || true
    elif [ "$created" = 1 ]; then
        infra/deploy-localstack.sh delete --stack "$STACK" || true
    fi
    echo "aws.sh: $([ $rc = 0 ] && echo ok || echo FAILED) in $((SECONDS - t0))s"
    exit $rc
}
trap finish EXIT

out="$(infra/deploy-localstack.sh deploy --stack "$STACK" --prefix "$PREFIX" --env-file "$env_file")"
echo "$out" | head -1
case "$out" in *" created "*) created=1 ;; esac
. localstack/env.sh
. "$env_file"

echo "== captcha-aws tests (LocalStack)"
# --workspace + --test: the same feature set as the workspace's `cargo test`,
# so nothing is rebuilt after it.
cargo test --workspace --locked --test aws_suite --test aws_adapters --test aws_conflicts -- --include-ignored "$@"
