#!/usr/bin/env bash
# The test command: installs what the build needs, then runs the whole suite in a release build
# (the model tests run ~100 inference windows; release keeps the suite to a few minutes on 2 cores),
# then builds the Debian package and tests it installed (scripts/test-package.sh: dpkg -i, checks, purge).
# Tests that need the reference fixtures skip with a message when ../shared/fixtures is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --build-tests
swift test -c release --skip-build --disable-swift-testing "$@"
scripts/test-package.sh
