/// Hands out event ids shared by all trackers of one detector, starting at 1.
public final class EventIDCounter {
    private var next = 1

    /// Creates a counter starting at 1.
    public init() {}

    /// Returns the next id.
    public func take() -> Int {
        defer { next += 1 }
        return next
    }
}

/// Turns one event's group score, cell by cell, into start/stop events with hysteresis, a minimum duration, a merge gap and an optional split length.
///
/// Two read-outs of the same fused track feed it: `process` gets each cell once settled (it decides every stop), and
/// `processEarly`, when the detector has an early lag, gets it sooner from fewer windows, so a start line can go out
/// seconds earlier. A settled confirmation then adopts the early event (same id, no second start line); if the settled
/// track never confirms it, the early event is stopped where the settled read-out gave up on it.
public final class EventTracker {
    /// The event being tracked.
    public let definition: EventDefinition
    /// Its thresholds and timings.
    public let settings: EventSettings
    /// Member labels below this score are left out of an event's `labels` (the top one is always kept).
    public let labelFloor: Float

    private enum Phase { case idle, candidate, active }
    private var phase = Phase.idle
    private let ids: EventIDCounter
    private var id = 0
    private var start = 0.0
    /// Onset of the settled candidate (phase .candidate).
    private var candidateStart = 0.0
    /// Onset of an early candidate, not yet announced.
    private var earlyCandidateStart: Double? = nil
    /// An early start line went out and the settled track has not confirmed it yet.
    private var earlyOpen = false
    /// The early read-out must see the score below `on` before it may announce again.
    private var earlyNeedsLow = false
    /// End of the last stopped event: an early onset before it belongs to that event's tail.
    private var lastEnd = -Double.infinity
    private var belowSince: Double? = nil
    private var peak: Float = 0
    private var labelPeaks: [Float]
    // Float time sums drift; compare durations with a tolerance far below a grid cell.
    private let epsilon = 1e-6

    /// The open (confirmed, not yet stopped) event: id, start and peak score so far.
    public var openEvent: (id: Int, start: Double, peak: Float)? {
        phase == .active || earlyOpen ? (id, start, peak) : nil
    }

    /// Seconds past an early start (beyond min duration and merge gap) the settled track may take to confirm it.
    static let earlyConfirmSlack = 2.0

    /// Creates a tracker; `settings` must be valid.
    public init(definition: EventDefinition, settings: EventSettings, labelFloor: Float = 0.1, ids: EventIDCounter = EventIDCounter()) {
        self.definition = definition
        self.settings = settings
        self.labelFloor = labelFloor
        self.ids = ids
        self.labelPeaks = [Float](repeating: 0, count: definition.labelIndices.count)
    }

    /// Feeds one grid cell [cellStart, cellEnd) with the fused scores of the member labels (parallel to
    /// `definition.labelIndices`); the group score is their maximum. Appends any start/stop to `events`.
    public func process(cellStart: Double, cellEnd: Double, memberScores: UnsafeBufferPointer<Float>, into events: inout [DetectionEvent]) {
        precondition(memberScores.count == labelPeaks.count, "one score per member label")
        var score: Float = 0
        for s in memberScores where s > score { score = s }

        switch phase {
        case .idle:
            guard score >= settings.onThreshold else {
                if earlyOpen, cellStart > start + settings.minDuration + settings.mergeGap + Self.earlyConfirmSlack {
                    // The settled read-out never confirmed the early start: close that event here.
                    earlyOpen = false
                    lastEnd = cellStart
                    events.append(stopEvent(end: cellStart))
                }
                return
            }
            phase = .candidate
            candidateStart = cellStart
            if !earlyOpen {
                peak = 0
                for i in labelPeaks.indices { labelPeaks[i] = 0 }
            }
            note(score, memberScores)
            confirmIfLongEnough(cellEnd: cellEnd, into: &events)
        case .candidate:
            guard score >= settings.onThreshold else {
                phase = .idle  // must stay above `on` for the whole minimum duration
                return
            }
            note(score, memberScores)
            confirmIfLongEnough(cellEnd: cellEnd, into: &events)
        case .active:
            if score >= settings.offThreshold {
                belowSince = nil
                if let maxDuration = settings.maxDuration, cellStart - start >= maxDuration - epsilon {
                    // Force-split a long event: close it here and carry on with a new one at once.
                    events.append(stopEvent(end: cellStart))
                    beginEvent(at: cellStart, score, memberScores, into: &events)
                    return
                }
                note(score, memberScores)
            } else {
                let since = belowSince ?? cellStart
                belowSince = since
                if cellEnd - since > settings.mergeGap + epsilon {
                    events.append(stopEvent(end: since))
                    phase = .idle
                    lastEnd = since
                    belowSince = nil
                } else {
                    note(score, memberScores)
                }
            }
        }
    }

    /// Feeds one cell's provisional (early) scores: announces a start once they stay above `on` for the minimum
    /// duration, unless an event is already open or the onset lies in the last event's tail.
    public func processEarly(cellStart: Double, cellEnd: Double, memberScores: UnsafeBufferPointer<Float>,
                             into events: inout [DetectionEvent]) {
        guard phase != .active, !earlyOpen else {
            earlyCandidateStart = nil
            earlyNeedsLow = true
            return
        }
        var score: Float = 0
        for s in memberScores where s > score { score = s }
        guard score >= settings.onThreshold else {
            earlyCandidateStart = nil
            earlyNeedsLow = false
            return
        }
        // A score already high when the early read-out resumes (it is suppressed while an event is open) hides its
        // true onset: leave that event to the settled read-out, which sees the onset.
        guard !earlyNeedsLow, cellStart >= lastEnd else { earlyCandidateStart = nil; return }
        let onset = earlyCandidateStart ?? cellStart
        earlyCandidateStart = onset
        guard cellEnd - onset >= settings.minDuration - epsilon else { return }
        earlyCandidateStart = nil
        earlyOpen = true
        beginEvent(at: onset, score, memberScores, into: &events)
    }

    /// A new event id starting at `onset`, its peaks reset to this cell's scores, and its start line.
    private func beginEvent(at onset: Double, _ score: Float, _ memberScores: UnsafeBufferPointer<Float>,
                            into events: inout [DetectionEvent]) {
        id = ids.take()
        start = onset
        peak = 0
        for i in labelPeaks.indices { labelPeaks[i] = 0 }
        note(score, memberScores)
        events.append(startEvent())
    }

    /// Closes an open event at `time` (or where its score last fell below `off`); drops an unconfirmed onset.
    public func finish(at time: Double, into events: inout [DetectionEvent]) {
        if phase == .active || earlyOpen {
            events.append(stopEvent(end: belowSince ?? max(time, start)))
        }
        phase = .idle
        earlyOpen = false
        earlyCandidateStart = nil
        earlyNeedsLow = false
        belowSince = nil
    }

    private func note(_ score: Float, _ memberScores: UnsafeBufferPointer<Float>) {
        if score > peak { peak = score }
        for i in labelPeaks.indices where memberScores[i] > labelPeaks[i] { labelPeaks[i] = memberScores[i] }
    }

    private func confirmIfLongEnough(cellEnd: Double, into events: inout [DetectionEvent]) {
        guard cellEnd - candidateStart >= settings.minDuration - epsilon else { return }
        phase = .active
        belowSince = nil
        if earlyOpen {
            earlyOpen = false  // adopt the announced event: same id and start, no second start line
            return
        }
        start = candidateStart
        id = ids.take()
        events.append(startEvent())
    }

    private func startEvent() -> DetectionEvent {
        DetectionEvent(kind: .start, event: definition.name, id: id, start: start, score: peak, labels: rankedLabels())
    }

    private func stopEvent(end: Double) -> DetectionEvent {
        DetectionEvent(kind: .stop, event: definition.name, id: id, start: start, end: end, score: peak, labels: rankedLabels())
    }

    private func rankedLabels() -> [LabelScore] {
        let all = zip(definition.labelNames, labelPeaks).map { LabelScore(label: $0, score: $1) }
            .sorted { $0.score != $1.score ? $0.score > $1.score : $0.label < $1.label }
        let kept = all.filter { $0.score >= labelFloor }
        return kept.isEmpty ? Array(all.prefix(1)) : kept
    }
}
