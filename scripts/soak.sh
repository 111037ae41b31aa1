#!/usr/bin/env bash
# Endurance soak: a live htsatd at hop 1 s (ALSA `file` plugin paced to real time, the fixture stream looped, the
# full-size model with random weights unless HTSATD_MODEL is given) for DURATION seconds, with a socket client
# attached. Samples RSS and the open-fd count every 30 s and checks that, after the first WARMUP seconds, RSS grows
# by less than 1 MB and the fd count does not grow.
#
#   scripts/soak.sh [DURATION=3600] [WARMUP=300]      # the issue's run: 1 h, judged after the first 5 min
#   scripts/soak.sh 120 30                            # a short one
#
# Needs a release build (swift build -c release) and the fixtures. Exit status 0 when both bounds hold.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-3600} warmup=${2:-300}
bin=${HTSATD:-.build/release/htsatd}
stream=${HTSATD_STREAM:-../shared/fixtures/detector/streams/dog_siren_32k.wav}
labels=${HTSATD_LABELS:-../shared/fixtures/audioset/class_labels_indices.csv}
work=$(mktemp -d /tmp/htsatd-endurance.XXXXXX)
model=${HTSATD_MODEL:-$work/full-random.safetensors}
[ -e "$model" ] || "$bin" bench --write-weights "$model" >/dev/null
echo "soak: ${duration}s at hop 1 s, model $model, files in $work"
python3 - "$stream" "$work/stream.f32" "$((duration + 60))" <<'PY'
import array, sys, wave
src, dst, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
w = wave.open(src)
assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 32000, "need 16-bit mono 32 kHz"
one = array.array("f", (x / 32768.0 for x in array.array("h", w.readframes(w.getnframes())))).tobytes()
with open(dst, "wb") as out:
    for _ in range(-(-seconds * 32000 * 4 // len(one))):
        out.write(one)
PY
printf '</usr/share/alsa/alsa.conf>\npcm.soakin { type file; slave.pcm "null"; file "/dev/null"; infile "%s"; format "raw" }\n' \
  "$work/stream.f32" > "$work/asound.conf"
ALSA_CONFIG_PATH="$work/asound.conf" "$bin" --model "$model" --labels "$labels" --device soakin --pace-realtime \
  --events dog_bark,siren,speech --socket "$work/events.sock" --stats-interval 300 >"$work/events.jsonl" 2>"$work/stderr.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; kill $client 2>/dev/null || true' EXIT
until [ -S "$work/events.sock" ]; do sleep 0.1; done
socat -u UNIX-CONNECT:"$work/events.sock" - >"$work/socket.jsonl" & client=$!
start=$SECONDS
echo "t_s rss_kb fds" > "$work/samples.txt"
while (( SECONDS - start < duration )); do
  kill -0 $pid 2>/dev/null || { echo "soak: htsatd exited early"; tail "$work/stderr.log"; exit 1; }
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$pid/status); fds=$(ls /proc/$pid/fd | wc -l)
  echo "$((SECONDS - start)) $rss $fds" >> "$work/samples.txt"
  sleep 30
done
kill -TERM $pid; wait $pid || true
python3 - "$work/samples.txt" "$warmup" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]).read().split("\n")[1:] if l.strip()]
warm = [r for r in rows if r[0] >= int(sys.argv[2])]
base = warm[0]
growth = max(r[1] for r in warm) - base[1]
fds = max(r[2] for r in warm) - base[2]
print(f"soak: {len(rows)} samples; RSS {rows[0][1]} kB at start, {base[1]} kB after warm-up, {rows[-1][1]} kB at the end; "
      f"growth after warm-up {growth} kB (bound 1024); fds {base[2]} -> {rows[-1][2]} (growth {fds})")
sys.exit(0 if growth < 1024 and fds <= 0 else 1)
PY
echo "soak: $(grep -c '"type":"stop"' "$work/events.jsonl") events on stdout, $(grep -c '"type":"stop"' "$work/socket.jsonl") on the socket"
