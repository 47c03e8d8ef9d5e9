#!/usr/bin/env bash
# The training side's own tests (test_generators.py): the generators' text
# draws, the committed validation labels, the alphabet priors in model.json.
# No torch: a light venv from requirements-gen.txt, outside the clone
# ($CAPTCHA_GEN_VENV, default ~/.cache/captcha-gen-venv). Safe to re-run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CAPTCHA_GEN_VENV:-$HOME/.cache/captcha-gen-venv}"
stamp="$venv/.requirements-gen.txt"
if ! cmp -s "$here/requirements-gen.txt" "$stamp" 2>/dev/null; then
    echo "training tests: installing requirements-gen.txt into $venv"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install -q -r "$here/requirements-gen.txt"
    cp "$here/requirements-gen.txt" "$stamp"
fi
cd "$here"
"$venv/bin/python" -m unittest -v test_generators
