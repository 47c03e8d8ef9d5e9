#!/usr/bin/env bash
# Reproducible training environment for the CAPTCHA OCR model.
#   shared/ocr/training/setup.sh          # fonts (apt) + training venv (torch, ~5 GB with CUDA libs)
#   shared/ocr/training/setup.sh --bench  # fonts + light benchmark venv only (ddddocr, onnxruntime)
#   shared/ocr/training/setup.sh --fonts-only
# Venv path: $CAPTCHA_TRAIN_VENV (default $HOME/.cache/captcha-train-venv).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CAPTCHA_TRAIN_VENV:-$HOME/.cache/captcha-train-venv}"
REQ="$HERE/requirements.txt"
if [[ "${1:-}" == "--bench" ]]; then REQ="$HERE/requirements-bench.txt"; fi

# Debian font packages the generators draw with (gen.py scans /usr/share/fonts/{truetype,opentype}).
FONTS=(fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-freefont-ttf fonts-roboto
       fonts-open-sans fonts-urw-base35 fonts-croscore fonts-crosextra-carlito fonts-crosextra-caladea
       fonts-lato fonts-cantarell fonts-hack fonts-comic-neue fonts-linuxlibertine
       fonts-noto-mono fonts-inconsolata fonts-anonymous-pro fonts-oxygen fonts-karla)
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${FONTS[@]}" fontconfig python3-venv

if [[ "${1:-}" == "--fonts-only" ]]; then exit 0; fi
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install -r "$REQ"
echo "venv ready: $VENV  (export OMP_WAIT_POLICY=PASSIVE before training)"
