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
    private var belowSince: Double? = nil
    private var peak: Float = 0
    private var labelPeaks: [Float]
    // Float time sums drift; compare durations with a tolerance far below a grid cell.
    private let epsilon = 1e-6

    /// The open (confirmed, not yet stopped) event: id, start and peak score so far.
    public var openEvent: (id: Int, start: Double, peak: Float)? {
        phase == .active ? (id, start, peak) : nil
    }

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
            guard score >= settings.onThreshold else { return }
            phase = .candidate
            start = cellStart
            peak = 0
            for i in labelPeaks.indices { labelPeaks[i] = 0 }
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
                    id = ids.take()
                    start = cellStart
                    peak = 0
                    for i in labelPeaks.indices { labelPeaks[i] = 0 }
                    note(score, memberScores)
                    events.append(startEvent())
                    return
                }
                note(score, memberScores)
            } else {
                let since = belowSince ?? cellStart
                belowSince = since
                if cellEnd - since > settings.mergeGap + epsilon {
                    events.append(stopEvent(end: since))
                    phase = .idle
                    belowSince = nil
                } else {
                    note(score, memberScores)
                }
            }
        }
    }

    /// Closes an open event at `time` (or where its score last fell below `off`); drops an unconfirmed onset.
    public func finish(at time: Double, into events: inout [DetectionEvent]) {
        if phase == .active {
            events.append(stopEvent(end: belowSince ?? max(time, start)))
        }
        phase = .idle
        belowSince = nil
    }

    private func note(_ score: Float, _ memberScores: UnsafeBufferPointer<Float>) {
        if score > peak { peak = score }
        for i in labelPeaks.indices where memberScores[i] > labelPeaks[i] { labelPeaks[i] = memberScores[i] }
    }

    private func confirmIfLongEnough(cellEnd: Double, into events: inout [DetectionEvent]) {
        guard cellEnd - start >= settings.minDuration - epsilon else { return }
        phase = .active
        belowSince = nil
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
