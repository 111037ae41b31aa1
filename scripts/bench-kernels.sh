#!/usr/bin/env bash
# Per-layer timing of the kernels against OpenBLAS on the full model's shapes (Tests/KernelCheck/kernel_bench.c):
# each Swin block's linear layers and attention beside the same GEMMs on cblas_sgemm, weights in cache, best of RUNS.
# Usage: scripts/bench-kernels.sh [THREADS [RUNS]]. HTSAT_KERNELS and OPENBLAS_CORETYPE choose the variants
# (for AVX2 on both sides: HTSAT_KERNELS=avx2 OPENBLAS_CORETYPE=Haswell). Needs clang and libopenblas-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
K=Sources/CHTSATKernels
. scripts/find-clang.sh
mkdir -p .build-kernels/native
"$CLANG" -O2 -Wall -Wextra -Werror -I"$K/include" Tests/KernelCheck/kernel_bench.c "$K/kernels.c" "$K/pool.c" \
  -lopenblas -lm -lpthread -o .build-kernels/native/kernel_bench
exec .build-kernels/native/kernel_bench "${1:-1}" "${2:-20}"
