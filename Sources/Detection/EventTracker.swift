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
/// Two read-outs of the same fused track feed it. `process` gets each cell once settled and runs the settled state
/// machine, which alone decides every event and every end, exactly as in a settled-only run. `processEarly`, when the
/// detector has an early lag, gets each cell sooner from fewer windows and may announce a start seconds earlier. Such
/// an early start (onset e) is adopted (same id, no second start line) only by a settled event whose onset s lies
/// within `onsetTolerance` of e, and only if the event then lasts at least `minDuration` past e. Otherwise it is
/// closed as unconfirmed (stop line with `end = e + minDuration`, `confirmed == false`): when the settled read-out
/// passes e + tolerance without a candidate within tolerance, when such a candidate fails, or just before the start
/// line of a settled event that began more than the tolerance before e.
public final class EventTracker {
    /// The event being tracked.
    public let definition: EventDefinition
    /// Its thresholds and timings.
    public let settings: EventSettings
    /// Member labels below this score are left out of an event's `labels` (the top one is always kept).
    public let labelFloor: Float
    /// How far a settled onset may lie from an early onset and still confirm it: max(1 s, hop, min duration).
    public let onsetTolerance: Double

    private let ids: EventIDCounter
    // Float time sums drift; compare times with a tolerance far below a grid cell.
    private let epsilon = 1e-6

    // The settled state machine: nothing here depends on the early read-out, so ends match a settled-only run.
    private enum Phase { case idle, candidate, active }
    private var phase = Phase.idle
    /// Onset of the settled candidate (phase .candidate).
    private var candidateStart = 0.0
    /// Onset of the current settled event (phase .active): max-duration splits are measured from it.
    private var settledStart = 0.0
    private var belowSince: Double? = nil
    private var peak: Float = 0
    private var labelPeaks: [Float]

    /// The line-level event the settled one is reported as (phase .active, once resolved): its id and `start`.
    private var id = 0
    private var start = 0.0
    /// The settled event is under way but not yet reported: it is reported (or adopts the open early start) once it
    /// is known to end at or after this time, and dropped (the early start closed) if it ends sooner. Set for an
    /// event that began before an open early start (until early onset + min duration) and for the continuation after
    /// a max-duration split (until its start + min duration).
    private var undecidedUntil: Double? = nil

    /// An early start line that went out and is not yet confirmed or closed.
    /// `end`: its shortest valid span's end, onset + min duration (at least one grid cell, so that start < end).
    private struct EarlyEvent { var id: Int; var start: Double; var end: Double; var peak: Float; var labels: [LabelScore]; var labelPeaks: [Float] }
    private var early: EarlyEvent? = nil
    /// Onset of an early candidate, not yet announced.
    private var earlyCandidateStart: Double? = nil
    /// The early read-out must see the score below `on` before it may announce again.
    private var earlyNeedsLow = false
    /// End of the last settled event: an early onset before it belongs to that event's tail.
    private var lastEnd = -Double.infinity

    /// The open event (started, not yet stopped): id, start and peak score so far.
    public var openEvent: (id: Int, start: Double, peak: Float)? {
        if let early { return (early.id, early.start, max(early.peak, undecidedUntil != nil ? peak : 0)) }
        return phase == .active && undecidedUntil == nil ? (id, start, peak) : nil
    }

    /// Creates a tracker; `settings` must be valid. `hopSeconds` (the window hop) sets `onsetTolerance`.
    public init(definition: EventDefinition, settings: EventSettings, labelFloor: Float = 0.1, hopSeconds: Double = 1,
                ids: EventIDCounter = EventIDCounter()) {
        self.definition = definition
        self.settings = settings
        self.labelFloor = labelFloor
        self.onsetTolerance = max(1, hopSeconds, settings.minDuration)
        self.ids = ids
        self.labelPeaks = [Float](repeating: 0, count: definition.labelIndices.count)
    }

    /// Feeds one settled grid cell [cellStart, cellEnd) with the fused scores of the member labels (parallel to
    /// `definition.labelIndices`); the group score is their maximum. Appends any start/stop to `events`.
    public func process(cellStart: Double, cellEnd: Double, memberScores: UnsafeBufferPointer<Float>, into events: inout [DetectionEvent]) {
        precondition(memberScores.count == labelPeaks.count, "one score per member label")
        let score = groupScore(memberScores)

        switch phase {
        case .idle:
            if score >= settings.onThreshold {
                phase = .candidate
                candidateStart = cellStart
                peak = 0
                for i in labelPeaks.indices { labelPeaks[i] = 0 }
                note(score, memberScores)
                confirmIfLongEnough(cellEnd: cellEnd, into: &events)
            }
        case .candidate:
            if score >= settings.onThreshold {
                note(score, memberScores)
                confirmIfLongEnough(cellEnd: cellEnd, into: &events)
            } else {
                phase = .idle  // must stay above `on` for the whole minimum duration
            }
        case .active:
            if score >= settings.offThreshold {
                belowSince = nil
                if let maxDuration = settings.maxDuration, cellStart - settledStart >= maxDuration - epsilon {
                    // Force-split a long event: close it here and carry on with a new one at once.
                    stopSettled(end: cellStart, into: &events)
                    phase = .active
                    settledStart = cellStart
                    peak = 0
                    for i in labelPeaks.indices { labelPeaks[i] = 0 }
                    note(score, memberScores)
                    // Reported once it has lasted the minimum duration, like any event.
                    undecidedUntil = cellStart + settings.minDuration
                } else {
                    note(score, memberScores)
                }
                // Scoring at or above `off` here means the event ends after this cell.
                if let until = undecidedUntil, cellEnd >= until - epsilon {
                    undecidedUntil = nil
                    decide(into: &events)
                }
            } else {
                let since = belowSince ?? cellStart
                belowSince = since
                if cellEnd - since > settings.mergeGap + epsilon {
                    stopSettled(end: since, into: &events)
                } else {
                    note(score, memberScores)
                }
            }
        }
        closeEarlyIfPast(cellEnd: cellEnd, into: &events)
    }

    /// Feeds one cell's provisional (early) scores: announces a start once they stay above `on` for the minimum
    /// duration, unless an event is already open or the onset lies in the last event's tail.
    public func processEarly(cellStart: Double, cellEnd: Double, memberScores: UnsafeBufferPointer<Float>,
                             into events: inout [DetectionEvent]) {
        guard phase != .active, early == nil else {
            earlyCandidateStart = nil
            earlyNeedsLow = true
            return
        }
        let score = groupScore(memberScores)
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
        var scores = [Float](repeating: 0, count: labelPeaks.count)
        for i in scores.indices { scores[i] = memberScores[i] }
        let announced = EarlyEvent(id: ids.take(), start: onset, end: onset + max(settings.minDuration, cellEnd - cellStart),
                                   peak: score, labels: rankedLabels(scores), labelPeaks: scores)
        early = announced
        events.append(DetectionEvent(kind: .start, event: definition.name, id: announced.id, start: onset,
                                     score: score, labels: announced.labels))
    }

    /// Closes open events at `time` (or where the score last fell below `off`), an unconfirmed early start as such.
    /// Call after the last cell has been processed.
    public func finish(at time: Double, into events: inout [DetectionEvent]) {
        if phase == .active {
            // A confirmed event lasts at least the minimum duration even if the last cell ends past `time`; a split's
            // continuation is not confirmed yet, and is dropped if shorter.
            let continuation = undecidedUntil != nil && early == nil
            let end = belowSince ?? (continuation ? time : max(time, settledStart + settings.minDuration))
            stopSettled(end: end, into: &events)
        }
        closeEarly(into: &events)
        phase = .idle
        earlyCandidateStart = nil
        earlyNeedsLow = false
        belowSince = nil
    }

    private func groupScore(_ memberScores: UnsafeBufferPointer<Float>) -> Float {
        var score: Float = 0
        for s in memberScores where s > score { score = s }
        return score
    }

    private func note(_ score: Float, _ memberScores: UnsafeBufferPointer<Float>) {
        if score > peak { peak = score }
        for i in labelPeaks.indices where memberScores[i] > labelPeaks[i] { labelPeaks[i] = memberScores[i] }
    }

    private func confirmIfLongEnough(cellEnd: Double, into events: inout [DetectionEvent]) {
        guard cellEnd - candidateStart >= settings.minDuration - epsilon else { return }
        phase = .active
        belowSince = nil
        settledStart = candidateStart
        settledStarted(into: &events)
    }

    /// A settled event just began at `settledStart`: adopt the open early start, wait to, or report it on its own.
    private func settledStarted(into events: inout [DetectionEvent]) {
        guard let early else { return reportOwnStart(into: &events) }
        if abs(settledStart - early.start) > onsetTolerance + epsilon {
            // Too far from the early onset: that onset belongs to another sound, or to none.
            closeEarly(into: &events)
            reportOwnStart(into: &events)
        } else if settledStart >= early.start - epsilon {
            adopt()  // ends at or after settledStart + min duration, so at least min duration after e
        } else {
            undecidedUntil = early.end
        }
    }

    /// The settled event continues the early one: same id and `start`; its peaks carry over.
    private func adopt() {
        guard let announced = early else { return }
        id = announced.id
        start = announced.start
        peak = max(peak, announced.peak)
        for i in labelPeaks.indices where announced.labelPeaks[i] > labelPeaks[i] { labelPeaks[i] = announced.labelPeaks[i] }
        early = nil
    }

    /// The undecided settled event lasts long enough: it adopts the early start, or is reported on its own.
    private func decide(into events: inout [DetectionEvent]) {
        if early != nil { adopt() } else { reportOwnStart(into: &events) }
    }

    private func reportOwnStart(into events: inout [DetectionEvent]) {
        id = ids.take()
        start = settledStart
        events.append(DetectionEvent(kind: .start, event: definition.name, id: id, start: start, score: peak, labels: rankedLabels(labelPeaks)))
    }

    /// The settled event ends at `end`; the tracker goes idle.
    private func stopSettled(end: Double, into events: inout [DetectionEvent]) {
        var reported = true
        if let until = undecidedUntil {
            undecidedUntil = nil
            if end >= until - epsilon {
                decide(into: &events)
            } else if early != nil {
                // It ends too soon after the early onset to carry it: the early start was not this event.
                closeEarly(into: &events)
                reportOwnStart(into: &events)
            } else {
                reported = false  // a split's continuation shorter than the minimum duration is not an event
            }
        }
        if reported {
            events.append(DetectionEvent(kind: .stop, event: definition.name, id: id, start: start, end: end, score: peak,
                                         labels: rankedLabels(labelPeaks)))
        }
        phase = .idle
        belowSince = nil
        lastEnd = end
    }

    /// Closes the early start once the settled read-out is past its onset + tolerance with no candidate near it.
    private func closeEarlyIfPast(cellEnd: Double, into events: inout [DetectionEvent]) {
        guard let early, undecidedUntil == nil, cellEnd >= early.start + onsetTolerance - epsilon else { return }
        if phase == .candidate, abs(candidateStart - early.start) <= onsetTolerance + epsilon { return }
        closeEarly(into: &events)
    }

    /// The unconfirmed early start's stop line: its shortest valid span, marked unconfirmed.
    private func closeEarly(into events: inout [DetectionEvent]) {
        guard let announced = early else { return }
        early = nil
        var stop = DetectionEvent(kind: .stop, event: definition.name, id: announced.id, start: announced.start,
                                  end: announced.end, score: announced.peak, labels: announced.labels)
        stop.confirmed = false
        events.append(stop)
    }

    private func rankedLabels(_ scores: [Float]) -> [LabelScore] {
        let all = zip(definition.labelNames, scores).map { LabelScore(label: $0, score: $1) }
            .sorted { $0.score != $1.score ? $0.score > $1.score : $0.label < $1.label }
        let kept = all.filter { $0.score >= labelFloor }
        return kept.isEmpty ? Array(all.prefix(1)) : kept
    }
}
