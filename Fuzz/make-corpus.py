#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (Fuzz/corpus/<target>/seed-*): small valid inputs of every kind the
readers take. Needs only Python 3 and libsndfile (the audio seeds are written through it with ctypes); torch is not
needed: its pickle layout is reproduced with stand-in classes. Found crashes are kept beside the seeds as crash-*.

    Fuzz/make-corpus.py [FIXTURES=../shared/fixtures]   # the fixtures give one real torch pickle; optional

A rerun rewrites three seeds with other bytes (OGG stream serial numbers, the float WAV's PEAK time stamp); the
committed ones are as good.
"""
import collections, ctypes, ctypes.util, io, json, math, os, pickle, shutil, struct, sys, types, zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "..", "shared", "fixtures")


def out(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def clear_seeds():
    for target in ["checkpoint", "pickle", "audio", "config"]:
        d = os.path.join(ROOT, "corpus", target)
        for name in os.listdir(d) if os.path.isdir(d) else []:
            if name.startswith("seed-"):
                os.remove(os.path.join(d, name))


# --- torch.save, without torch ------------------------------------------------------------------------------------

def module(name):
    """A stand-in module (and its parents), so pickle finds globals by their torch, numpy or Lightning names."""
    if "." in name:
        module(name.rsplit(".", 1)[0])
    m = sys.modules.get(name) or types.ModuleType(name)
    sys.modules[name] = m
    return m


def stand_in(module_name, name, base=object, **attrs):
    """A class or function pickled by reference as module_name.name, as torch's own are."""
    cls = type(name, (base,), dict(attrs))
    cls.__module__ = module_name
    cls.__qualname__ = name
    setattr(module(module_name), name, cls)
    return cls


for s in ["Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "ComplexFloat"]:
    stand_in("torch", s + "Storage")
rebuild_tensor_v2 = stand_in("torch._utils", "_rebuild_tensor_v2")
rebuild_parameter = stand_in("torch._utils", "_rebuild_parameter")
ModelCheckpoint = stand_in("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
numpy_scalar = stand_in("numpy.core.multiarray", "scalar")
numpy_dtype = stand_in("numpy", "dtype")


class Storage:
    FORMATS = {"Float": "<f", "Double": "<d", "Half": "<e", "Long": "<q", "Int": "<i", "Short": "<h", "Char": "<b", "Byte": "<B", "Bool": "<?"}

    def __init__(self, kind, key, values, numel=None):
        self.kind, self.key, self.values = kind, key, values
        self.numel = len(values) if numel is None else numel

    def bytes(self):
        if self.kind == "BFloat16":  # the high half of each float32
            return b"".join(struct.pack("<f", v)[2:] for v in self.values)
        return b"".join(struct.pack(self.FORMATS.get(self.kind, "<B"), v) for v in self.values)


class Tensor:
    def __init__(self, storage, shape, stride=None, offset=0):
        self.storage, self.shape, self.offset = storage, tuple(shape), offset
        if stride is None:
            stride, acc = [], 1
            for d in reversed(shape):
                stride.insert(0, acc)
                acc *= d
        self.stride = tuple(stride)

    def __reduce__(self):
        return (rebuild_tensor_v2, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict()))


class Parameter:
    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        return (rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class Reduced:
    """Any other object, pickled as a call of a global (numpy scalars and dtypes in Lightning checkpoints)."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def dumps(obj, protocol=2):
    storages = {}

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                storages[o.key] = o
                return ("storage", getattr(sys.modules["torch"], o.kind + "Storage"), o.key, "cpu", o.numel)
            return None

    f = io.BytesIO()
    TorchPickler(f, protocol=protocol).dump(obj)
    return f.getvalue(), storages


def torch_zip(obj, archive="archive", protocol=2, zip64=False, skip=()):
    """The layout of torch.save: stored entries, data aligned to 64 bytes with a padding extra field."""
    pkl, storages = dumps(obj, protocol)
    entries = [("data.pkl", pkl), (".format_version", b"1"), (".storage_alignment", b"64"), ("byteorder", b"little")]
    entries += [("data/" + k, s.bytes()) for k, s in sorted(storages.items()) if k not in skip]
    entries += [("version", b"3\n"), (".data/serialization_id", b"1234567890")]
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(archive + "/" + name, date_time=(1980, 1, 1, 0, 0, 0))
            header = 30 + len(info.filename.encode()) + 4
            pad = (64 - (f.tell() + header) % 64) % 64
            info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
            with z.open(info, "w", force_zip64=zip64) as e:
                e.write(data)
    return f.getvalue()


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def floats(n, start=1.0):
    return [start + 0.5 * i for i in range(n)]


def small_state_dict(prefix=""):
    """Every storage type the loader reads, a transposed view, an offset view and a scalar; storages "0"-"7" hold at
    most 64 bytes, the size the pickle target's archive gives each."""
    f = Storage("Float", "0", floats(6))
    return collections.OrderedDict([
        (prefix + "w", Tensor(f, [3, 2], [1, 3])),
        (prefix + "w_tail", Tensor(f, [2], offset=4)),
        (prefix + "n", Tensor(Storage("Long", "1", [5]), [])),
        (prefix + "h", Tensor(Storage("Half", "2", [0.5, -2.0, 65504.0, 6e-8]), [4])),
        (prefix + "bf", Tensor(Storage("BFloat16", "3", [1.0, -3.5, 1e30, 0.0]), [2, 2])),
        (prefix + "d", Tensor(Storage("Double", "4", [1.0, -1e-300]), [2])),
        (prefix + "i", Tensor(Storage("Int", "5", [1, -2, 3]), [3])),
        (prefix + "b", Tensor(Storage("Bool", "6", [True, False]), [2])),
        (prefix + "u", Tensor(Storage("Byte", "7", [0, 255, 7]), [3])),
    ])


def lightning(state_dict):
    """The extras of a Lightning 1.5 training checkpoint, which the loader must skip without executing."""
    dtype = Reduced(numpy_dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0))
    return {
        "epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.5.10",
        "state_dict": state_dict,
        "callbacks": {ModelCheckpoint: {"best_model_score": Reduced(numpy_scalar, (dtype, b"\x00" * 6 + b"\xf0\x3f")), "dirpath": "/tmp"}},
        "optimizer_states": [{"state": {0: {"step": 3, "exp_avg": Tensor(Storage("Float", "99", [0.0], numel=1 << 40), [4])}},
                              "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0, 1]}]}],
        "lr_schedulers": [{"last_epoch": 3, "_last_lr": [1e-4]}],
        "native_amp_scaling_state": {},
    }


def skeleton():
    """The tensor names and shapes of htsat-tiny (embed 16, depths 2,2,6,2) with 8 mel bins, so the architecture is
    inferred and checked. Only the mel filterbank (all zero, storage "7") is readable; every other tensor has a
    storage type the loader does not read."""
    opaque = Storage("ComplexFloat", "1", [0] * 8)
    sd = collections.OrderedDict()
    sd["sed_model.logmel_extractor.melW"] = Tensor(Storage("Float", "7", [0.0] * 16), [2, 8])
    shapes = {"bn0.weight": [8], "patch_embed.proj.weight": [16, 1, 4, 4], "tscam_conv.weight": [527, 128, 2, 3]}
    for i, (depth, heads) in enumerate(zip([2, 2, 6, 2], [1, 2, 4, 8])):
        for j in range(depth):
            shapes["layers.%d.blocks.%d.norm1.weight" % (i, j)] = [16 << i]
            if j % 2 == 1 and i < 3:
                windows = (64 >> i) // 8
                shapes["layers.%d.blocks.%d.attn_mask" % (i, j)] = [windows * windows, 64, 64]
        shapes["layers.%d.blocks.0.attn.relative_position_bias_table" % i] = [225, heads]
    for key, shape in shapes.items():
        sd["sed_model." + key] = Tensor(opaque, shape, [0] * len(shape))
    return sd


def tiny_model():
    """A whole model the loader builds: one stage of one block (embed 16, window 8, spec_size 256, 64 mel bins from
    a 2-bin filterbank, so 32 kHz), one class; about 20 kB. The weights are a deterministic ramp."""
    tensors, count = {}, [0]

    def f32(name, *shape):
        n = math.prod(shape)
        values = [((count[0] + i) % 17 - 8) / 64 for i in range(n)]
        count[0] += n
        tensors[name] = ("F32", list(shape), struct.pack("<%df" % n, *values))

    # The Swin relative position index of an 8 x 8 window, as uint8 (every value is below 225).
    coords = [(h, w) for h in range(8) for w in range(8)]
    index = bytes((a[0] - b[0] + 7) * 15 + (a[1] - b[1] + 7) for a in coords for b in coords)
    tensors["logmel_extractor.melW"] = ("F32", [2, 64], bytes(2 * 64 * 4))  # with n_fft 2 every filter is empty at 32 kHz
    for p in ["weight", "bias", "running_mean"]:
        f32("bn0." + p, 64)
    tensors["bn0.running_var"] = ("F32", [64], struct.pack("<64f", *[1.0] * 64))
    f32("patch_embed.proj.weight", 16, 1, 4, 4); f32("patch_embed.proj.bias", 16)
    f32("patch_embed.norm.weight", 16); f32("patch_embed.norm.bias", 16)
    b = "layers.0.blocks.0."
    f32(b + "norm1.weight", 16); f32(b + "norm1.bias", 16)
    f32(b + "attn.qkv.weight", 48, 16); f32(b + "attn.qkv.bias", 48)
    f32(b + "attn.relative_position_bias_table", 225, 1)
    tensors[b + "attn.relative_position_index"] = ("U8", [64, 64], index)
    f32(b + "attn.proj.weight", 16, 16); f32(b + "attn.proj.bias", 16)
    f32(b + "norm2.weight", 16); f32(b + "norm2.bias", 16)
    f32(b + "mlp.fc1.weight", 64, 16); f32(b + "mlp.fc1.bias", 64)
    f32(b + "mlp.fc2.weight", 16, 64); f32(b + "mlp.fc2.bias", 16)
    f32("norm.weight", 16); f32("norm.bias", 16)
    f32("tscam_conv.weight", 1, 16, 16, 3); f32("tscam_conv.bias", 1)
    f32("head.weight", 1, 1); f32("head.bias", 1)
    return safetensors(tensors, metadata={"format": "pt"})


def write_weights():
    plain = small_state_dict()
    out("pickle", "plain-p2.pkl", dumps(plain)[0])
    out("pickle", "plain-p4.pkl", dumps(dict(plain), protocol=4)[0])
    out("pickle", "plain-p5.pkl", dumps(plain, protocol=5)[0])
    out("pickle", "text-p0.pkl", dumps({"w": 1, "x": [1.5, "s", None, True], "t": (1, 2)}, protocol=0)[0])
    out("pickle", "parameters.pkl", dumps(collections.OrderedDict((k, Parameter(v)) for k, v in small_state_dict("model.").items()))[0])
    out("pickle", "lightning.pkl", dumps(lightning(small_state_dict("sed_model.")))[0])
    out("pickle", "skeleton.pkl", dumps(skeleton())[0])

    out("checkpoint", "plain.pt", torch_zip(plain))
    out("checkpoint", "zip64.pt", torch_zip(plain, zip64=True))
    out("checkpoint", "lightning.ckpt", torch_zip(lightning(small_state_dict("sed_model.")), archive="htsat", skip={"99"}))
    out("checkpoint", "skeleton.ckpt", torch_zip(skeleton()))
    out("checkpoint", "tiny-model.safetensors", tiny_model())
    f32 = lambda vals: struct.pack("<%df" % len(vals), *vals)
    out("checkpoint", "all-dtypes.safetensors", safetensors({
        "a": ("F32", [2, 2], f32([1, 2, 3, 4])),
        "h": ("F16", [3], struct.pack("<3e", 0.5, -2.0, 6e-8)),
        "bf": ("BF16", [2], f32([1.0, -3.5])[2:4] + f32([1e30])[2:4]),
        "d": ("F64", [2], struct.pack("<2d", 1.0, -1e-300)),
        "i64": ("I64", [2], struct.pack("<2q", 7, -7)),
        "i32": ("I32", [], struct.pack("<i", 3)),
        "i16": ("I16", [2], struct.pack("<2h", 1, -1)),
        "i8": ("I8", [2], struct.pack("<2b", 1, -1)),
        "u8": ("U8", [3], bytes([0, 128, 255])),
        "flags": ("BOOL", [2], bytes([1, 0])),
        "complex": ("C64", [1], b"\0" * 8),
        "empty": ("F32", [0, 3], b""),
    }, metadata={"format": "pt"}))
    out("checkpoint", "prefixed.safetensors", safetensors({
        "model.w": ("F32", [2], f32([1, 2])), "model.relative_position_index": ("I64", [2], struct.pack("<2q", 0, 1))}))
    # A real torch pickle (torch 2, a Lightning checkpoint of the detector), when the fixtures are there.
    real = os.path.join(FIXTURES, "detector", "detector.ckpt")
    if os.path.exists(real):
        with zipfile.ZipFile(real) as z:
            out("pickle", "detector-torch.pkl", z.read(next(n for n in z.namelist() if n.endswith("/data.pkl"))))


# --- audio, through libsndfile --------------------------------------------------------------------------------------

class SF_INFO(ctypes.Structure):
    _fields_ = [("frames", ctypes.c_int64), ("samplerate", ctypes.c_int), ("channels", ctypes.c_int),
                ("format", ctypes.c_int), ("sections", ctypes.c_int), ("seekable", ctypes.c_int)]


def write_audio():
    sf = ctypes.CDLL(ctypes.util.find_library("sndfile") or "libsndfile.so.1")
    sf.sf_open.restype = ctypes.c_void_p
    sf.sf_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(SF_INFO)]
    sf.sf_writef_float.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64]
    sf.sf_close.argtypes = [ctypes.c_void_p]
    SFM_WRITE = 0x20
    WAV, AIFF, AU, W64, WAVEX, FLAC, CAF, OGG, RF64, MPEG = 0x10000, 0x20000, 0x30000, 0xB0000, 0x130000, 0x170000, 0x180000, 0x200000, 0x220000, 0x230000
    S8, S16, S24, S32, U8, FLOAT, DOUBLE, ULAW, ALAW, IMA, MSADPCM, GSM, VORBIS, OPUS, MP3 = 1, 2, 3, 4, 5, 6, 7, 0x10, 0x11, 0x12, 0x13, 0x20, 0x60, 0x64, 0x82
    cases = [
        ("pcm16-32k-mono.wav", WAV | S16, 32000, 1, 160), ("u8-8k-mono.wav", WAV | U8, 8000, 1, 64),
        ("float-48k-stereo.wav", WAV | FLOAT, 48000, 2, 96), ("pcm24-44k-3ch.wav", WAVEX | S24, 44100, 3, 64),
        ("ima-16k.wav", WAV | IMA, 16000, 1, 505), ("msadpcm-22k-stereo.wav", WAV | MSADPCM, 22050, 2, 244),
        ("ulaw-8k.wav", WAV | ULAW, 8000, 1, 80), ("gsm-8k.wav", WAV | GSM, 8000, 1, 320),
        ("pcm16-44k-stereo.aiff", AIFF | S16, 44100, 2, 64), ("alaw-8k.au", AU | ALAW, 8000, 1, 80),
        ("pcm32-96k.caf", CAF | S32, 96000, 1, 96), ("double-32k.w64", W64 | DOUBLE, 32000, 1, 64),
        ("pcm16-32k.rf64", RF64 | S16, 32000, 1, 64), ("pcm16-32k.flac", FLAC | S16, 32000, 1, 320),
        ("pcm24-44k-stereo.flac", FLAC | S24, 44100, 2, 200), ("s8-100hz.flac", FLAC | S8, 100, 1, 50),
        ("vorbis-32k.ogg", OGG | VORBIS, 32000, 1, 320), ("opus-48k.ogg", OGG | OPUS, 48000, 1, 960),
        ("mp3-32k.mp3", MPEG | MP3, 32000, 1, 1152),
    ]
    tmp = os.path.join(ROOT, ".seed.tmp")
    for name, fmt, rate, channels, frames in cases:
        info = SF_INFO(0, rate, channels, fmt, 0, 0)
        handle = sf.sf_open(tmp.encode(), SFM_WRITE, ctypes.byref(info))
        if not handle:
            print("skipped %s: libsndfile cannot write it" % name)
            continue
        samples = [0.5 * math.sin(2 * math.pi * 440 * (i // channels) / rate * (1 + (i % channels))) for i in range(frames * channels)]
        sf.sf_writef_float(handle, (ctypes.c_float * len(samples))(*samples), frames)
        sf.sf_close(handle)
        with open(tmp, "rb") as f:
            out("audio", name, f.read())
    os.remove(tmp)


# --- configuration --------------------------------------------------------------------------------------------------

def write_configs():
    with open(os.path.join(ROOT, "..", "config.example.json"), "rb") as f:
        out("config", "example.json", f.read())
    out("config", "minimal.json", b'{"events": ["dog"]}\n')
    out("config", "comments-bom.json", "\ufeff// header comment\n{\n  /* block */ \"events\": [\"siren\", \"Speech\"], // trailing\n"
        "  \"_events\": \"documentation\", \"_events\": \"repeated\",\n  \"device\": \"plughw:CARD=Mic\"\n}\n".encode())
    out("config", "everything.json", json.dumps({
        "model": "model.ckpt", "labels": None, "preset": "esc50", "sample_rate": 44100, "hop_size": 441, "clip_samples": 220500,
        "device": "default", "period_ms": 20, "exit_on_device_error": True, "hop_seconds": 0.5, "threads": 2,
        "precision": "float32", "settle_seconds": None, "onset_settle_seconds": 0.25,
        "events": ["dog", "Civil defense siren", "caf\u00e9 \U0001F600"],
        "event_settings": {"dog": {"on_threshold": 0.6, "max_duration": None}, "Civil defense siren": {"min_duration": 1e-1}},
        "defaults": {"on_threshold": 0.5, "off_threshold": 0.3, "min_duration": 0.3, "merge_gap": 1, "max_duration": 30},
        "outputs": {"stdout": False, "socket": "/run/htsatd/events.sock", "socket_mode": "0660", "socket_group": "root",
                    "log_file": "events.log", "max_client_backlog": 65536},
        "mqtt": {"url": "mqtts://user@broker.local:8883", "node": "kitchen", "prefix": "htsatd", "client_id": "c1",
                 "qos": 1, "keepalive": 30, "queue_size": 100, "ha_discovery": True, "discovery_prefix": "homeassistant"},
        "clips": {"dir": "clips", "pre_roll": 2, "post_roll": 1.5, "format": "flac", "max_seconds": 60, "max_age_days": 7,
                  "max_bytes": 1000000000, "min_free_percent": 5, "spectrogram": True},
        "stats_interval": 0, "metrics_file": "metrics.prom", "metrics_listen": "unix:/run/htsatd/metrics.sock", "log_level": "debug",
    }, indent=1, ensure_ascii=True).encode())
    out("config", "values.json", b'{"events":["a"],"hop_seconds":-1.5E+2,"threads":3,"metrics_listen":"[::1]:9464",'
        b'"device":"\\ud83d\\ude00\\u0000\\/\\b\\f\\n\\r\\t","defaults":{"max_duration":null},"outputs":{"socket_mode":"777"}}')
    out("config", "out-of-range.json", b'{"events":["a"],"threads":1e400}')


if __name__ == "__main__":
    clear_seeds()
    write_weights()
    write_audio()
    write_configs()
    for target in ["checkpoint", "pickle", "audio", "config"]:
        d = os.path.join(ROOT, "corpus", target)
        files = os.listdir(d)
        print("%s: %d files, %d bytes" % (target, len(files), sum(os.path.getsize(os.path.join(d, n)) for n in files)))
