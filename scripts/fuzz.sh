#!/usr/bin/env bash
# Fuzzes the input readers with libFuzzer and AddressSanitizer: scripts/fuzz.sh [TARGET=all] [RUNS=1000000] [libFuzzer flags]
#   TARGET: checkpoint (whole weights files: ZIP, pickle, safetensors, then the model build), pickle (data.pkl inside a
#   torch archive), audio (WAV/FLAC/... by path and from a pipe, resampled), config (the JSON configuration), or all.
# Builds the Fuzz* products into .build-fuzz (the whole graph instrumented), runs each for RUNS inputs from the seeds
# in Fuzz/corpus/TARGET plus what earlier runs found (.build-fuzz/corpus/TARGET), and prints executions, exec/s,
# coverage and crashes. A crash, leak, timeout (10 s) or OOM (2 GB) stops that target: its input is saved in
# .build-fuzz/artifacts/TARGET/; reproduce with `.build-fuzz/release/FuzzX FILE`, then add it to Fuzz/corpus/TARGET
# as crash-NAME once fixed. Exits 1 if any target crashed. RUNS=0 only builds.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-all}
runs=${2:-1000000}
shift $(($# > 2 ? 2 : $#))
case $target in
  all) targets=(checkpoint pickle audio config) ;;
  checkpoint|pickle|audio|config) targets=("$target") ;;
  *) echo "usage: scripts/fuzz.sh [checkpoint|pickle|audio|config|all] [RUNS] [libFuzzer flags]" >&2; exit 2 ;;
esac
product() { case $1 in checkpoint) echo FuzzCheckpoint ;; pickle) echo FuzzPickle ;; audio) echo FuzzAudioFile ;; config) echo FuzzConfig ;; esac; }

# --sanitize tells SwiftPM that libFuzzer brings main (and instruments the C targets); the Swift compiler keeps only
# the last of several -sanitize flags, hence the combined one. FUZZING drops each target's own main.
mkdir -p .build-fuzz/logs
for t in "${targets[@]}"; do
  if ! swift build -c release --scratch-path .build-fuzz --product "$(product "$t")" --sanitize=fuzzer --sanitize=address \
      -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING >.build-fuzz/logs/build.log 2>&1; then
    grep -E "error:" .build-fuzz/logs/build.log >&2 || tail -20 .build-fuzz/logs/build.log >&2
    exit 1
  fi
done
((runs > 0)) || exit 0

export LSAN_OPTIONS=suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}
export SWIFT_BACKTRACE=enable=no  # libFuzzer prints the stack; Swift's backtracer only trips over ASan's memory
failed=0
for t in "${targets[@]}"; do
  work=.build-fuzz/corpus/$t artifacts=.build-fuzz/artifacts/$t log=.build-fuzz/logs/$t.log
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  before=$(ls -A "$artifacts" 2>/dev/null | wc -l)
  dict=(); [ -f "Fuzz/dict/$t.dict" ] && dict=(-dict="Fuzz/dict/$t.dict")
  start=$(date +%s)
  status=0
  ".build-fuzz/release/$(product "$t")" "$work" "Fuzz/corpus/$t" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "${dict[@]}" "$@" >"$log" 2>&1 || status=$?
  seconds=$(($(date +%s) - start))
  crashes=$(($(ls -A "$artifacts" 2>/dev/null | wc -l) - before))
  done_line=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  echo "$t: ${executions:-?} executions in ${seconds} s (${rate:-?} exec/s), coverage ${cov:-?} edges / ${ft:-?} features, $crashes crashes (log: $log)"
  if ((status != 0 || crashes > 0)); then
    failed=1
    grep -E "^==[0-9]+==ERROR|^SUMMARY|Fatal error|^artifact_prefix|Test unit written" "$log" | head -5 || true
  fi
done
exit $failed
