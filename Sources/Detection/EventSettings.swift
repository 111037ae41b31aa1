/// Per-event tracking parameters: hysteresis thresholds and timing, in seconds.
public struct EventSettings: Equatable, Sendable {
    /// The group score must reach this to start an event.
    public var onThreshold: Float
    /// Once started, an event lasts while the score stays at or above this (hysteresis); `off <= on`.
    public var offThreshold: Float
    /// The score must stay at or above `onThreshold` this long before the event is confirmed.
    public var minDuration: Double
    /// A dip below `offThreshold` no longer than this does not end the event (a beeping alarm stays one event).
    public var mergeGap: Double
    /// Events longer than this are split into consecutive events; nil means no limit.
    public var maxDuration: Double?

    /// Creates settings; call `validate()` before use.
    public init(onThreshold: Float = 0.5, offThreshold: Float = 0.35, minDuration: Double = 0.25,
                mergeGap: Double = 1.0, maxDuration: Double? = nil) {
        self.onThreshold = onThreshold
        self.offThreshold = offThreshold
        self.minDuration = minDuration
        self.mergeGap = mergeGap
        self.maxDuration = maxDuration
    }

    /// Checks the values, naming the event in the error. The only copy of these rules: the config maps its errors to keys.
    public func validate(event: String) throws {
        func check(_ ok: Bool, _ field: String, _ value: Any, _ expected: String, _ reason: @autoclosure () -> String) throws {
            if !ok { throw EventSettingsError(event: event, field: field, value: "\(value)", expected: expected, reason: reason()) }
        }
        try check(onThreshold > 0 && onThreshold < 1, "on_threshold", onThreshold, "a score between 0 and 1 (exclusive)",
                  "on threshold \(onThreshold) must be between 0 and 1 (exclusive)")
        try check(offThreshold > 0 && offThreshold < 1, "off_threshold", offThreshold, "a score between 0 and 1 (exclusive)",
                  "off threshold \(offThreshold) must be between 0 and 1 (exclusive)")
        try check(offThreshold <= onThreshold, "off_threshold", offThreshold,
                  "at most on_threshold (\(onThreshold)): the event ends when the score falls below off_threshold",
                  "off threshold \(offThreshold) must not exceed the on threshold \(onThreshold)")
        try check(minDuration.isFinite && minDuration >= 0, "min_duration", minDuration, "seconds, 0 or more",
                  "minimum duration \(minDuration) s must be 0 or more")
        try check(mergeGap.isFinite && mergeGap >= 0, "merge_gap", mergeGap, "seconds, 0 or more",
                  "merge gap \(mergeGap) s must be 0 or more")
        if let maxDuration {
            let expected = "seconds, at least min_duration (\(minDuration)), or null for no limit"
            try check(maxDuration.isFinite && maxDuration > 0, "max_duration", maxDuration, expected,
                      "maximum duration \(maxDuration) s must be more than 0")
            try check(maxDuration >= minDuration, "max_duration", maxDuration, expected,
                      "maximum duration \(maxDuration) s must not be below the minimum duration \(minDuration) s")
        }
    }
}

/// An invalid event setting: which event, which field, and what is wrong.
public struct EventSettingsError: Error, CustomStringConvertible, Equatable {
    /// The event the settings belong to.
    public let event: String
    /// The field's configuration key, e.g. `off_threshold`.
    public let field: String
    /// The rejected value as text, e.g. `0.6`.
    public let value: String
    /// What is allowed, e.g. `at most on_threshold (0.4)`.
    public let expected: String
    /// What is wrong, in words.
    public let reason: String

    public var description: String { "event \"\(event)\": \(reason)" }
}
