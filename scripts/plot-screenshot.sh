#!/usr/bin/env bash
# Renders an SVG from 'htsatd plot' to a PNG with headless Chromium, as a browser shows it (a visual check and the
# README picture; not a build or test dependency). Installs chromium from apt when missing.
# Usage: scripts/plot-screenshot.sh PLOT.svg OUT.png
set -euo pipefail
svg=$(realpath "$1"); out=$2
if ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi
# The window is the SVG's own size, so nothing is cut off or scaled.
w=$(grep -o 'width="[0-9.]*"' "$svg" | head -1 | tr -dc 0-9.); h=$(grep -o 'height="[0-9.]*"' "$svg" | head -1 | tr -dc 0-9.)
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="${w%.*},${h%.*}" --screenshot="$(realpath -m "$out")" "file://$svg" 2>/dev/null
