import Detection
import TestSupport
import XCTest

/// Synthetic score tracks on a 10 ms grid through one tracker.
final class EventTrackerTests: XCTestCase {
    let cell = 0.01
    let definition = EventDefinition(name: "beep", labelIndices: [5, 9], labelNames: ["Beep", "Tone"])

    /// A track of (seconds, score) segments, one member label (the second stays at `second` x score).
    func track(_ segments: [(Double, Float)]) -> [Float] {
        segments.flatMap { seconds, score in [Float](repeating: score, count: Int((seconds / cell).rounded())) }
    }

    /// Runs the track; returns each event with the index of the cell during which it was emitted.
    func run(_ scores: [Float], _ settings: EventSettings, finishAt: Double? = nil, second: Float = 0.5) -> [(event: DetectionEvent, cell: Int)] {
        let tracker = EventTracker(definition: definition, settings: settings)
        var out: [(DetectionEvent, Int)] = []
        for (k, s) in scores.enumerated() {
            var events: [DetectionEvent] = []
            [s, s * second].withUnsafeBufferPointer {
                tracker.process(cellStart: Double(k) * cell, cellEnd: Double(k + 1) * cell, memberScores: $0, into: &events)
            }
            out += events.map { ($0, k) }
        }
        if let finishAt {
            var events: [DetectionEvent] = []
            tracker.finish(at: finishAt, into: &events)
            out += events.map { ($0, scores.count) }
        }
        return out
    }

    func settings(min: Double = 0.3, gap: Double = 1.0, max: Double? = nil) -> EventSettings {
        EventSettings(onThreshold: 0.6, offThreshold: 0.4, minDuration: min, mergeGap: gap, maxDuration: max)
    }

    func testHysteresisKeepsTheEventBetweenOffAndOn() {
        let out = run(track([(1, 0.1), (1, 0.7), (1.5, 0.5), (2, 0.3)]), settings())
        XCTAssertEqual(out.count, 2)
        let (start, startCell) = out[0]
        XCTAssertEqual(start.kind, .start)
        XCTAssertEqual(start.start, 1.0, accuracy: 1e-9)  // back-dated to the onset
        XCTAssertEqual(startCell, 129)  // emitted once 0.3 s above `on` had passed: cells 100...129
        XCTAssertEqual(start.score, 0.7)
        let (stop, stopCell) = out[1]
        XCTAssertEqual(stop.kind, .stop)
        XCTAssertEqual(stop.id, start.id)
        XCTAssertEqual(stop.end!, 3.5, accuracy: 1e-9)  // when the score fell below `off`
        XCTAssertEqual(stopCell, 350 + 100)  // emitted once more than the 1 s merge gap had passed
        XCTAssertEqual(stop.duration!, 2.5, accuracy: 1e-9)
        XCTAssertEqual(stop.score, 0.7)
    }

    func testMinimumDurationRejectsShortBlipsAndRequiresStayingAboveOn() {
        XCTAssertTrue(run(track([(1, 0.1), (0.2, 0.9), (2, 0.1)]), settings()).isEmpty)
        // Dipping below `on` (though above `off`) before confirmation restarts the count.
        XCTAssertTrue(run(track([(1, 0.1), (0.2, 0.9), (0.01, 0.5), (0.2, 0.9), (2, 0.1)]), settings()).isEmpty)
        let out = run(track([(1, 0.1), (0.3, 0.9), (2, 0.1)]), settings())
        XCTAssertEqual(out.map(\.event.kind), [.start, .stop])
        XCTAssertEqual(out[0].event.start, 1.0, accuracy: 1e-9)
        XCTAssertEqual(out[1].event.end!, 1.3, accuracy: 1e-9)
        // Zero minimum duration: one cell is enough, and the start comes out on that cell.
        let instant = run(track([(1, 0.1), (0.01, 0.9), (2, 0.1)]), settings(min: 0))
        XCTAssertEqual(instant.map(\.cell), [100, 101 + 100])
    }

    func testMergeGapJoinsBeepsAndSplitsLongerSilences() {
        let beeps = track([(1, 0.1), (0.5, 0.9), (0.8, 0.2), (0.5, 0.9), (0.8, 0.2), (0.5, 0.9), (3, 0.2)])
        let merged = run(beeps, settings(min: 0.1, gap: 1.0))
        XCTAssertEqual(merged.map(\.event.kind), [.start, .stop])
        XCTAssertEqual(merged[0].event.start, 1.0, accuracy: 1e-9)
        XCTAssertEqual(merged[1].event.end!, 4.1, accuracy: 1e-9)
        let split = run(beeps, settings(min: 0.1, gap: 0.5))
        XCTAssertEqual(split.map(\.event.kind), [.start, .stop, .start, .stop, .start, .stop])
        XCTAssertEqual(split.map { $0.event.start }, [1.0, 1.0, 2.3, 2.3, 3.6, 3.6].map { $0 }, accuracy: 1e-9)
        XCTAssertEqual(split.compactMap(\.event.end), [1.5, 2.8, 4.1], accuracy: 1e-9)
        XCTAssertEqual(Set(split.map(\.event.id)), [1, 2, 3])
    }

    func testMaxDurationForceSplits() {
        let out = run(track([(0.5, 0.1), (25, 0.9)]), settings(max: 10), finishAt: 25.5)
        XCTAssertEqual(out.map(\.event.kind), [.start, .stop, .start, .stop, .start, .stop])
        XCTAssertEqual(out.map(\.event.start), [0.5, 0.5, 10.5, 10.5, 20.5, 20.5], accuracy: 1e-9)
        XCTAssertEqual(out.compactMap(\.event.end), [10.5, 20.5, 25.5], accuracy: 1e-9)
        XCTAssertEqual(out.map(\.event.id), [1, 1, 2, 2, 3, 3])
        // The split's stop comes out right away; the next start once that piece has lasted the minimum duration.
        XCTAssertEqual(out[1].cell, 1050)
        XCTAssertEqual(out[2].cell, 1079)
    }

    func testSplitContinuationShorterThanMinimumDurationIsDropped() {
        let out = run(track([(0.5, 0.1), (10.1, 0.9), (2, 0.1)]), settings(max: 10))
        XCTAssertEqual(out.map(\.event.kind), [.start, .stop])
        XCTAssertEqual(out.compactMap(\.event.end), [10.5], accuracy: 1e-9)
    }

    func testFinishClosesOpenEventsAndDropsUnconfirmedOnsets() {
        let open = run(track([(1, 0.1), (2, 0.9)]), settings(), finishAt: 3.0)
        XCTAssertEqual(open.map(\.event.kind), [.start, .stop])
        XCTAssertEqual(open[1].event.end!, 3.0, accuracy: 1e-9)
        // Inside a dip below `off`: the end is where it fell.
        let dipping = run(track([(1, 0.1), (2, 0.9), (0.5, 0.1)]), settings(), finishAt: 3.5)
        XCTAssertEqual(dipping.last?.event.end ?? -1, 3.0, accuracy: 1e-9)
        XCTAssertEqual(run(track([(1, 0.1), (0.1, 0.9)]), settings(), finishAt: 1.1).count, 0)
    }

    func testLabelsAreRankedAboveTheFloorWithAtLeastTheTopOne() {
        let both = run(track([(1, 0.9), (2, 0.1)]), settings(), second: 0.5)
        XCTAssertEqual(both[0].event.labels, [LabelScore(label: "Beep", score: 0.9), LabelScore(label: "Tone", score: 0.45)])
        let top = run(track([(1, 0.9), (2, 0.1)]), settings(), second: 0.05)
        XCTAssertEqual(top[0].event.labels.map(\.label), ["Beep"])
        // The group score is the max of the members, whichever it is.
        let swapped = run(track([(1, 0.35), (2, 0.1)]), settings(), second: 2.0)
        XCTAssertEqual(swapped[0].event.labels.first, LabelScore(label: "Tone", score: 0.7))
        XCTAssertEqual(swapped[0].event.score, 0.7)
    }

    func testSettingsValidation() {
        XCTAssertNoThrow(try settings(max: 5).validate(event: "x"))
        func message(_ s: EventSettings) -> String {
            do { try s.validate(event: "siren"); return "ok" } catch { return String(describing: error) }
        }
        XCTAssertEqual(message(EventSettings(onThreshold: 0.4, offThreshold: 0.6)),
                       "event \"siren\": off threshold 0.6 must not exceed the on threshold 0.4")
        XCTAssertTrue(message(EventSettings(onThreshold: 1.0)).contains("on threshold 1.0 must be between 0 and 1"))
        XCTAssertTrue(message(EventSettings(offThreshold: 0)).contains("off threshold 0.0 must be between 0 and 1"))
        XCTAssertTrue(message(EventSettings(minDuration: -1)).contains("minimum duration"))
        XCTAssertTrue(message(EventSettings(mergeGap: .nan)).contains("merge gap"))
        XCTAssertTrue(message(EventSettings(minDuration: 2, maxDuration: 1)).contains("must not be below the minimum duration"))
    }
}

