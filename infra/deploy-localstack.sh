#!/usr/bin/env bash
# Deploys the queues, DLQs and tables of infra/template.yaml into a running LocalStack
# (DeployFunctions=false: LocalStack community cannot run Lambda without Docker) and prints the
# outputs. Start LocalStack first: localstack/start.sh.
#   infra/deploy-localstack.sh [deploy|check|delete|selftest] [--stack NAME] [--prefix P] [--env-file F]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/../localstack/common.sh"
. "$here/../localstack/env.sh"
if ! localstack_healthy; then
    echo "deploy: LocalStack is not answering at $LOCALSTACK_URL; run localstack/start.sh first" >&2
    exit 1
fi
exec "$LOCALSTACK_PY" "$here/deploy_localstack.py" "$@"
