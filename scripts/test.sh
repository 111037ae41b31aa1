#!/usr/bin/env bash
# The test command: installs what the build needs, then runs the whole suite in a release build
# (the model tests run ~100 inference windows; release keeps the suite to a few minutes on 2 cores),
# then the kernel check (scripts/test-kernels.sh), a short fuzz run (scripts/fuzz.sh), then builds the Debian package
# and tests it installed (scripts/test-package.sh: dpkg -i, checks, purge).
# Tests that need the reference fixtures skip with a message when ../shared/fixtures is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --build-tests
swift test -c release --skip-build --disable-swift-testing "$@"
# Every C kernel against a scalar reference, for each x86-64 variant this CPU has and for arm64 (NEON) under qemu-user.
scripts/test-kernels.sh
# A short fuzz run (the suite has already run every corpus file once): each target instrumented, 20,000 inputs or
# 20 s each. The campaign behind the README's figures is scripts/fuzz.sh with its default 1,000,000 runs.
scripts/fuzz.sh all 20000 -max_total_time=20
scripts/test-package.sh
