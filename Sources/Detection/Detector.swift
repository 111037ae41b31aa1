/// An event to detect: what it listens to and how it is tracked.
public struct EventSpec: Equatable, Sendable {
    /// The resolved event.
    public var definition: EventDefinition
    /// Its tracking parameters.
    public var settings: EventSettings

    /// Creates a spec.
    public init(definition: EventDefinition, settings: EventSettings) {
        self.definition = definition
        self.settings = settings
    }
}

/// Configuration errors of the detection core.
public enum DetectorError: Error, CustomStringConvertible, Equatable {
    /// No events were configured.
    case noEvents
    /// An event uses a model output the model does not have.
    case classOutOfRange(index: Int, classes: Int)
    /// The settle lag is outside [0, clip].
    case badSettle(Double, clipSeconds: Double)
    /// The early-onset lag is negative or longer than the settle lag.
    case badOnsetSettle(Double, settle: Double)
    /// The grid cell is not a positive length up to a clip.
    case badCell(Double)
    /// The window geometry is unusable.
    case badGeometry(String)
    /// The scheduler hop is unusable.
    case badHop(Double, clipSeconds: Double)

    public var description: String {
        switch self {
        case .noEvents: return "no events configured; name at least one (see 'htsatd events')"
        case let .classOutOfRange(index, classes):
            return "label index \(index) is outside the model's \(classes) outputs; use the labels file that belongs to the checkpoint"
        case let .badSettle(value, clip):
            return "settle lag \(value) s must be between 0 and the clip length \(clip) s"
        case let .badOnsetSettle(value, settle):
            return "onset settle lag \(value) s must be between 0 and the settle lag \(settle) s"
        case let .badCell(value): return "grid cell \(value) s must be positive, at least one sample and at most one clip"
        case let .badGeometry(problem): return "window geometry: \(problem)"
        case let .badHop(value, clip): return "window hop \(value) s must be at least one sample and at most the clip length \(clip) s"
        }
    }
}

/// The pure detection core: fuses overlapping windows' framewise scores and tracks every configured event.
///
/// Live and file modes feed it the same windows, so they emit the same events. Not thread-safe: one caller.
public final class Detector {
    /// Settle lag in seconds: how far behind the newest window end a grid cell is handed to the trackers.
    ///
    /// A cell is final, averaged over every window that will ever cover it, once it lies clip - hop behind the newest
    /// window end (9 s for 10 s windows every 1 s). A smaller lag averages only the newer windows, in which the cell sits
    /// near their right edge, and there the model keeps reporting a sound for seconds after it stopped: event ends come
    /// out late. Onsets are unaffected, and are announced from the early read-out (`defaultOnsetSettle`), so the settle
    /// lag only delays stop lines (about settle + merge gap after the end).
    ///
    /// Measured on the fixture streams (detector.ckpt, hop 1 s, on/off 0.6/0.4, min duration 0.25 s, merge gap 1 s;
    /// worst start / end error over the 6 annotated events; no misses, no spurious events at any value):
    ///
    ///     settle  10 s   9 s    8.5 s  8 s    7.5 s  7 s    6 s    4 s    2 s    0 s
    ///     start   0.48   0.48   0.48   0.47   0.47   0.48   0.47   0.41   0.29   0.29
    ///     end     0.74   0.74   1.11   1.48   1.98   2.48   2.74   4.74   5.48   7.88
    ///
    /// Hence the default: full averaging, clip - hop.
    public static func defaultSettle(clipSeconds: Double, hopSeconds: Double) -> Double {
        max(0, clipSeconds - hopSeconds)
    }
    /// Default lag of the provisional read-out that announces starts early (see `EventTracker.processEarly`).
    ///
    /// Onsets need no averaging: on the fixture streams (hop 1 s, min duration 0.3 s, merge gap 1 s; worst start
    /// error over the 6 annotated events, and the newest window end when the start line went out minus the onset,
    /// p50 / p95) no lag added a spurious or unconfirmed start, and lag 0 was as accurate as any:
    ///
    ///     lag            0 s          0.5 s        1 s          2 s          9 s (settled only)
    ///     0.6/0.4        0.29 1.0/1.0 0.29 1.0/1.0 0.29 2.0/2.0 0.29 3.0/3.0 0.48 9.7/10
    ///     0.5/0.3        0.29 1.0/1.0 0.29 1.0/1.0 0.29 2.0/2.0 0.47 3.0/3.0 0.54 9.0/10
    ///
    /// So a start line goes out with the first window that holds min duration of the sound (up to a hop + min
    /// duration after the onset); the settled track still decides the stop, and closes a start it never confirms.
    public static let defaultOnsetSettle: Double = 0
    /// Default grid cell: 10 ms.
    public static let defaultCell: Double = 0.01

    /// The configured events, in order.
    public let specs: [EventSpec]
    /// The fusion grid.
    public let fusion: ScoreFusion
    private let trackers: [EventTracker]
    /// For each event, the positions of its members in `fusion.classIndices`.
    private let memberSlots: [[Int]]
    private var memberScratch: [Float]
    private var pending: [DetectionEvent] = []
    private var finished = false

    /// Read-only view of the settled track (`htsatd plot`): called for every settled cell with the event's index in
    /// `specs`, the cell's start in seconds and the group score the tracker uses. Nil (the default) costs nothing.
    public var settledScoreTap: ((_ event: Int, _ cellStart: Double, _ score: Float) -> Void)?

    /// Creates the core for a model with `classes` outputs; validates every event's settings. `hopSeconds` is the
    /// scheduler's window hop (it sets the trackers' `onsetTolerance`); `onsetSettle` nil or equal to `settle` means
    /// settled starts only.
    public init(events: [EventSpec], geometry: WindowGeometry, classes: Int,
                settle: Double, onsetSettle: Double? = nil, hopSeconds: Double = 1,
                cellSeconds: Double = Detector.defaultCell, labelFloor: Float = 0.1) throws {
        guard !events.isEmpty else { throw DetectorError.noEvents }
        var used: [Int] = []
        var slotOf: [Int: Int] = [:]
        var memberSlots: [[Int]] = []
        for spec in events {
            try spec.settings.validate(event: spec.definition.name)
            var slots: [Int] = []
            for index in spec.definition.labelIndices {
                guard index >= 0, index < classes else { throw DetectorError.classOutOfRange(index: index, classes: classes) }
                if slotOf[index] == nil {
                    slotOf[index] = used.count
                    used.append(index)
                }
                slots.append(slotOf[index]!)
            }
            memberSlots.append(slots)
        }
        self.specs = events
        self.memberSlots = memberSlots
        self.fusion = try ScoreFusion(geometry: geometry, classes: classes, classIndices: used,
                                      cellSeconds: cellSeconds, settleSeconds: settle,
                                      onsetSettleSeconds: onsetSettle.map { min($0, settle) })
        let ids = EventIDCounter()
        self.trackers = events.map {
            EventTracker(definition: $0.definition, settings: $0.settings, labelFloor: labelFloor, hopSeconds: hopSeconds, ids: ids)
        }
        self.memberScratch = [Float](repeating: 0, count: memberSlots.map(\.count).max() ?? 0)
        pending.reserveCapacity(16)
    }

    /// Adds one window ending at stream sample `windowEndSample` (exclusive) with its frame-major framewise output, and
    /// returns the starts and stops now decided. Windows whose end does not increase are ignored.
    public func consume(windowEndSample: Int64, framewise: UnsafeBufferPointer<Float>) -> [DetectionEvent] {
        guard !finished else { return [] }
        // Both closures are non-escaping, so nothing is allocated per window.
        fusion.add(windowEnd: windowEndSample, framewise: framewise,
                   early: { cell, scores in track(cell, scores, early: true) }) { cell, scores, _ in track(cell, scores) }
        return takePending()
    }

    /// Hands out every remaining grid cell, then closes open events at stream sample `atSample` (or where their
    /// score last fell below `off`). Later calls to `consume` return nothing.
    public func finish(atSample: Int64) -> [DetectionEvent] {
        guard !finished else { return [] }
        finished = true
        fusion.flush { cell, scores, _ in track(cell, scores) }
        let time = Double(atSample) / Double(fusion.geometry.sampleRate)
        for tracker in trackers { tracker.finish(at: time, into: &pending) }
        return takePending()
    }

    /// Events started and not yet stopped: name, id, start (s) and peak score so far.
    public var openEvents: [(event: String, id: Int, start: Double, peak: Float)] {
        trackers.compactMap { tracker in tracker.openEvent.map { (tracker.definition.name, $0.id, $0.start, $0.peak) } }
    }

    private func track(_ cell: Int64, _ scores: UnsafeBufferPointer<Float>, early: Bool = false) {
        let start = fusion.cellStartSeconds(cell)
        let end = fusion.cellStartSeconds(cell + 1)
        for (e, tracker) in trackers.enumerated() {
            let slots = memberSlots[e]
            for (m, slot) in slots.enumerated() { memberScratch[m] = scores[slot] }
            memberScratch.withUnsafeBufferPointer { buffer in
                let members = UnsafeBufferPointer(rebasing: buffer[0..<slots.count])
                if early {
                    tracker.processEarly(cellStart: start, cellEnd: end, memberScores: members, into: &pending)
                } else {
                    if let tap = settledScoreTap { tap(e, start, members.max() ?? 0) }
                    tracker.process(cellStart: start, cellEnd: end, memberScores: members, into: &pending)
                }
            }
        }
    }

    private func takePending() -> [DetectionEvent] {
        if pending.isEmpty { return [] }
        let out = pending
        pending.removeAll(keepingCapacity: true)
        return out
    }
}
