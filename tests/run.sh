#!/usr/bin/env bash
# The project's one test command (README, CI): every Rust test in the
# workspace — unit, protocol, store, OCR accuracy floors, and the end-to-end
# tests that start the real `captchad` binary (crash/restart included) —
# then the official client libraries against a live captchad.
# Installs what it needs itself; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace)"
cargo test --workspace --locked

echo "== official clients against captchad"
./tests/clients/run.sh
