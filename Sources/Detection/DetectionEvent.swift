import Foundation

/// One member label's score within an event.
public struct LabelScore: Equatable, Sendable {
    /// AudioSet display name.
    public var label: String
    /// Its highest fused score over the event so far.
    public var score: Float

    /// Creates a label score.
    public init(label: String, score: Float) {
        self.label = label
        self.score = score
    }
}

/// A start or stop of a detected event; times are seconds from the start of the stream.
public struct DetectionEvent: Equatable, Sendable {
    /// Whether the event begins or ends.
    public enum Kind: String, Sendable { case start, stop }

    /// Start or stop.
    public var kind: Kind
    /// Event name (built-in group or label slug).
    public var event: String
    /// Identifier shared by an event's start and stop lines.
    public var id: Int
    /// Onset, back-dated to the grid cell where the score first reached the on threshold.
    public var start: Double
    /// For a stop: when the score fell below the off threshold for good (or the forced end).
    public var end: Double?
    /// For a start: the highest group score until confirmation; for a stop: the peak over the event.
    public var score: Float
    /// Member labels by descending score: those above the label floor, and at least the top one.
    public var labels: [LabelScore]
    /// False on the stop of an early start the settled read-out did not confirm (its `end` is then start + min duration).
    public var confirmed: Bool = true

    /// Creates an event.
    public init(kind: Kind, event: String, id: Int, start: Double, end: Double? = nil, score: Float, labels: [LabelScore]) {
        self.kind = kind
        self.event = event
        self.id = id
        self.start = start
        self.end = end
        self.score = score
        self.labels = labels
    }

    /// `end - start` for a stop.
    public var duration: Double? { end.map { $0 - start } }
}

/// Turns events into single JSON lines; `clock` maps stream seconds to wall-clock time (file and live modes differ only there).
public struct EventLineEncoder: Sendable {
    private let clock: @Sendable (Double) -> Date
    private static let timeStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(identifier: "UTC")!)

    /// `date` as event lines spell `time`: ISO 8601, UTC, milliseconds.
    public static func timestamp(_ date: Date) -> String { timeStyle.format(date) }

    /// Creates an encoder with the stream clock.
    public init(clock: @escaping @Sendable (Double) -> Date) {
        self.clock = clock
    }

    /// A clock for a stream that began at `origin`.
    public static func clock(origin: Date) -> @Sendable (Double) -> Date {
        { origin.addingTimeInterval($0) }
    }

    /// The event as one JSON object without a trailing newline. `time` is the start (start lines) or end (stop lines).
    ///
    /// Keys come in a fixed, readable order (`type` first); every value is written by JSONEncoder, so strings are
    /// escaped properly.
    public func line(for event: DetectionEvent) -> String {
        let instant = rounded(event.kind == .start ? event.start : (event.end ?? event.start))
        var fields: [(String, String)] = [
            ("type", json(event.kind.rawValue)),
            ("event", json(event.event)),
            ("id", json(event.id)),
            ("start", json(rounded(event.start))),
        ]
        if event.kind == .stop, let end = event.end {
            fields.append(("end", json(rounded(end))))
            fields.append(("duration", json(rounded(end - event.start))))
            if !event.confirmed { fields.append(("confirmed", "false")) }
        }
        fields.append(("time", json(Self.timestamp(clock(instant)))))
        fields.append((event.kind == .start ? "score" : "peak_score", json(rounded(Double(event.score)))))
        let labels = event.labels.map { "{\"label\":\(json($0.label)),\"score\":\(json(rounded(Double($0.score))))}" }
        fields.append(("labels", "[" + labels.joined(separator: ",") + "]"))
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// One JSON value, written by JSONEncoder.
    private func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        // Strings, integers and finite doubles always encode; a non-finite double becomes null.
        guard let data = try? encoder.encode(value) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Three decimals: millisecond times, and scores to 0.001.
    private func rounded(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
}
