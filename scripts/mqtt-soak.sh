#!/usr/bin/env bash
# Soak test of the MQTT output: a live htsatd (ALSA `file` plugin, paced to real time, the fixture stream looped)
# publishing to a local mosquitto that is restarted every PERIOD seconds (down DOWN seconds each time), for DURATION
# seconds. Checks that every event line the daemon wrote while the broker was up reached a subscriber, and reports
# those written while it was down (the daemon queues them; they should arrive after the reconnect).
#
#   scripts/mqtt-soak.sh [DURATION=1800] [PERIOD=300] [DOWN=5]      # the issue's run: 30 min, restart every 5 min
#   scripts/mqtt-soak.sh 180 60                                      # a short one
#
# Needs a release build (swift build -c release), mosquitto and mosquitto-clients (scripts/install-deps.sh), and
# the fixtures (or HTSATD_MODEL, HTSATD_LABELS, HTSATD_STREAM: a 32 kHz mono WAV). Exit status 0 when nothing was
# lost while the broker was up. Loopback only; everything lives in a temporary directory (kept, and printed).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-1800} period=${2:-300} down=${3:-5}
bin=${HTSATD:-.build/release/htsatd}
model=${HTSATD_MODEL:-../shared/fixtures/detector/detector.ckpt}
labels=${HTSATD_LABELS:-../shared/fixtures/audioset/class_labels_indices.csv}
stream=${HTSATD_STREAM:-../shared/fixtures/detector/streams/dog_siren_32k.wav}
for f in "$bin" "$model" "$labels" "$stream"; do [ -e "$f" ] || { echo "error: $f not found" >&2; exit 2; }; done
command -v mosquitto >/dev/null || PATH=$PATH:/usr/sbin
command -v mosquitto >/dev/null && command -v mosquitto_sub >/dev/null || { echo "error: mosquitto and mosquitto_sub are needed (scripts/install-deps.sh)" >&2; exit 2; }

work=$(mktemp -d /tmp/htsatd-soak.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "soak: ${duration}s, broker restarted every ${period}s (down ${down}s), port $port, files in $work"

# The stream as raw float32 (the file plugin's format), repeated to cover the run plus a minute.
python3 - "$stream" "$work/stream.f32" "$((duration + 60))" <<'PY'
import array, sys, wave
src, dst, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
w = wave.open(src)
assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 32000, "need 16-bit mono 32 kHz"
pcm = array.array("h", w.readframes(w.getnframes()))
one = array.array("f", (x / 32768.0 for x in pcm)).tobytes()
with open(dst, "wb") as out:
    for _ in range(-(-seconds * 32000 // len(pcm))):
        out.write(one)
PY
printf '</usr/share/alsa/alsa.conf>\npcm.soakin { type file; slave.pcm "null"; file "/dev/null"; infile "%s"; format "raw" }\n' \
  "$work/stream.f32" > "$work/asound.conf"
# Persistent, so the subscriber's QoS 1 session (and what is queued for it) survives each restart.
{
  echo "listener $port 127.0.0.1"; echo "allow_anonymous true"; echo "persistence true"
  echo "persistence_location $work/"; echo "log_dest file $work/broker.log"
  if [ "$(id -u)" = 0 ]; then echo "user root"; fi
} > "$work/broker.conf"

broker_pid= daemon_pid= reader_pid= sub_pid=
cleanup() {
  for p in $daemon_pid $reader_pid $sub_pid $broker_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
port_open() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; }
start_broker() {
  mosquitto -c "$work/broker.conf" 2>>"$work/broker.err" &
  broker_pid=$!
  until port_open; do sleep 0.05; done
  echo "up $EPOCHREALTIME" >> "$work/windows.txt"
}
stop_broker() {
  echo "down $EPOCHREALTIME" >> "$work/windows.txt"
  kill "$broker_pid"; wait "$broker_pid" 2>/dev/null || true
}

start_broker
mosquitto_sub -h 127.0.0.1 -p "$port" -c -i htsatd-soak-sub -q 1 -t htsatd/soak/events -t htsatd/soak/probe \
  -F '%t|%p' > "$work/received.txt" 2> "$work/sub.err" &
sub_pid=$!
until grep -q '^htsatd/soak/probe|' "$work/received.txt"; do
  mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t htsatd/soak/probe -m probe; sleep 0.2
done

# Every stdout line with the wall-clock time it was written.
mkfifo "$work/out.fifo"
while IFS= read -r line; do printf '%s|%s\n' "$EPOCHREALTIME" "$line"; done < "$work/out.fifo" > "$work/emitted.txt" &
reader_pid=$!
ALSA_CONFIG_PATH="$work/asound.conf" "$bin" --model "$model" --labels "$labels" --device soakin --pace-realtime \
  --events dog_bark,siren,smoke_alarm,speech --threshold 0.6 --off-threshold 0.4 \
  --mqtt "mqtt://127.0.0.1:$port" --mqtt-node soak > "$work/out.fifo" 2> "$work/daemon.err" &
daemon_pid=$!

restarts=0 start=$SECONDS next=$((SECONDS + period))
while (( SECONDS - start < duration )); do
  sleep 1
  kill -0 "$daemon_pid" 2>/dev/null || { echo "error: htsatd exited early; see $work/daemon.err" >&2; exit 1; }
  if (( SECONDS >= next && SECONDS - start + down < duration )); then
    stop_broker; sleep "$down"; start_broker
    restarts=$((restarts + 1)) next=$((SECONDS + period))
    echo "soak: broker restart $restarts at $((SECONDS - start)) s"
  fi
done
kill -TERM "$daemon_pid"; wait "$daemon_pid" || { echo "error: htsatd exited non-zero" >&2; exit 1; }
daemon_pid=
wait "$reader_pid" || true; reader_pid=
# The daemon waited for its acknowledgements before exiting; give the subscriber a moment to write them out.
sleep 1
kill "$sub_pid"; wait "$sub_pid" 2>/dev/null || true; sub_pid=

python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
windows = [l.split() for l in open(f"{work}/windows.txt")]
downs, t0 = [], None
for kind, t in windows:
    if kind == "down": t0 = float(t)
    elif t0 is not None: downs.append((t0, float(t))); t0 = None
emitted = [l.rstrip("\n").split("|", 1) for l in open(f"{work}/emitted.txt")]
received = [l.rstrip("\n").split("|", 1)[1] for l in open(f"{work}/received.txt") if l.startswith("htsatd/soak/events|")]
got = set(received)
# In flight at a restart: written within a second of the broker going down counts as "while down".
def while_down(t): return any(a - 1 <= t <= b for a, b in downs)
up = [line for t, line in emitted if not while_down(float(t))]
dn = [line for t, line in emitted if while_down(float(t))]
lost_up = [l for l in up if l not in got]
lost_dn = [l for l in dn if l not in got]
print(f"soak: {len(emitted)} event lines ({len(up)} while the broker was up, {len(dn)} while down), "
      f"{len(downs)} restarts, {len(received)} received ({len(received) - len(got)} duplicates)")
print(f"soak: lost while up: {len(lost_up)}; lost while down: {len(lost_dn)}")
for l in lost_up: print("  LOST (up):", l)
for l in lost_dn: print("  lost (down):", l)
err = open(f"{work}/daemon.err").read().splitlines()
print("soak: daemon MQTT log lines:")
for l in err:
    if "MQTT" in l: print("  " + l)
sys.exit(1 if lost_up or not emitted else 0)
PY
