import Detection
import XCTest

/// Fusion time mapping and averaging with hand-made windows, and the detector core on synthetic windows.
final class FusionDetectorTests: XCTestCase {
    /// A 10 s clip at 100 Hz with 32 output frames: small enough to check by hand.
    let small = WindowGeometry(sampleRate: 100, clipSamples: 1000, stftHop: 10, frames: 32)
    let htsat = WindowGeometry(sampleRate: 32000, clipSamples: 320_000, stftHop: 320, frames: 1024)

    /// Frame-major `frames x classes` scores from `value(class, seconds from window start)`.
    func window(_ g: WindowGeometry, classes: Int, _ value: (Int, Double) -> Float) -> [Float] {
        var out = [Float](repeating: 0, count: g.frames * classes)
        for i in 0..<g.frames {
            let t = g.frameOffset(Double(i)) / Double(g.sampleRate)
            for c in 0..<classes { out[i * classes + c] = value(c, t) }
        }
        return out
    }

    /// Collects (cell, first score, windows averaged).
    final class Sink {
        var cells: [(k: Int64, score: Float, n: Int)] = []
        func emit(_ k: Int64, _ scores: UnsafeBufferPointer<Float>, _ n: Int) { cells.append((k, scores[0], n)) }
    }

    func testFrameTimesFollowTheAlignCornersStretch() {
        XCTAssertEqual(htsat.stftFrames, 1001)
        XCTAssertEqual(htsat.frameOffset(0), 0)
        XCTAssertEqual(htsat.frameOffset(1023), 320_000, accuracy: 1e-6)
        XCTAssertEqual(htsat.frameOffset(511.5), 160_000, accuracy: 1e-6)
        XCTAssertEqual(htsat.frameOffset(1), 1000.0 * 320 / 1023, accuracy: 1e-9)
    }

    func testCellsGetTheScoreAtTheirCentreTime() throws {
        // Class 1 reports its own frame time: every cell must read back its centre's offset into the window.
        let fusion = try ScoreFusion(geometry: small, classes: 2, classIndices: [1], cellSeconds: 0.1, settleSeconds: 10)
        let sink = Sink()
        let w = window(small, classes: 2) { c, t in c == 1 ? Float(t) : -1 }
        w.withUnsafeBufferPointer { _ = fusion.add(windowEnd: 2000, framewise: $0, emit: sink.emit) }
        // Cells before the window start are final at once, and empty.
        XCTAssertEqual(sink.cells.map(\.k), Array(0..<100))
        XCTAssertTrue(sink.cells.allSatisfy { $0.n == 0 && $0.score == 0 })
        sink.cells = []
        fusion.flush(emit: sink.emit)
        XCTAssertEqual(sink.cells.map(\.k), Array(100..<200))
        for cell in sink.cells {
            XCTAssertEqual(cell.n, 1)
            XCTAssertEqual(Double(cell.score), (Double(cell.k) + 0.5) * 0.1 - 10, accuracy: 1e-4, "cell \(cell.k)")
        }
    }

    func testOverlappingWindowsAreAveraged() throws {
        let fusion = try ScoreFusion(geometry: small, classes: 1, classIndices: [0], cellSeconds: 0.1, settleSeconds: 10)
        let sink = Sink()
        for (end, value) in [(1000, Float(0.2)), (1200, 0.6), (1400, 0.7)] {
            window(small, classes: 1) { _, _ in value }.withUnsafeBufferPointer { _ = fusion.add(windowEnd: Int64(end), framewise: $0, emit: sink.emit) }
        }
        fusion.flush(emit: sink.emit)
        XCTAssertEqual(sink.cells.map(\.k), Array(0..<140))
        func at(_ k: Int) -> (Float, Int) { (sink.cells[k].score, sink.cells[k].n) }
        XCTAssertEqual(at(0).0, 0.2, accuracy: 1e-6); XCTAssertEqual(at(19).1, 1)
        XCTAssertEqual(at(20).0, 0.4, accuracy: 1e-6); XCTAssertEqual(at(39).1, 2)
        XCTAssertEqual(at(40).0, 0.5, accuracy: 1e-6); XCTAssertEqual(at(99).1, 3)
        XCTAssertEqual(at(100).0, 0.65, accuracy: 1e-6); XCTAssertEqual(at(119).1, 2)
        XCTAssertEqual(at(120).0, 0.7, accuracy: 1e-6); XCTAssertEqual(at(139).1, 1)
    }

    func testSettleLagHandsOutCellsWithTheWindowsSeenSoFar() throws {
        let fusion = try ScoreFusion(geometry: small, classes: 1, classIndices: [0], cellSeconds: 0.1, settleSeconds: 2)
        let sink = Sink()
        var emittedAfter: [Int64: Int] = [:]
        for (end, value) in [(1000, Float(0.3)), (1100, 0.6), (1200, 0.9)] {
            window(small, classes: 1) { _, _ in value }.withUnsafeBufferPointer { _ = fusion.add(windowEnd: Int64(end), framewise: $0, emit: sink.emit) }
            for cell in sink.cells where emittedAfter[cell.k] == nil { emittedAfter[cell.k] = end }
        }
        // Cells ending 2 s or more behind the newest end are out, averaged over what covered them by then.
        XCTAssertEqual(sink.cells.count, 100)
        XCTAssertEqual(emittedAfter[79], 1000)
        XCTAssertEqual(emittedAfter[80], 1100)
        XCTAssertEqual(emittedAfter[99], 1200)
        XCTAssertEqual(sink.cells[79].score, 0.3, accuracy: 1e-6)
        XCTAssertEqual(sink.cells[85].score, 0.45, accuracy: 1e-6)
        XCTAssertEqual(sink.cells[95].score, 0.6, accuracy: 1e-6)
        XCTAssertEqual(sink.cells[95].n, 3)
    }

    func testZeroPaddedStartUpWindowsOnlyFillNonNegativeTime() throws {
        let fusion = try ScoreFusion(geometry: small, classes: 1, classIndices: [0], cellSeconds: 0.1, settleSeconds: 10)
        let sink = Sink()
        // Windows ending at 1 s and 2 s: 9 s and 8 s of their clip are the zero padding before the stream.
        for end in [100, 200] {
            window(small, classes: 1) { _, t in t < 9 ? 5 : 0.5 }.withUnsafeBufferPointer { _ = fusion.add(windowEnd: Int64(end), framewise: $0, emit: sink.emit) }
        }
        XCTAssertTrue(sink.cells.isEmpty)
        fusion.flush(emit: sink.emit)
        XCTAssertEqual(sink.cells.map(\.k), Array(0..<20))
        // Cells 0-9 were covered by both windows: by the second window's padded-part score 5 (t in its 8 s..9 s is stream 0-1 s) and by 0.5.
        XCTAssertEqual(sink.cells[5].n, 2)
        XCTAssertEqual(sink.cells[15].n, 1)
        XCTAssertEqual(sink.cells[15].score, 0.5, accuracy: 1e-6)
    }

    func testNonIncreasingWindowsAreIgnoredAndGapsAreEmpty() throws {
        let fusion = try ScoreFusion(geometry: small, classes: 1, classIndices: [0], cellSeconds: 0.1, settleSeconds: 10)
        let sink = Sink()
        let w = window(small, classes: 1) { _, _ in 0.8 }
        w.withUnsafeBufferPointer {
            XCTAssertTrue(fusion.add(windowEnd: 1000, framewise: $0, emit: sink.emit))
            XCTAssertFalse(fusion.add(windowEnd: 1000, framewise: $0, emit: sink.emit))
            XCTAssertFalse(fusion.add(windowEnd: 900, framewise: $0, emit: sink.emit))
            // A jump of more than a clip (inference stalled): the uncovered cells come out empty.
            XCTAssertTrue(fusion.add(windowEnd: 2500, framewise: $0, emit: sink.emit))
        }
        XCTAssertEqual(sink.cells.map(\.k), Array(0..<150))
        XCTAssertTrue(sink.cells[0..<100].allSatisfy { $0.n == 1 && abs($0.score - 0.8) < 1e-6 })
        XCTAssertTrue(sink.cells[100..<150].allSatisfy { $0.n == 0 && $0.score == 0 })
    }

    func testConfigurationErrors() {
        XCTAssertThrowsError(try ScoreFusion(geometry: small, classes: 1, classIndices: [0], cellSeconds: 0.1, settleSeconds: 11)) {
            XCTAssertEqual($0 as? DetectorError, .badSettle(11, clipSeconds: 10))
        }
        XCTAssertThrowsError(try ScoreFusion(geometry: small, classes: 1, classIndices: [0], cellSeconds: 0.001, settleSeconds: 1))
        XCTAssertThrowsError(try ScoreFusion(geometry: small, classes: 1, classIndices: [3], cellSeconds: 0.1, settleSeconds: 1))
        XCTAssertThrowsError(try Detector(events: [], geometry: small, classes: 1, settle: 1)) { XCTAssertEqual($0 as? DetectorError, .noEvents) }
        let bad = EventSpec(definition: EventDefinition(name: "x", labelIndices: [0], labelNames: ["X"]),
                            settings: EventSettings(onThreshold: 0.3, offThreshold: 0.5))
        XCTAssertThrowsError(try Detector(events: [bad], geometry: small, classes: 1, settle: 1)) { XCTAssertTrue($0 is EventSettingsError) }
    }

    /// A 5 s sound at 20-25 s seen by 10 s windows every 1 s.
    func runSyntheticSound(settle: Double) throws -> (events: [(DetectionEvent, Int64)], detector: Detector) {
        let spec = EventSpec(definition: EventDefinition(name: "thing", labelIndices: [2, 5], labelNames: ["Two", "Five"]),
                             settings: EventSettings(onThreshold: 0.6, offThreshold: 0.4, minDuration: 0.25, mergeGap: 1.0))
        let detector = try Detector(events: [spec], geometry: htsat, classes: 8, settle: settle)
        var out: [(DetectionEvent, Int64)] = []
        for second in 1...40 {
            let end = Int64(second) * 32000
            let start = Double(second) - 10
            let w = window(htsat, classes: 8) { c, t in
                let stream = start + t
                if c == 5 { return stream >= 20 && stream < 25 ? 0.9 : 0.05 }
                return c == 2 ? 0.3 : 0.99  // class 2 never reaches `on`; other classes are not the event's
            }
            out += w.withUnsafeBufferPointer { detector.consume(windowEndSample: end, framewise: $0) }.map { ($0, end) }
        }
        XCTAssertTrue(detector.consume(windowEndSample: 40 * 32000, framewise: [Float](repeating: 1, count: 1024 * 8).withUnsafeBufferPointer { $0 }).isEmpty)
        out += detector.finish(atSample: 40 * 32000).map { ($0, -1) }
        return (out, detector)
    }

    func testDetectorFindsASyntheticSoundAtAnySettle() throws {
        for (settle, startWindow, stopWindow) in [(10.0, 31, 37), (4.0, 25, 31), (0.0, 21, 27)] {
            let (events, _) = try runSyntheticSound(settle: settle)
            XCTAssertEqual(events.map(\.0.kind), [.start, .stop], "settle \(settle)")
            guard events.count == 2 else { continue }
            XCTAssertEqual(events[0].0.start, 20, accuracy: 0.02, "settle \(settle)")
            XCTAssertEqual(events[1].0.end!, 25, accuracy: 0.02, "settle \(settle)")
            XCTAssertEqual(events[1].0.score, 0.9, accuracy: 1e-4)
            XCTAssertEqual(events[0].0.labels.map(\.label), ["Five", "Two"])
            XCTAssertEqual(events[0].0.labels.last?.score ?? 0, 0.3, accuracy: 1e-5)
            // Lines come out settle + min duration (start) or merge gap (stop) after the fact, rounded up to a hop.
            XCTAssertEqual(events[0].1 / 32000, Int64(startWindow), "settle \(settle)")
            XCTAssertEqual(events[1].1 / 32000, Int64(stopWindow), "settle \(settle)")
        }
    }

    func testFinishClosesOpenEventsAndStopsConsuming() throws {
        let spec = EventSpec(definition: EventDefinition(name: "on", labelIndices: [0], labelNames: ["On"]), settings: EventSettings())
        let detector = try Detector(events: [spec], geometry: htsat, classes: 1, settle: 2)
        let ones = window(htsat, classes: 1) { _, _ in 0.8 }
        var events: [DetectionEvent] = []
        for second in 1...5 {
            events += ones.withUnsafeBufferPointer { detector.consume(windowEndSample: Int64(second) * 32000, framewise: $0) }
        }
        XCTAssertEqual(events.map(\.kind), [.start])
        XCTAssertEqual(detector.openEvents.map(\.event), ["on"])
        XCTAssertEqual(detector.openEvents.first?.start ?? -1, 0, accuracy: 1e-9)
        let closing = detector.finish(atSample: 5 * 32000)
        XCTAssertEqual(closing.map(\.kind), [.stop])
        XCTAssertEqual(closing.first?.end ?? -1, 5, accuracy: 1e-9)
        XCTAssertEqual(closing.first?.id, events.first?.id)
        XCTAssertTrue(detector.openEvents.isEmpty)
        XCTAssertTrue(detector.finish(atSample: 6 * 32000).isEmpty)
    }
}
