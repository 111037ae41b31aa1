import CALSA
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed alsa-lib call: which call, on which device, the (negative errno) code, and a hint.
public struct ALSAError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The code alsa-lib returned: a negative errno such as -ENOENT.
    public var code: Int32
    /// The alsa-lib function that failed, e.g. "snd_pcm_open".
    public var function: String
    /// The PCM name as configured, e.g. "hw:1".
    public var device: String
    /// alsa-lib's own last message on the capture thread, e.g. "Unknown PCM late", if any.
    public var detail: String?

    /// Creates an error for `function` on `device` with alsa-lib's negative `code`.
    public init(code: Int32, function: String, device: String, detail: String? = nil) {
        self.code = code
        self.function = function
        self.device = device
        self.detail = detail
    }

    /// snd_strerror's text for `code`.
    public var message: String { String(cString: snd_strerror(code)) }

    /// What to check or do, when there is something useful to say.
    public var hint: String? {
        switch -code {
        case ENOENT:
            return "no such PCM or card: list capture PCMs with `arecord -L` and cards with `arecord -l`"
        case ENODEV, ENXIO:
            return "the device is gone (unplugged?); capture resumes when it returns"
        case EBUSY:
            return "another program is capturing from it: stop that program, or capture through `dsnoop` or the sound server (`default`)"
        case EACCES, EPERM:
            return "permission denied: add the daemon's user to the `audio` group"
        case EINVAL:
            return "the device rejected the parameters: try `plughw:` instead of `hw:`, or another rate, format or channel count"
        case EPIPE:
            return "overrun: audio was not read in time"
        case ESTRPIPE:
            return "the device was suspended (system sleep)"
        case EIO:
            return "input/output error from the device or its driver"
        default:
            return nil
        }
    }

    public var description: String {
        var text = "ALSA device '\(device)': \(function) failed: \(message) (\(code))"
        if let detail, !detail.isEmpty { text += " [\(detail)]" }
        if let hint { text += "; \(hint)" }
        return text
    }
}

/// Interleaved PCM sample formats the capture converts from, in default order of preference.
public enum SampleFormat: String, CaseIterable, Sendable {
    case float32 = "FLOAT_LE"
    case s32 = "S32_LE"
    case s16 = "S16_LE"
    case s24 = "S24_LE"      // 24 bits in the low three bytes of a 32-bit word
    case s24packed = "S24_3LE"
    case float64 = "FLOAT64_LE"
    case s8 = "S8"
    case u8 = "U8"

    /// The alsa-lib constant.
    public var alsaFormat: snd_pcm_format_t {
        switch self {
        case .float32: return SND_PCM_FORMAT_FLOAT_LE
        case .s32: return SND_PCM_FORMAT_S32_LE
        case .s16: return SND_PCM_FORMAT_S16_LE
        case .s24: return SND_PCM_FORMAT_S24_LE
        case .s24packed: return SND_PCM_FORMAT_S24_3LE
        case .float64: return SND_PCM_FORMAT_FLOAT64_LE
        case .s8: return SND_PCM_FORMAT_S8
        case .u8: return SND_PCM_FORMAT_U8
        }
    }

    /// Bytes one sample of one channel occupies.
    public var bytesPerSample: Int {
        switch self {
        case .float32, .s32, .s24: return 4
        case .s16: return 2
        case .s24packed: return 3
        case .float64: return 8
        case .s8, .u8: return 1
        }
    }

    /// Averages the channels of `frames` interleaved little-endian frames into mono Floats in
    /// [-1, 1) (integers are scaled by 2^-(bits-1)). No allocation.
    public func downmix(_ raw: UnsafeRawPointer, frames: Int, channels: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .float32:
            mix(raw, frames, channels, out) { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: UInt32.self))) }
        case .s32:
            mix(raw, frames, channels, out) { Float(Int32(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: Int32.self))) * 0x1p-31 }
        case .s16:
            mix(raw, frames, channels, out) { Float(Int16(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: Int16.self))) * 0x1p-15 }
        case .s24:
            mix(raw, frames, channels, out) {
                // Sign-extend from bit 23; the top byte is padding of unspecified value.
                let word = Int32(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: Int32.self))
                return Float((word << 8) >> 8) * 0x1p-23
            }
        case .s24packed:
            mix(raw, frames, channels, out) {
                let b0 = Int32($0.load(fromByteOffset: $1, as: UInt8.self))
                let b1 = Int32($0.load(fromByteOffset: $1 + 1, as: UInt8.self))
                let b2 = Int32($0.load(fromByteOffset: $1 + 2, as: Int8.self))
                return Float(b2 << 16 | b1 << 8 | b0) * 0x1p-23
            }
        case .float64:
            mix(raw, frames, channels, out) { Float(Double(bitPattern: UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: UInt64.self)))) }
        case .s8:
            mix(raw, frames, channels, out) { Float($0.load(fromByteOffset: $1, as: Int8.self)) * 0x1p-7 }
        case .u8:
            mix(raw, frames, channels, out) { (Float($0.load(fromByteOffset: $1, as: UInt8.self)) - 128) * 0x1p-7 }
        }
    }

    @inline(__always)
    private func mix(_ raw: UnsafeRawPointer, _ frames: Int, _ channels: Int, _ out: UnsafeMutablePointer<Float>,
                     _ sample: (UnsafeRawPointer, Int) -> Float) {
        let width = bytesPerSample
        let frameBytes = width * channels
        let scale = 1 / Float(channels)
        for frame in 0..<frames {
            var offset = frame * frameBytes
            var sum: Float = 0
            for _ in 0..<channels {
                sum += sample(raw, offset)
                offset += width
            }
            out[frame] = channels == 1 ? sum : sum * scale
        }
    }
}

/// Where capture is, reported to the daemon (which logs it and tells socket clients).
public enum CaptureStatus: Sendable, CustomStringConvertible {
    /// Capturing from `device` at its `rate`, sample `format` and `channels`.
    case running(device: String, rate: Int, format: String, channels: Int)
    /// The device failed or is absent; another attempt follows in `retryIn` seconds.
    case deviceUnavailable(device: String, error: ALSAError, retryIn: Double)
    /// The device failed and `exitOnDeviceError` is set: capture has ended.
    case fatal(ALSAError)
    /// `stop()` ended capture.
    case stopped

    public var description: String {
        switch self {
        case let .running(device, rate, format, channels):
            return "capturing from '\(device)': \(rate) Hz, \(format), \(channels) channel(s)"
        case let .deviceUnavailable(_, error, retryIn):
            return "\(error); retrying in \(retryIn) s"
        case let .fatal(error):
            return "fatal: \(error)"
        case .stopped:
            return "capture stopped"
        }
    }
}

/// What to capture and how to behave when the device fails.
public struct CaptureConfig: Sendable {
    /// Any ALSA PCM name: "hw:1", "plughw:1,0", "default", a plugin from asound.conf.
    public var device: String
    /// Rate of the samples written to the ring (the model's rate).
    public var targetRate: Int
    /// Period length; the thread wakes once per period.
    public var periodMilliseconds: Int = 32
    /// ALSA buffer length in periods (how long a stall is absorbed before an overrun).
    public var periodsPerBuffer: Int = 4
    /// Report `.fatal` on the first device error instead of retrying.
    public var exitOnDeviceError = false
    /// First retry delay in seconds; doubles per failure up to `retryMax`.
    public var retryInitial = 0.5
    /// Longest retry delay in seconds.
    public var retryMax = 30.0
    /// Capture at this device rate and resample with soxr (nil: prefer `targetRate`, else the
    /// nearest rate the device offers). alsa-lib's own resampling is always disabled.
    public var captureRate: Int? = nil
    /// Capture this many channels and average them (nil: the fewest the device offers).
    public var channels: Int? = nil
    /// Require this sample format (nil: the first of `SampleFormat.allCases` the device offers).
    public var format: SampleFormat? = nil
    /// Deliver no faster than real time. For sources such as the `file`/`null` plugins that
    /// produce audio as fast as it is read (tests, replays); leave off for real devices.
    public var paceToRealTime = false

    /// A configuration with defaults for everything but the device and the target rate.
    public init(device: String, targetRate: Int) {
        self.device = device
        self.targetRate = targetRate
    }
}

/// Capture counters and the negotiated device setup, readable from any thread.
public struct CaptureStats: Sendable, Equatable {
    /// Overruns (-EPIPE) recovered from.
    public var overruns: Int = 0
    /// Suspends (-ESTRPIPE) recovered from.
    public var suspends: Int = 0
    /// Device frames read since start (at `deviceRate`).
    public var framesCaptured: Int64 = 0
    /// Successful re-opens after a device failure.
    public var reconnects: Int = 0
    /// Seconds of audio lost to overruns, suspends and reconnects, filled with silence so that stream time stays
    /// wall-clock time.
    public var gapSeconds: Double = 0
    /// True while a device is open and streaming.
    public var isRunning = false
    /// Negotiated device rate, format, channels, period and buffer; nil while not running.
    public var deviceRate: Int? = nil
    public var format: String? = nil
    public var channels: Int? = nil
    public var periodFrames: Int? = nil
    public var bufferFrames: Int? = nil
    /// Samples held inside the resampler (latency at the target rate); 0 without resampling.
    public var resamplerDelaySamples: Double = 0
}
