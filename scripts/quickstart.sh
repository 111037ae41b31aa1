#!/usr/bin/env bash
# From a fresh clone on Debian 12: install the build dependencies, build htsatd in release mode, download the
# official checkpoint and AudioSet labels, then run the daemon on the default microphone.
#   HTSATD_MODEL_DIR (default ~/.local/share/htsatd), HTSATD_DEVICE (default "default") and
#   HTSATD_EVENTS (default dog_bark,siren,smoke_alarm,speech) change the defaults; extra arguments go to htsatd.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product htsatd
model_dir="${HTSATD_MODEL_DIR:-$HOME/.local/share/htsatd}"
scripts/download-model.sh "$model_dir"
exec .build/release/htsatd --model "$model_dir/HTSAT_AudioSet_Saved_1.ckpt" \
  --device "${HTSATD_DEVICE:-default}" --events "${HTSATD_EVENTS:-dog_bark,siren,smoke_alarm,speech}" "$@"
