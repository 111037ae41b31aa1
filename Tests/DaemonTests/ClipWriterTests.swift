import Clips
import Detection
import Foundation
import Logging
import TestSupport
import XCTest

/// The clip writer alone, on a synthetic stream: starts and stops arriving as late as the lag allows still give
/// clips of exactly [start - pre, end + post], overlapping events get their own clips, an event open at the end is
/// cut at the last sample, and max_seconds truncates.
final class ClipWriterTests: XCTestCase {
    func testClipWriterCutsExactSpansWhenStopsArriveLate() throws {
        let dir = try Fixtures.temporaryDirectory("htsatd-clipwriter")
        defer { try? FileManager.default.removeItem(at: dir) }
        let rate = 1000
        var settings = ClipSettings(dir: dir.path)
        settings.format = .wav
        settings.maxSeconds = 12
        let lag = 3.0
        let writer = try ClipWriter(settings: settings, sampleRate: rate, lagSeconds: lag, hopSeconds: 0.1,
                                    logger: Logger(label: "test"))
        writer.start()
        // Every sample distinct, so any misalignment shows.
        let stream = (0..<40_000).map { Float($0) / 65536 }
        func event(_ kind: DetectionEvent.Kind, _ id: Int, _ start: Double, _ end: Double? = nil) -> DetectionEvent {
            DetectionEvent(kind: kind, event: "dog_bark", id: id, start: start, end: end, score: 0.9, labels: [])
        }
        // (stream position in samples, action): each line arrives almost `lag` after the instant it describes.
        let early = 2.9
        var actions: [(Int, Int, () -> ClipReference?)] = [
            (Int((5 + early) * 1000), 1, { writer.started(event(.start, 1, 5), at: Date(timeIntervalSince1970: 1_800_000_000)); return nil }),
            (Int((7 + early) * 1000), 2, { writer.started(event(.start, 2, 7), at: Date(timeIntervalSince1970: 1_800_000_002)); return nil }),
            (Int((10 + early) * 1000), 1, { writer.stopped(event(.stop, 1, 5, 10)) }),
            (Int((12.5 + early) * 1000), 2, { writer.stopped(event(.stop, 2, 7, 12.5)) }),
            (Int((15 + early) * 1000), 3, { writer.started(event(.start, 3, 15), at: Date(timeIntervalSince1970: 1_800_000_010)); return nil }),
            (Int((30 + early) * 1000), 3, { writer.stopped(event(.stop, 3, 15, 30)) }),
            (Int((36.5 + early) * 1000), 4, { writer.started(event(.start, 4, 36.5), at: Date(timeIntervalSince1970: 1_800_000_033)); return nil }),
        ]
        var references: [Int: ClipReference] = [:]
        for at in stride(from: 0, to: stream.count, by: 100) {
            stream.withUnsafeBufferPointer { writer.feed(UnsafeBufferPointer(rebasing: $0[at..<at + 100]), at: Int64(at), wait: true) }
            while let (position, id, action) = actions.first, position <= at + 100 {
                actions.removeFirst()
                if let ref = action() { references[id] = ref }
            }
        }
        writer.finish()
        XCTAssertEqual(writer.stats, ClipStats(written: 4, abandoned: 0))
        XCTAssertEqual(references[3]?.truncated, true, "event 3 outlasts max_seconds")
        XCTAssertEqual(references[1]?.truncated, false)

        func clip(_ id: Int, _ time: Int) throws -> [Float] {
            let name = ClipName(event: "dog_bark", start: Date(timeIntervalSince1970: TimeInterval(time)), id: id, ext: "wav")
            return try XCTUnwrap(readSound(dir.path + "/" + name.relativePath), name.relativePath).samples
        }
        XCTAssertEqual(references[1]?.path, dir.path + "/" + ClipName(event: "dog_bark", start: Date(timeIntervalSince1970: 1_800_000_000), id: 1, ext: "wav").relativePath)
        XCTAssertTrue(try clip(1, 1_800_000_000) == Array(stream[3000..<11000]), "event 1: [5 - 2, 10 + 1] s")
        XCTAssertTrue(try clip(2, 1_800_000_002) == Array(stream[5000..<13500]), "event 2, overlapping event 1")
        XCTAssertTrue(try clip(3, 1_800_000_010) == Array(stream[13000..<25000]), "event 3: its first max_seconds")
        XCTAssertTrue(try clip(4, 1_800_000_033) == Array(stream[34500..<40000]), "event 4, open at the end: cut at the last sample")
    }

    /// Retention runs on its timer while the writer runs and audio flows, not only at start-up: a clip past
    /// max_age_days that appears after start is deleted.
    func testClipRetentionRunsPeriodicallyWhileAudioFlows() throws {
        let dir = try Fixtures.temporaryDirectory("htsatd-clipwriter")
        defer { try? FileManager.default.removeItem(at: dir) }
        var settings = ClipSettings(dir: dir.path)
        settings.budget = ClipBudget(maxAgeDays: 1)
        let writer = try ClipWriter(settings: settings, sampleRate: 1000, lagSeconds: 1, hopSeconds: 0.01,
                                    retentionInterval: 0.05, logger: Logger(label: "test"))
        writer.start()
        let old = dir.appendingPathComponent("2020-01-01/siren-20200101T000000Z-7.flac")
        try FileManager.default.createDirectory(at: old.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data([1]).write(to: old)
        // A feeder as fast as the writer takes audio (file-mode feeds wait for it).
        let feeding = ManagedAtomicFlag()
        let fed = DispatchSemaphore(value: 0)
        Thread {
            let hop = [Float](repeating: 0, count: 10)
            var at: Int64 = 0
            while feeding.isSet {
                hop.withUnsafeBufferPointer { writer.feed($0, at: at, wait: true) }
                at += 10
            }
            fed.signal()
        }.start()
        let gone = eventually(timeout: 10) { !FileManager.default.fileExists(atPath: old.path) }
        feeding.clear()
        fed.wait()
        writer.finish()
        XCTAssertTrue(gone, "an old clip survived 10 s of running")
    }
}

/// A flag shared with a feeder thread.
private final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = true
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func clear() { lock.lock(); value = false; lock.unlock() }
}
