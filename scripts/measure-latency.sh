#!/usr/bin/env bash
# Live start-line latency on the fixture streams: the daemon captures each stream through ALSA (alsa-lib's `file`
# plugin over `null`, paced to real time), both streams at once, and every start line's arrival is compared with
# the annotated onsets. Prints each matched event and p50/p95 of (arrival - onset).
#
#   scripts/measure-latency.sh [extra htsatd flags, e.g. --onset-settle 2]
#
# Needs a release build (swift build -c release --product htsatd), python3 and ../shared/fixtures. Takes about 70 s.
# Not a CI test: it measures, it does not judge.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${HTSATD_FIXTURES:-$root/../shared/fixtures}
bin=$root/.build/release/htsatd
[ -x "$bin" ] || { echo "build first: swift build -c release --product htsatd" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

exec python3 - "$bin" "$fixtures" "$work" "$@" <<'PY'
import array, json, math, os, signal, subprocess, sys, threading, time, wave

binary, fixtures, work, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
streams = ["dog_siren_32k", "alarm_speech_48k_stereo"]
conf = ["</usr/share/alsa/alsa.conf>"]
for name in streams:
    path = f"{fixtures}/detector/streams/{name}.wav"
    with wave.open(path) as w:
        rate, channels, frames = w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())
    assert w.getsampwidth() == 2
    # Float mono at the stream's rate (the mean of the channels, as the daemon and file mode downmix), then 15 s
    # of silence so that every event ends. alsa-lib's plug converts nothing here (its format conversion over the
    # `file` plugin misreads the file); it only pins the rate: the daemon turns alsa-lib's resampler off, so the
    # 48 kHz stream is captured at 48 kHz and resampled by the daemon (soxr), as in file mode.
    pcm = array.array("h"); pcm.frombytes(frames)
    mono = array.array("f", (sum(pcm[i:i + channels]) / (32768 * channels) for i in range(0, len(pcm), channels)))
    with open(f"{work}/{name}.raw", "wb") as f:
        f.write(mono.tobytes() + bytes(4 * rate * 15))
    conf.append(f'pcm.raw_{name} {{ type file; slave.pcm "null"; file "/dev/null"; infile "{work}/{name}.raw"; format "raw" }}')
    conf.append(f'pcm.{name} {{ type plug; slave {{ pcm "raw_{name}"; format FLOAT_LE; rate {rate}; channels 1 }} }}')
with open(f"{work}/asound.conf", "w") as f:
    f.write("\n".join(conf) + "\n")

def run(name, out):
    args = [binary, "--model", f"{fixtures}/detector/detector.ckpt", "--labels", f"{fixtures}/audioset/class_labels_indices.csv",
            "--device", name, "--pace-realtime", "--events", "dog_bark,siren,smoke_alarm,speech",
            "--threshold", "0.6", "--off-threshold", "0.4", "--threads", "1", "--log-level", "info"] + extra
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, ALSA_CONFIG_PATH=f"{work}/asound.conf"))
    lines, log = [], []
    def read_err():
        for line in p.stderr:
            log.append((time.time(), line.rstrip()))
    t = threading.Thread(target=read_err); t.start()
    deadline = None
    for line in p.stdout:
        lines.append((time.time(), json.loads(line)))
        # Stop once the stream (60 s) plus a settle and merge gap has passed.
        if deadline is None and any("capturing" in l for _, l in log):
            deadline = True
            threading.Timer(60 + 12, lambda: p.send_signal(signal.SIGTERM)).start()
    p.wait(); t.join()
    out[name] = (lines, log)

results = {}
threads = [threading.Thread(target=run, args=(n, results)) for n in streams]
for t in threads: t.start()
for t in threads: t.join()

latencies, check = [], []
for name in streams:
    lines, log = results[name]
    # A cross-check with a fixed origin: when the daemon logged that capture started (pacing starts about then).
    origin = next(t for t, l in log if "capturing from" in l)
    annotations = json.load(open(f"{fixtures}/detector/streams/{name}.events.json"))["events"]
    starts = [(t, e) for t, e in lines if e["type"] == "start"]
    stops = {e["id"]: e for _, e in lines if e["type"] == "stop"}
    print(f"{name}: {len(starts)} start lines, {sum(1 for e in stops.values() if e.get('confirmed') is False)} unconfirmed")
    for a in annotations:
        hits = [(t, e) for t, e in starts if e["event"] == a["event"] and e["id"] in stops and stops[e["id"]].get("confirmed", True)
                and e["start"] <= a["end"] + 1.5 and stops[e["id"]]["end"] >= a["start"] - 1.5]
        if not hits:
            print(f"  {a['event']} at {a['start']}: MISSED"); continue
        t, e = min(hits, key=lambda h: abs(h[1]["start"] - a["start"]))
        # The line's `time` is wall-clock at `start` through the newest captured sample, so arrival minus
        # (time - start) is the stream position when the line arrived.
        when = time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + float("0." + e["time"][20:23])
        position = t - (when - e["start"])
        latencies.append(position - a["start"])
        check.append(t - origin - a["start"])
        print(f"  {a['event']} at {a['start']:.3f}: start {e['start']:.2f}, line at stream {position:.2f} s, latency {position - a['start']:.2f} s"
              f" (from capture start: {t - origin - a['start']:.2f} s)")
latencies.sort()
rank = lambda p: latencies[max(0, math.ceil(p * len(latencies)) - 1)]  # nearest rank
print(f"start-line latency over {len(latencies)} events: p50 {rank(0.5):.2f} s, p95 {rank(0.95):.2f} s, max {latencies[-1]:.2f} s"
      f" (from capture start: max {max(check):.2f} s)")
PY
