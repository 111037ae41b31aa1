import Foundation

/// The detector's timing: the window hop and the lags of its two read-outs, checked against the window length.
///
/// The configuration (file and flags) and the daemon both go through `resolved(clipSeconds:)`, so each rule has
/// one definition.
public struct DetectionTiming: Equatable, Sendable {
    /// Seconds between windows.
    public var hopSeconds: Double
    /// Lag of the settled read-out; nil: `Detector.defaultSettle` (clip − hop, full averaging).
    public var settleSeconds: Double?
    /// Lag of the early start read-out; nil: `Detector.defaultOnsetSettle`, capped at the settle lag.
    public var onsetSettleSeconds: Double?

    /// Creates a timing; check it with `resolved(clipSeconds:)`.
    public init(hopSeconds: Double = 1, settleSeconds: Double? = nil, onsetSettleSeconds: Double? = nil) {
        self.hopSeconds = hopSeconds
        self.settleSeconds = settleSeconds
        self.onsetSettleSeconds = onsetSettleSeconds
    }

    /// The lags in effect for windows of `clipSeconds`; throws naming the configuration key of a bad value.
    public func resolved(clipSeconds clip: Double) throws -> (settle: Double, onsetSettle: Double) {
        let window = "the window length, \(String(format: "%g", clip)) s"
        guard hopSeconds.isFinite, hopSeconds > 0, hopSeconds <= clip else {
            throw DetectionTimingError(field: "hop_seconds", value: hopSeconds, expected: "more than 0 and at most \(window)")
        }
        let settle = settleSeconds ?? Detector.defaultSettle(clipSeconds: clip, hopSeconds: hopSeconds)
        guard settle.isFinite, settle >= 0, settle <= clip else {
            throw DetectionTimingError(field: "settle_seconds", value: settle, expected: "0 to \(window), or null for the default")
        }
        let onset = onsetSettleSeconds ?? min(Detector.defaultOnsetSettle, settle)
        guard onset.isFinite, onset >= 0, onset <= settle else {
            throw DetectionTimingError(field: "onset_settle_seconds", value: onset,
                                       expected: "0 to settle_seconds (\(String(format: "%g", settle)) s), or null for the default")
        }
        return (settle, onset)
    }
}

/// A timing value outside its range: the configuration key, the value and what is allowed.
public struct DetectionTimingError: Error, CustomStringConvertible, Equatable {
    public let field: String
    public let value: Double
    public let expected: String

    public var description: String { "\(field) \(value) is not allowed; expected \(expected)" }
}
