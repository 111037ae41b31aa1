#!/usr/bin/env bash
# Checks every compute kernel against a scalar reference (Tests/KernelCheck/kernel_check.c): built natively and run
# for each x86-64 variant this CPU has, then cross-built for arm64 and run under qemu-user for neon and generic.
# The kernels need clang (clang attributes and builtins); the arm64 binary is linked by Debian's cross gcc.
# Without the cross tools the arm64 part skips, or fails when CI is set or HTSATD_REQUIRE_FIXTURES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
K=Sources/CHTSATKernels
SRC=(Tests/KernelCheck/kernel_check.c "$K/kernels.c" "$K/pool.c")
. scripts/find-clang.sh
OUT=.build-kernels
mkdir -p "$OUT/native" "$OUT/aarch64"

# Runs one variant and checks that the dispatch picked it: run VARIANT WHERE COMMAND...
run() {
  local variant=$1 where=$2 log="$OUT/$1-$2.log"
  shift 2
  if ! HTSAT_KERNELS=$variant "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "error: kernel_check failed for $variant ($*)" >&2
    exit 1
  fi
  grep -q "checks passed ($variant)\$" "$log" || { tail -1 "$log" >&2; echo "error: HTSAT_KERNELS=$variant ran another variant" >&2; exit 1; }
  echo "$variant ($where): $(tail -1 "$log")"
}

nice -n 10 "$CLANG" -O2 -Wall -Wextra -Werror -I"$K/include" "${SRC[@]}" -lm -lpthread -o "$OUT/native/kernel_check"
if [ "$(uname -m)" = x86_64 ]; then
  has() { for f; do grep -qw "$f" /proc/cpuinfo || return 1; done; }
  run generic x86-64 "$OUT/native/kernel_check"
  if has avx2 fma; then run avx2 x86-64 "$OUT/native/kernel_check"; else echo "avx2: skipped, this CPU lacks avx2 or fma"; fi
  if has avx512f avx512vl avx512bw avx512dq; then run avx512 x86-64 "$OUT/native/kernel_check"
  else echo "avx512: skipped, this CPU lacks one of avx512f, avx512vl, avx512bw, avx512dq"; fi
fi

# The per-layer benchmark builds and runs (one timed run of each layer, on the pool's 2 threads), so that it stays usable.
scripts/bench-kernels.sh 2 1 >"$OUT/kernel_bench.log" || { cat "$OUT/kernel_bench.log" >&2; echo "error: kernel_bench failed" >&2; exit 1; }
echo "kernel_bench: ran, one timing per layer (a smoke run, not a measurement: scripts/bench-kernels.sh 1 20 measures)"

if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null && [ -d /usr/aarch64-linux-gnu/include ]; then
  objs=()
  for f in "${SRC[@]}"; do
    o="$OUT/aarch64/$(basename "$f" .c).o"
    nice -n 10 "$CLANG" --target=aarch64-linux-gnu -O2 -Wall -Wextra -Werror -I"$K/include" -c "$f" -o "$o"
    objs+=("$o")
  done
  aarch64-linux-gnu-gcc "${objs[@]}" -lm -lpthread -o "$OUT/aarch64/kernel_check"
  for v in neon generic; do run "$v" arm64-qemu qemu-aarch64 -L /usr/aarch64-linux-gnu "$OUT/aarch64/kernel_check"; done
elif [ -n "${CI:-}" ] || [ "${HTSATD_REQUIRE_FIXTURES:-}" = 1 ]; then
  echo "error: the arm64 kernel check needs gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user (scripts/install-deps.sh)" >&2
  exit 1
else
  echo "arm64: skipped, no cross tools (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
fi
