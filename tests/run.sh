#!/usr/bin/env bash
# The project's one test command (README, CI): every Rust test in the
# workspace (after a rustfmt check) — unit, protocol, store, OCR accuracy floors, and the end-to-end
# tests that start the real `captchad` binary (crash/restart included, ALTCHA
# and Cap pages of the Node widget site in tests/web solved natively, signed
# callbacks) — then the OCR training side's tests (no torch), the AWS adapters and the six Lambda functions end to end on
# LocalStack, then the official client libraries against a live captchad.
# Installs what it needs itself; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check (rustfmt.toml)"
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all --check
else
    echo "rustfmt is not installed with this toolchain: format check skipped"
fi

echo "== Chromium (Debian package) for the browser pool"
./shared/browser/install-chromium.sh

echo "== widget test site (npm ci, pinned)"
./tests/web/install.sh

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== OCR training side: generator draws, validation labels, alphabet priors (no torch)"
./shared/ocr/training/test.sh

echo "== infra/template.yaml: cfn-lint (pinned, own venv) + queue/function checks"
./infra/lint.sh

echo "== AWS adapters on LocalStack (SQS + DynamoDB; installs and starts it)"
./tests/aws.sh

echo "== serverless pipeline on LocalStack (six Lambda binaries under cargo lambda watch)"
./tests/serverless.sh

echo "== official clients against captchad"
./tests/clients/run.sh
