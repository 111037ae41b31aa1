#!/usr/bin/env python3
"""Test material for `htsatd enroll`, made from Debian-package sounds and espeak-ng (python3 stdlib + libsndfile).

    scripts/enroll-material.py OUTDIR [--target SOUND] [--seed N]

Writes, at 32 kHz mono 16-bit:
  positive-1..5.wav   the target sound (freedesktop `trash-empty`, a paper crumple, twice; --target picks another
                      freedesktop sound) at several gains over room noise
  negative-room.wav   20 s of room noise with near misses (other freedesktop sounds) and espeak-ng speech
  stream-1.wav, stream-2.wav (+ .events.json)
                      60 s held-out streams: the target at other gains (stream 2 in a reverberant "room"), held-out
                      near misses and speech between; annotated with each occurrence's start and end in seconds
The toy detector's trained outputs (speech, dog, siren, alarm) do not fire on the target; the tests check that too.
Needs sound-theme-freedesktop and espeak-ng (scripts/install-deps.sh installs both).
"""
import ctypes, ctypes.util, json, math, os, random, subprocess, sys, tempfile, wave

RATE = 32000
EVENT = "crumple"  # the annotated event name in the streams' .events.json
SOUNDS = "/usr/share/sounds/freedesktop/stereo"
sndfile = ctypes.CDLL(ctypes.util.find_library("sndfile") or "libsndfile.so.1")


class SFInfo(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int), ("channels", ctypes.c_int),
                ("format", ctypes.c_int), ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


sndfile.sf_open.restype = ctypes.c_void_p
sndfile.sf_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(SFInfo)]
sndfile.sf_readf_float.restype = ctypes.c_int64
sndfile.sf_readf_float.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64]
sndfile.sf_close.argtypes = [ctypes.c_void_p]


def read(path):
    """Mono float samples at RATE (downmixed; linear-interpolation resampling is plenty for test material)."""
    info = SFInfo()
    handle = sndfile.sf_open(path.encode(), 0x10, ctypes.byref(info))
    if not handle:
        sys.exit(f"enroll-material: cannot read {path}")
    buf = (ctypes.c_float * (info.frames * info.channels))()
    got = sndfile.sf_readf_float(handle, buf, info.frames)
    sndfile.sf_close(handle)
    ch = info.channels
    mono = [sum(buf[i * ch + c] for c in range(ch)) / ch for i in range(got)]
    if info.samplerate == RATE:
        return mono
    step = info.samplerate / RATE
    out = []
    for k in range(int(len(mono) / step)):
        x = k * step
        i = int(x)
        f = x - i
        out.append(mono[i] * (1 - f) + mono[min(i + 1, len(mono) - 1)] * f)
    return out


def speech(text, voice, tmp):
    path = os.path.join(tmp, "speech.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", path, text], check=True)
    return read(path)


def rms(x):
    return math.sqrt(sum(v * v for v in x) / max(len(x), 1))


def at_db(x, db):
    """`x` scaled so that its RMS over the sounding part is `db` dBFS."""
    peak = max(abs(v) for v in x) or 1
    loud = [v for v in x if abs(v) > 0.05 * peak]
    g = 10 ** (db / 20) / max(rms(loud), 1e-9)
    return [v * g for v in x]


def noise(n, db, rng, colour):
    """White, or brown-ish (leaky-integrated) noise at `db` dBFS RMS."""
    out, state = [], 0.0
    for _ in range(n):
        w = rng.uniform(-1, 1)
        state = 0.98 * state + w if colour == "brown" else w
        out.append(state)
    g = 10 ** (db / 20) / max(rms(out), 1e-9)
    return [v * g for v in out]


def room(x, rng):
    """A small reverberant room: a few decaying early reflections and a noisy tail (about 0.3 s RT60)."""
    taps = [(int(RATE * d), a) for d, a in [(0.011, 0.5), (0.023, 0.35), (0.037, 0.3), (0.052, 0.2)]]
    taps += [(int(RATE * (0.06 + 0.25 * rng.random())), 0.15 * math.exp(-6 * rng.random())) for _ in range(24)]
    out = list(x) + [0.0] * int(0.4 * RATE)
    for delay, a in taps:
        for i, v in enumerate(x):
            out[i + delay] += a * v
    return out


def mix(into, sound, at):
    i0 = int(at * RATE)
    for i, v in enumerate(sound):
        if 0 <= i0 + i < len(into):
            into[i0 + i] += v


def active_span(sound):
    """First and last sample above -40 dB of the peak, in seconds."""
    peak = max(abs(v) for v in sound)
    idx = [i for i, v in enumerate(sound) if abs(v) > 0.01 * peak]
    return idx[0] / RATE, idx[-1] / RATE


def write(path, samples):
    peak = max(1.0, max(abs(v) for v in samples) / 0.99)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(int(max(-32767, min(32767, v / peak * 32767))).to_bytes(2, "little", signed=True) for v in samples))


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    out = args[0]
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    name = args[args.index("--target") + 1] if "--target" in args else "trash-empty"
    sound = read(f"{SOUNDS}/{name}.oga")
    target = sound + [0.0] * int(0.35 * RATE) + sound  # the sound twice, as a bin lid or a doorbell sounds
    near = {name: read(f"{SOUNDS}/{name}.oga") for name in
            ["message-new-instant", "bell", "dialog-information", "service-login", "window-question", "phone-outgoing-calling",
             "message", "camera-shutter", "trash-empty", "dialog-warning", "complete", "suspend-error"]}
    near = {k: v for k, v in near.items() if k != name}
    pool = [k for k in near if k not in ("message-new-instant", "bell", "dialog-information", "service-login", "window-question")]
    with tempfile.TemporaryDirectory() as tmp:
        talk = [speech("The delivery will arrive tomorrow morning between nine and eleven.", "en", tmp),
                speech("Please remember to water the plants and close the kitchen window.", "en-us", tmp),
                speech("Das Wetter bleibt heute trocken und mild.", "de", tmp)]

    # Positives: 3-5 s, each at its own gain over its own noise.
    for k, (db, floor, colour) in enumerate([(-12, -52, "white"), (-18, -48, "brown"), (-8, -55, "brown"),
                                              (-22, -50, "white"), (-15, -46, "brown")], start=1):
        pad = rng.uniform(0.3, 1.2)
        clip = noise(int((len(target) / RATE + pad + rng.uniform(0.3, 1.0)) * RATE), floor, rng, colour)
        mix(clip, at_db(target, db), pad)
        write(f"{out}/positive-{k}.wav", clip)

    # Negatives: the room's normal sound with near misses and speech.
    neg = noise(20 * RATE, -50, rng, "brown")
    t = 0.5
    for other in [k for k in ["message-new-instant", "bell", "dialog-information", "service-login", "window-question"] if k in near]:
        mix(neg, at_db(near[other], -14), t)
        t += len(near[other]) / RATE + 1.0
    mix(neg, at_db(talk[0], -18), t)
    write(f"{out}/negative-room.wav", neg)

    # Held-out streams: other gains, another room, held-out distractors.
    for s, (floor, colour, reverb) in enumerate([(-50, "brown", False), (-44, "white", True)], start=1):
        stream = noise(60 * RATE, floor, rng, colour)
        events = []
        held = pool[:5]
        plan = [(4.0, "target", -10), (11.0, held[0], -14), (16.0, "speech", -16), (23.5, "target", -18),
                (30.0, held[1], -12), (34.0, held[2], -12), (38.5, "target", -6), (45.0, held[3], -14),
                (48.0, held[4], -12), (52.5, "target", -22 if s == 1 else -14)]
        for at, what, db in plan:
            at += rng.uniform(-0.4, 0.4)
            sound = target if what == "target" else talk[s] if what == "speech" else near[what]
            sound = at_db(sound, db)
            if reverb:
                sound = room(sound, rng)
            mix(stream, sound, at)
            if what == "target":
                a, b = active_span(sound)
                events.append({"event": EVENT, "start": round(at + a, 3), "end": round(at + b, 3)})
        write(f"{out}/stream-{s}.wav", stream)
        with open(f"{out}/stream-{s}.events.json", "w") as f:
            json.dump(events, f, indent=1)
    print(f"enroll-material: wrote 5 positives, 1 negative and 2 annotated streams to {out}")


main()
