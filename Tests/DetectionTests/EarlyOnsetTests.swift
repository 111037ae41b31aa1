import TestSupport
import Detection
import XCTest

/// Early starts: a provisional read-out announces the start, the settled read-out decides (or cancels) it.
final class EarlyOnsetTests: XCTestCase {
    let cell = 0.01
    let definition = EventDefinition(name: "beep", labelIndices: [5], labelNames: ["Beep"])
    let settings = EventSettings(onThreshold: 0.6, offThreshold: 0.4, minDuration: 0.3, mergeGap: 1.0, maxDuration: nil)

    func segments(_ parts: [(Double, Float)]) -> [Float] {
        parts.flatMap { seconds, score in [Float](repeating: score, count: Int((seconds / cell).rounded())) }
    }

    /// Feeds cell k's early score `lag` cells before its settled score, as the detector does; returns events with
    /// the step (early cell index) during which they were emitted.
    func run(early: [Float], settled: [Float], lag: Int) -> [(event: DetectionEvent, step: Int)] {
        let tracker = EventTracker(definition: definition, settings: settings)
        var out: [(DetectionEvent, Int)] = []
        for step in 0..<(early.count + lag) {
            var events: [DetectionEvent] = []
            if step < early.count {
                [early[step]].withUnsafeBufferPointer {
                    tracker.processEarly(cellStart: Double(step) * cell, cellEnd: Double(step + 1) * cell, memberScores: $0, into: &events)
                }
            }
            let k = step - lag
            if k >= 0 {
                [settled[k]].withUnsafeBufferPointer {
                    tracker.process(cellStart: Double(k) * cell, cellEnd: Double(k + 1) * cell, memberScores: $0, into: &events)
                }
            }
            out += events.map { ($0, step) }
        }
        var events: [DetectionEvent] = []
        tracker.finish(at: Double(early.count) * cell, into: &events)
        return out + events.map { ($0, early.count + lag) }
    }

    func testEarlyStartIsAdoptedBySettledTrack() {
        // The early read-out lingers after the sound (as the model does near a window's right edge); the settled one does not.
        let early = segments([(2, 0.1), (3, 0.9), (3, 0.7), (4, 0.1)])
        let settled = segments([(2, 0.1), (3, 0.9), (7, 0.1)])
        let out = run(early: early, settled: settled, lag: 600)
        XCTAssertEqual(out.map(\.event.kind), [.start, .stop], "one start (the early one), one stop: \(out)")
        XCTAssertEqual(out[0].event.start, 2.0, accuracy: 1e-9)
        XCTAssertEqual(out[0].step, 229, "announced 0.3 s after the onset in the early read-out, not 6 s later")
        XCTAssertEqual(out[1].event.id, out[0].event.id)
        XCTAssertEqual(out[1].event.end!, 5.0, accuracy: 1e-9, "the settled track decides the end")
    }

    func testUnconfirmedEarlyStartIsStopped() {
        let early = segments([(2, 0.1), (0.5, 0.9), (8, 0.1)])
        let settled = segments([(10.5, 0.1)])
        let out = run(early: early, settled: settled, lag: 300)
        XCTAssertEqual(out.map(\.event.kind), [.start, .stop])
        XCTAssertEqual(out[1].event.id, out[0].event.id)
        // Closed once the settled read-out passed onset + tolerance (1 s) without a candidate near the onset; the
        // stop says so and spans the minimum duration.
        XCTAssertFalse(out[1].event.confirmed)
        XCTAssertEqual(out[1].event.end!, 2.0 + 0.3, accuracy: 1e-9)
        XCTAssertEqual(out[1].step, 299 + 300)
    }

    func testSettledOnlyEventStillStarts() {
        // The early read-out misses it; the settled one finds it and starts it then.
        let early = segments([(6, 0.1)])
        let settled = segments([(2, 0.1), (1, 0.9), (3, 0.1)])
        let out = run(early: early, settled: settled, lag: 200)
        XCTAssertEqual(out.map(\.event.kind), [.start, .stop])
        XCTAssertEqual(out[0].event.start, 2.0, accuracy: 1e-9)
    }

    /// The case: two bursts 5.5 s apart; the early read-out misses the first (it stays below `on` there) and
    /// announces the second (45.5 s) while the settled read-out has not reached the first. The settled read-out confirms the
    /// first, whose tail stays above `off` until 44 s: adopting the early start gave a stop at 45.5 s ending at 44 s.
    func testEarlyStartOfALaterSoundIsNotAdoptedByAnEarlierOne() {
        let early = segments([(40, 0.1), (2, 0.55), (3.5, 0.1), (3, 0.9), (10, 0.1)])
        let settled = segments([(40, 0.1), (2, 0.9), (2, 0.5), (1.5, 0.1), (3, 0.9), (10, 0.1)])
        let out = run(early: early, settled: settled, lag: 700)
        let lines = out.map(\.event)
        let report = EventContract(minDuration: ["beep": 0.3], tolerance: ["beep": 1], cell: cell).check(lines)
        XCTAssertEqual(report.violations, [], lines.map(describe).joined(separator: "\n"))
        XCTAssertEqual(lines.map(describe), [
            "start beep#1 45.500",  // early
            "stop beep#1 45.500-45.800 unconfirmed",  // withdrawn when the settled read-out confirms 40 s
            "start beep#2 40.000",
            "stop beep#2 40.000-44.000",
            "start beep#3 45.500",  // the second burst, from the settled read-out
            "stop beep#3 45.500-48.500",
        ])
        XCTAssertEqual(out.map(\.step), [4579, 4729, 4729, 5200, 5279, 5650])
    }

    func testSecondEventSoonAfterTheFirstKeepsItsTrueOnset() {
        // Two bouts 3 s apart. The early read-out (7 s ahead of the settled one) lingers 4 s after each, so it never
        // drops below `on` between them; while the first event is open it is suppressed, and when it resumes the
        // score is already high. The second start must come from the settled read-out, with the true onset.
        let early = segments([(2, 0.1), (2, 0.9), (4, 0.8), (2, 0.9), (4, 0.8), (6, 0.1)])
        let settled = segments([(2, 0.1), (2, 0.9), (3, 0.1), (2, 0.9), (11, 0.1)])
        let out = run(early: early, settled: settled, lag: 700)
        XCTAssertEqual(out.map(\.event.kind), [.start, .stop, .start, .stop], "\(out.map { ($0.event.kind, $0.event.start) })")
        guard out.count == 4 else { return }
        XCTAssertEqual(out[0].event.start, 2.0, accuracy: 1e-9)
        XCTAssertEqual(out[1].event.end!, 4.0, accuracy: 1e-9)
        XCTAssertEqual(out[2].event.start, 7.0, accuracy: 1e-9, "the second event's onset, not where the early read-out resumed")
        XCTAssertEqual(out[3].event.end!, 9.0, accuracy: 1e-9)
    }
}
