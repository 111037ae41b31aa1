#!/usr/bin/env bash
# Installs the Debian 12 packages htsatd builds and tests against. Safe to re-run.
set -euo pipefail
packages=(
  libasound2-dev libasound2-plugins alsa-utils   # ALSA capture (alsa-lib, its plugins, aplay/arecord)
  gcc libc6-dev                                   # the fault-injection tests compile an ALSA plugin (Tests/ALSAFaultPlugin)
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user  # the arm64 (NEON) kernels, cross-built, run under qemu (scripts/test-kernels.sh)
  libopenblas-dev                                 # only for the gemmfloor comparison in README (Performance)
  libfftw3-dev                                    # STFT (fftw3f)
  libsndfile1-dev libsoxr-dev                     # audio file decoding and clip encoding, resampling
  libpng-dev                                      # spectrogram PNGs of clips and plots
  libsystemd-dev systemd                          # sd_notify; systemd-analyze for the unit test
  libmosquitto-dev mosquitto mosquitto-clients openssl  # MQTT output; a real broker, subscriber and test CA for its tests
  pkg-config socat curl ca-certificates
  dpkg-dev                                        # the Debian package: dpkg-shlibdeps (dpkg-deb is in dpkg)
  man-db mandoc logrotate                         # package test: man -l, mandoc -Tlint, logrotate -d on the snippet
  hyperfine                                       # start-up time of the standalone binary (README, Install)
  python3-prometheus-client                       # the metrics test parses --metrics-file with the reference parser
  espeak-ng sound-theme-freedesktop               # material of the enrol tests (scripts/enroll-material.py)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v swift >/dev/null || { echo "error: no Swift toolchain on PATH; install Swift 6 from swift.org (tarball for Debian 12) and add its usr/bin to PATH" >&2; exit 1; }
