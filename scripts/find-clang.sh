# Sourced by the kernel scripts: sets CLANG (as given, else on PATH, else next to swift) or exits. The kernels need
# clang's attributes and builtins.
CLANG=${CLANG:-$(command -v clang || true)}
[ -n "$CLANG" ] || CLANG=$(dirname "$(command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)")/clang
[ -x "$CLANG" ] || { echo "error: no clang (PATH, next to swift, or CLANG=...)" >&2; exit 1; }
