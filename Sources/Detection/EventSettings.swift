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

    /// Checks the values, naming the event in the error.
    public func validate(event: String) throws {
        func fail(_ reason: String) -> EventSettingsError { EventSettingsError(event: event, reason: reason) }
        guard onThreshold > 0, onThreshold < 1 else {
            throw fail("on threshold \(onThreshold) must be between 0 and 1 (exclusive)")
        }
        guard offThreshold > 0, offThreshold < 1 else {
            throw fail("off threshold \(offThreshold) must be between 0 and 1 (exclusive)")
        }
        guard offThreshold <= onThreshold else {
            throw fail("off threshold \(offThreshold) must not exceed the on threshold \(onThreshold)")
        }
        guard minDuration.isFinite, minDuration >= 0 else {
            throw fail("minimum duration \(minDuration) s must be 0 or more")
        }
        guard mergeGap.isFinite, mergeGap >= 0 else {
            throw fail("merge gap \(mergeGap) s must be 0 or more")
        }
        if let maxDuration {
            guard maxDuration.isFinite, maxDuration > 0 else {
                throw fail("maximum duration \(maxDuration) s must be more than 0")
            }
            guard maxDuration >= minDuration else {
                throw fail("maximum duration \(maxDuration) s must not be below the minimum duration \(minDuration) s")
            }
        }
    }
}

/// An invalid event setting: which event and what is wrong.
public struct EventSettingsError: Error, CustomStringConvertible, Equatable {
    /// The event the settings belong to.
    public let event: String
    /// What is wrong.
    public let reason: String

    public var description: String { "event \"\(event)\": \(reason)" }
}
