import AudioCapture
import Engine
import Detection
import Dispatch
import Foundation
import Logging
import TestSupport
import XCTest

/// The scheduler over real rings and real WAV files, with a tiny stand-in model: the score of frame i is the
/// magnitude of the sample at that frame's time, so events follow the loud parts of the signal exactly.
final class WindowSchedulerTests: XCTestCase {
    /// 1 kHz stream, 10 s windows, 1001 output frames (one per 10 samples).
    let geometry = WindowGeometry(sampleRate: 1000, clipSamples: 10_000, stftHop: 10, frames: 1001)
    /// Loud bursts (amplitude 0.9) over quiet noise-free background (0.05): 5-8 s, 20-21.5 s, 30-45 s; 47.5 s long.
    let bursts: [(Double, Double)] = [(5, 8), (20, 21.5), (30, 45)]
    lazy var signal: [Float] = (0..<47_500).map { i in
        let t = Double(i) / 1000
        return bursts.contains { t >= $0.0 && t < $0.1 } ? (i % 2 == 0 ? 0.9 : -0.9) : 0.05
    }

    func makeDetector() throws -> Detector {
        let spec = EventSpec(definition: EventDefinition(name: "loud", labelIndices: [0], labelNames: ["Loud"]),
                             settings: EventSettings(onThreshold: 0.6, offThreshold: 0.4, minDuration: 0.25, mergeGap: 1.0))
        return try Detector(events: [spec], geometry: geometry, classes: 1, settle: 8)
    }

    /// framewise[i] = |sample at frame i|: a real closure with the model's contract, cheap enough to run every window.
    func magnitudeInference(before: (() -> Void)? = nil) -> WindowInference {
        var framewise = [Float](repeating: 0, count: geometry.frames)
        let g = geometry
        return { samples, body in
            before?()
            for i in 0..<g.frames {
                let at = min(Int(g.frameOffset(Double(i)).rounded()), samples.count - 1)
                framewise[i] = abs(samples[at])
            }
            framewise.withUnsafeBufferPointer(body)
        }
    }

    func writeWAV(_ samples: [Float], rate: Int) throws -> URL {
        let url = try Fixtures.temporaryDirectory("sched").appendingPathComponent("signal.wav")
        var data = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        data.append(contentsOf: Array("RIFF".utf8)); u32(UInt32(36 + samples.count * 4)); data.append(contentsOf: Array("WAVE".utf8))
        data.append(contentsOf: Array("fmt ".utf8)); u32(16); u16(3); u16(1); u32(UInt32(rate)); u32(UInt32(rate * 4)); u16(4); u16(32)
        data.append(contentsOf: Array("data".utf8)); u32(UInt32(samples.count * 4))
        for s in samples { u32(s.bitPattern) }
        try data.write(to: url)
        return url
    }

    func runFile() throws -> (events: [DetectionEvent], stats: SchedulerStats) {
        let url = try writeWAV(signal, rate: 1000)
        var events: [DetectionEvent] = []
        let scheduler = try WindowScheduler(detector: makeDetector(), hopSeconds: 1, logger: Logger(label: "test"),
                                            inference: magnitudeInference(), output: { events.append($0) })
        try scheduler.runFile(AudioFileReader(path: url.path, targetRate: 1000))
        return (events, scheduler.stats)
    }

    func testFileModeRunsEveryWindowAndFindsTheBursts() throws {
        let (events, stats) = try runFile()
        // 47 hop-aligned windows plus the tail window ending at 47.5 s.
        XCTAssertEqual(stats.windowsRun, 48)
        XCTAssertEqual(stats.windowsSkipped, 0)
        XCTAssertGreaterThan(stats.meanInferenceMilliseconds, 0)
        XCTAssertEqual(events.map(\.kind), [.start, .stop, .start, .stop, .start, .stop])
        let stops = events.filter { $0.kind == .stop }
        XCTAssertEqual(stops.map(\.start), bursts.map(\.0), accuracy: 0.011)
        XCTAssertEqual(stops.compactMap(\.end), bursts.map(\.1), accuracy: 0.011)
        XCTAssertEqual(stops.map(\.id), [1, 2, 3])
    }

    func testLiveModeEmitsTheSameEventsAsFileMode() throws {
        let (fileEvents, _) = try runFile()
        let ring = AudioRing(capacity: WindowScheduler.minimumRingCapacity(clipSamples: 10_000, hopSamples: 1000))
        let lock = NSLock()
        var events: [DetectionEvent] = []
        let scheduler = try WindowScheduler(detector: makeDetector(), hopSeconds: 1, logger: Logger(label: "test"),
                                            inference: magnitudeInference(), output: { e in lock.lock(); events.append(e); lock.unlock() })
        let done = DispatchSemaphore(value: 0)
        let thrown = LogCapture()  // records the error, if any
        Thread.detachNewThread {
            do { try scheduler.runLive(ring: ring) } catch { thrown.record("\(error)") }
            done.signal()
        }
        // Write in capture-sized periods, letting the scheduler keep up (a capture thread would pace it in real time).
        let period = 250
        for start in stride(from: 0, to: signal.count, by: period) {
            signal[start..<min(start + period, signal.count)].withUnsafeBufferPointer { ring.write($0) }
            let due = Int(ring.totalWritten / 1000)
            let deadline = Date().addingTimeInterval(10)
            while scheduler.stats.windowsRun < due && Date() < deadline { usleep(200) }
        }
        ring.close()
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success)
        XCTAssertEqual(thrown.messages, [])
        XCTAssertEqual(scheduler.stats.windowsSkipped, 0)
        XCTAssertEqual(scheduler.stats.windowsRun, 48)
        lock.lock(); defer { lock.unlock() }
        XCTAssertEqual(events, fileEvents)
    }

    func testLiveModeSkipsToTheLatestWindowWhenInferenceFallsBehind() throws {
        let ring = AudioRing(capacity: WindowScheduler.minimumRingCapacity(clipSamples: 10_000, hopSamples: 1000))
        let firstWindowStarted = DispatchSemaphore(value: 0)
        let proceed = DispatchSemaphore(value: 0)
        var calls = 0
        let inference = magnitudeInference {
            calls += 1
            if calls == 1 { firstWindowStarted.signal(); proceed.wait() }  // a stall during the first window
        }
        let log = LogCapture()
        var logger = Logger(label: "test") { _ in log }
        logger.logLevel = .info
        let scheduler = try WindowScheduler(detector: makeDetector(), hopSeconds: 1, logger: logger, inference: inference, output: { _ in })
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? scheduler.runLive(ring: ring)
            done.signal()
        }
        signal[0..<1000].withUnsafeBufferPointer { ring.write($0) }
        XCTAssertEqual(firstWindowStarted.wait(timeout: .now() + 10), .success)
        signal[1000..<30_000].withUnsafeBufferPointer { ring.write($0) }  // 29 s arrive during the stall
        ring.close()
        proceed.signal()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        // Windows ending at 2 ... 29 s are skipped; the next one run ends at 30 s.
        XCTAssertEqual(scheduler.stats.windowsRun, 2)
        XCTAssertEqual(scheduler.stats.windowsSkipped, 28)
        XCTAssertTrue(log.messages.contains { $0.contains("skipped 28 window(s)") }, "\(log.messages)")
    }

    /// A capture gap filled with silence arrives all at once; the windows skipped over it are counted apart and logged
    /// as a gap, not as inference falling behind (which it did not).
    func testWindowsSkippedOverACaptureGapAreNotReportedAsLag() throws {
        let ring = AudioRing(capacity: WindowScheduler.minimumRingCapacity(clipSamples: 10_000, hopSamples: 1000))
        let log = LogCapture()
        var logger = Logger(label: "test") { _ in log }
        logger.logLevel = .info
        let scheduler = try WindowScheduler(detector: makeDetector(), hopSeconds: 1, logger: logger,
                                            inference: magnitudeInference(), output: { _ in })
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? scheduler.runLive(ring: ring)
            done.signal()
        }
        func write(_ range: Range<Int>) {
            for start in stride(from: range.lowerBound, to: range.upperBound, by: 250) {
                signal[start..<min(start + 250, range.upperBound)].withUnsafeBufferPointer { ring.write($0) }
                let due = Int(ring.totalWritten / 1000), deadline = Date().addingTimeInterval(10)
                func handled() -> Int { let s = scheduler.stats; return s.windowsRun + s.windowsSkippedOverGaps }
                while handled() < due && Date() < deadline { usleep(200) }
            }
        }
        write(0..<5000)
        ring.writeSilence(count: 8000)  // 8 s lost to a reconnect, in one piece
        write(5000..<10_000)
        ring.close()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        // Windows end at 1 ... 5 s, then (6 ... 12 s skipped over the gap) at 13 ... 18 s.
        XCTAssertEqual(scheduler.stats.windowsSkippedOverGaps, 7)
        XCTAssertEqual(scheduler.stats.windowsSkipped, 0)
        XCTAssertEqual(scheduler.stats.windowsRun, 11)
        XCTAssertTrue(log.messages.contains { $0.contains("skipped 7 window(s) over a capture gap") }, "\(log.messages)")
        XCTAssertFalse(log.messages.contains { $0.contains("fell behind") }, "\(log.messages)")
    }

    func testRejectsASmallRingAndABadHopAndEndsCleanlyOnAnEmptyRing() throws {
        let scheduler = try WindowScheduler(detector: makeDetector(), logger: Logger(label: "test"), inference: magnitudeInference(), output: { _ in XCTFail("no events") })
        XCTAssertThrowsError(try scheduler.runLive(ring: AudioRing(capacity: 10_000))) {
            XCTAssertEqual($0 as? SchedulerError, .ringTooSmall(capacity: 10_000, needed: 12_000))
        }
        for hop in [0.0, 11.0, .nan] {
            XCTAssertThrowsError(try WindowScheduler(detector: makeDetector(), hopSeconds: hop, logger: Logger(label: "test"),
                                                     inference: magnitudeInference(), output: { _ in }))
        }
        let ring = AudioRing(capacity: 12_000)
        ring.close()
        try scheduler.runLive(ring: ring)
        XCTAssertEqual(scheduler.stats.windowsRun, 0)
    }
}

/// Keeps log messages for assertions.
final class LogCapture: LogHandler, @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    var messages: [String] { lock.lock(); defer { lock.unlock() }; return stored }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) { record("\(event.level): \(event.message)") }

    func record(_ text: String) {
        lock.lock(); stored.append(text); lock.unlock()
    }
}
