import Detection
import Foundation

/// Everything that leaves the pipeline, typed; each case has one `Encodable` line definition.
public enum OutputMessage: Sendable, Equatable {
    /// An event started or stopped.
    case event(EventLine)
    /// The capture device's state changed.
    case status(StatusLine)
    /// Periodic counters.
    case stats(StatsLine)

    /// Which kind of message, for sinks to choose what they take.
    public enum Kind: Sendable, Hashable { case event, status, stats }

    /// This message's kind.
    public var kind: Kind {
        switch self {
        case .event: return .event
        case .status: return .status
        case .stats: return .stats
        }
    }

    /// The message as one JSON object on one line (no newline): `"type"` first, then a fixed field order.
    public var line: String {
        switch self {
        case .event(let m): return LineEncoder.encode(m)
        case .status(let m): return LineEncoder.encode(m)
        case .stats(let m): return LineEncoder.encode(m)
        }
    }
}

/// A message with its line, encoded once for every sink.
public struct EncodedMessage: Sendable {
    /// The typed message (sinks route and remember by it).
    public let message: OutputMessage
    /// What the sinks write.
    public let line: String

    /// Encodes `message`.
    public init(_ message: OutputMessage) {
        self.init(message, line: message.line)
    }

    /// A message with a given line (tests use this to follow lines through a sink).
    public init(_ message: OutputMessage, line: String) {
        self.message = message
        self.line = line
    }
}

/// The one JSON path of output lines (events, status, stats, and the tools' reports).
/// Keys come in the order each type encodes them (declaration order for synthesized conformances).
public enum LineEncoder {
    /// `value` as one JSON line without the newline.
    public static func encode<T: Encodable>(_ value: T) -> String {
        // Every line type rounds its numbers and replaces non-finite ones, so encoding cannot fail.
        guard let line = try? JSONLineEncoder.encode(value) else { preconditionFailure("unencodable output line \(value)") }
        return line
    }

    /// `date` as lines spell `time`: ISO 8601, UTC, milliseconds, rounded (the formatter truncates, which turned
    /// 51.3 s into "…51.299Z").
    static func timestamp(_ date: Date) -> String { timeStyle.format(date.addingTimeInterval(0.0005)) }
    private static let timeStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!)

    /// Three decimals (millisecond times, scores to 0.001); non-finite values become 0.
    public static func rounded(_ x: Double) -> Double { x.isFinite ? (x * 1000).rounded() / 1000 : 0 }
}

/// A start or stop line: `{"type":"start"|"stop","event","id","start",["end","duration",["confirmed"]],"time",
/// "score"|"peak_score","labels",["clip",["clip_truncated"]]}`.
public struct EventLine: Encodable, Sendable, Equatable {
    /// The detected event (times in stream seconds).
    public let event: DetectionEvent
    /// Wall-clock instant of the start (start lines) or the end (stop lines), as written.
    public let time: String
    /// The event's clip file, when clips are on (stop lines).
    public var clip: String?
    /// True when the event outlasted `clips.max_seconds`, so the clip holds only its first `max_seconds`.
    public var clipTruncated = false

    /// An event line; `clock` maps stream seconds to wall-clock time (file and live modes differ only there).
    public init(_ event: DetectionEvent, clock: (Double) -> Date) {
        self.event = event
        let instant = LineEncoder.rounded(event.kind == .start ? event.start : (event.end ?? event.start))
        time = LineEncoder.timestamp(clock(instant))
    }

    private struct Label: Encodable { let label: String; let score: Double }
    private enum Keys: String, CodingKey {
        case type, event, id, start, end, duration, confirmed, time, score, peakScore = "peak_score", labels
        case clip, clipTruncated = "clip_truncated"
    }

    public func encode(to encoder: Encoder) throws {
        let r = LineEncoder.rounded
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(event.kind.rawValue, forKey: .type)
        try c.encode(event.event, forKey: .event)
        try c.encode(event.id, forKey: .id)
        try c.encode(r(event.start), forKey: .start)
        if event.kind == .stop, let end = event.end {
            try c.encode(r(end), forKey: .end)
            try c.encode(r(end - event.start), forKey: .duration)
            if !event.confirmed { try c.encode(false, forKey: .confirmed) }
        }
        try c.encode(time, forKey: .time)
        try c.encode(r(Double(event.score)), forKey: event.kind == .start ? .score : .peakScore)
        try c.encode(event.labels.map { Label(label: $0.label, score: r(Double($0.score))) }, forKey: .labels)
        try c.encodeIfPresent(clip, forKey: .clip)
        if clip != nil, clipTruncated { try c.encode(true, forKey: .clipTruncated) }
    }
}

/// The capture device's state: `{"type":"status","state","device","time",…}`.
public struct StatusLine: Encodable, Sendable, Equatable {
    /// The states a device can be in.
    public enum State: String, Encodable, Sendable { case capturing, deviceUnavailable = "device_unavailable", deviceFailed = "device_failed", stopped }

    public var state: State
    public var device: String
    public var time: String
    /// While capturing: the negotiated rate, sample format and channel count.
    public var rate: Int?
    public var format: String?
    public var channels: Int?
    /// When unavailable or failed: what went wrong.
    public var error: String?
    /// When unavailable: seconds until the next attempt.
    public var retryIn: Double?

    /// A status line stamped `date`.
    public init(state: State, device: String, date: Date = Date(), rate: Int? = nil, format: String? = nil,
                channels: Int? = nil, error: String? = nil, retryIn: Double? = nil) {
        self.state = state
        self.device = device
        self.time = LineEncoder.timestamp(date)
        self.rate = rate
        self.format = format
        self.channels = channels
        self.error = error
        self.retryIn = retryIn.map(LineEncoder.rounded)
    }

    private enum Keys: String, CodingKey { case type, state, device, time, rate, format, channels, error, retryIn = "retry_in" }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode("status", forKey: .type)
        try c.encode(state, forKey: .state)
        try c.encode(device, forKey: .device)
        try c.encode(time, forKey: .time)
        try c.encodeIfPresent(rate, forKey: .rate)
        try c.encodeIfPresent(format, forKey: .format)
        try c.encodeIfPresent(channels, forKey: .channels)
        try c.encodeIfPresent(error, forKey: .error)
        try c.encodeIfPresent(retryIn, forKey: .retryIn)
    }
}

/// Periodic counters: `{"type":"stats","time",…}`; totals since start, rates over the last interval.
public struct StatsLine: Encodable, Sendable, Equatable {
    public var time: String
    /// CPU time over wall time in the interval, in percent of one core.
    public var cpuPercent: Double
    /// Inference time per second of audio (above 1 the daemon cannot keep up).
    public var realTimeFactor: Double
    public var meanInferenceMs: Double
    /// Windows run in the interval.
    public var windows: Int
    public var windowsSkippedTotal: Int
    public var overrunsTotal: Int
    public var reconnectsTotal: Int
    /// Connected socket clients.
    public var clients: Int

    /// A stats line stamped `date`; numbers rounded to 0.001.
    public init(date: Date = Date(), cpuPercent: Double, realTimeFactor: Double, meanInferenceMs: Double, windows: Int,
                windowsSkippedTotal: Int, overrunsTotal: Int, reconnectsTotal: Int, clients: Int) {
        time = LineEncoder.timestamp(date)
        self.cpuPercent = LineEncoder.rounded(cpuPercent)
        self.realTimeFactor = LineEncoder.rounded(realTimeFactor)
        self.meanInferenceMs = LineEncoder.rounded(meanInferenceMs)
        self.windows = windows
        self.windowsSkippedTotal = windowsSkippedTotal
        self.overrunsTotal = overrunsTotal
        self.reconnectsTotal = reconnectsTotal
        self.clients = clients
    }

    private enum Keys: String, CodingKey {
        case type, time, cpuPercent = "cpu_percent", realTimeFactor = "real_time_factor", meanInferenceMs = "mean_inference_ms",
             windows, windowsSkippedTotal = "windows_skipped_total", overrunsTotal = "overruns_total",
             reconnectsTotal = "reconnects_total", clients
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode("stats", forKey: .type)
        try c.encode(time, forKey: .time)
        try c.encode(cpuPercent, forKey: .cpuPercent)
        try c.encode(realTimeFactor, forKey: .realTimeFactor)
        try c.encode(meanInferenceMs, forKey: .meanInferenceMs)
        try c.encode(windows, forKey: .windows)
        try c.encode(windowsSkippedTotal, forKey: .windowsSkippedTotal)
        try c.encode(overrunsTotal, forKey: .overrunsTotal)
        try c.encode(reconnectsTotal, forKey: .reconnectsTotal)
        try c.encode(clients, forKey: .clients)
    }
}
