import AudioCapture
import Detection
import Dispatch
import Foundation
import Logging
import SystemSupport

/// Runs one inference window: `samples` (one clip) in; calls `body` with the frame-major framewise scores
/// (`frames x classes`), valid only during that call.
public typealias WindowInference = (_ samples: UnsafeBufferPointer<Float>, _ body: (UnsafeBufferPointer<Float>) -> Void) throws -> Void

/// Scheduler counters.
public struct SchedulerStats: Sendable, Equatable {
    /// Windows inferred.
    public var windowsRun = 0
    /// Windows skipped because inference fell behind (live mode only).
    public var windowsSkipped = 0
    /// Windows skipped over a capture gap: the silence filling it arrives at once, faster than real time (live mode).
    public var windowsSkippedOverGaps = 0
    /// Total time spent in inference.
    public var inferenceSeconds = 0.0
    /// The window hop, in seconds.
    public var hopSeconds: Double

    /// Creates empty counters.
    public init(hopSeconds: Double) { self.hopSeconds = hopSeconds }

    /// Mean inference time per window, in milliseconds.
    public var meanInferenceMilliseconds: Double { windowsRun > 0 ? inferenceSeconds * 1000 / Double(windowsRun) : 0 }
    /// Inference time per second of audio (one window per hop); above 1 the daemon cannot keep up.
    public var realTimeFactor: Double { windowsRun > 0 ? inferenceSeconds / (Double(windowsRun) * hopSeconds) : 0 }
}

/// Drives inference windows every hop over an `AudioRing` (live) or an `AudioFileReader` (file), feeds the
/// `Detector` and hands each event to `output`.
///
/// Window ends are multiples of the hop in stream samples (sample 0 = first sample in the ring), so live and file
/// modes run the same windows over the same audio. Windows ending before the first full clip are left-zero-padded.
/// At the end of input (file end, or the ring closed), one last window ends at the last sample if that is not
/// already a window end, then open events are closed there. Nothing allocates per window beyond the event lines.
///
/// Run one mode at a time, on one thread; `stats` may be read from any thread (hence `@unchecked Sendable`).
public final class WindowScheduler: @unchecked Sendable {
    /// The detection core fed by this scheduler.
    public let detector: Detector
    /// Samples between window ends.
    public let hopSamples: Int
    /// Samples per window.
    public let clipSamples: Int
    /// Stream sample rate.
    public let sampleRate: Int

    private let inference: WindowInference
    private let output: (DetectionEvent) -> Void
    private let logger: Logger
    private var window: [Float]
    private let statsLock = NSLock()
    private var _stats: SchedulerStats
    private let skipWarnings = LogThrottle()
    private var cancelled = false
    /// Stream samples handed to `audioTap` so far, and its staging buffer (one hop, allocated once).
    private var tapped: Int64 = 0
    private var tapBuffer: [Float]

    /// Called on the scheduler's thread with every stream sample once, in order, in pieces of at most a hop, with the
    /// stream index of the first; samples the live ring lost to a stall are skipped (the index jumps). A window's
    /// audio is handed over before its events are output. Set before running; nil costs nothing.
    public var audioTap: ((_ samples: UnsafeBufferPointer<Float>, _ at: Int64) -> Void)?

    /// Creates a scheduler with windows every `hopSeconds` (rounded to samples, at most one clip).
    public init(detector: Detector, hopSeconds: Double = 1.0, logger: Logger,
                inference: @escaping WindowInference, output: @escaping (DetectionEvent) -> Void) throws {
        let geometry = detector.fusion.geometry
        let clipSeconds = Double(geometry.clipSamples) / Double(geometry.sampleRate)
        let hop = hopSeconds.isFinite ? Int((hopSeconds * Double(geometry.sampleRate)).rounded()) : 0
        guard hop >= 1, hop <= geometry.clipSamples else { throw DetectorError.badHop(hopSeconds, clipSeconds: clipSeconds) }
        self.detector = detector
        self.hopSamples = hop
        self.clipSamples = geometry.clipSamples
        self.sampleRate = geometry.sampleRate
        self.inference = inference
        self.output = output
        self.logger = logger
        self.window = [Float](repeating: 0, count: geometry.clipSamples)
        self.tapBuffer = [Float](repeating: 0, count: hop)
        self._stats = SchedulerStats(hopSeconds: Double(hop) / Double(geometry.sampleRate))
    }

    /// The ring capacity live mode needs: a clip plus slack for a late reader.
    public static func minimumRingCapacity(clipSamples: Int, hopSamples: Int) -> Int {
        clipSamples + 2 * hopSamples
    }

    /// A snapshot of the counters (safe from any thread).
    public var stats: SchedulerStats {
        statsLock.lock()
        defer { statsLock.unlock() }
        return _stats
    }

    /// Live mode: runs windows as the ring fills until it is closed, then closes open events.
    /// If inference falls more than a hop behind, skips to the latest hop-aligned window end (counted and logged),
    /// so latency and memory stay bounded. Windows over the silence that fills a capture gap are skipped the same way
    /// but counted apart (`windowsSkippedOverGaps`, logged as such): that silence arrives all at once, so its backlog
    /// is not inference falling behind. Once the ring is closed (shutdown) it runs at most the window now due (none if
    /// there is a backlog) and one final window at the last sample: a bounded stop even when capture delivers audio
    /// faster than inference takes it.
    public func runLive(ring: AudioRing) throws {
        guard ring.capacity >= Self.minimumRingCapacity(clipSamples: clipSamples, hopSamples: hopSamples) else {
            throw SchedulerError.ringTooSmall(capacity: ring.capacity,
                                              needed: Self.minimumRingCapacity(clipSamples: clipSamples, hopSamples: hopSamples))
        }
        logStart(mode: "live")
        let hop = Int64(hopSamples)
        // Audio already in the ring when we start is not a backlog to report.
        var nextEnd = max(hop, ring.totalWritten / hop * hop)
        var lastEnd: Int64 = 0
        while true {
            let wait = ring.waitForSamples(nextEnd, timeout: 0.5)
            if wait == .timedOut { continue }
            let written = ring.totalWritten
            if wait == .closed {
                if written - nextEnd >= hop {
                    // A backlog at shutdown: every aligned window before the last sample is skipped, the final
                    // window (finishStream) covers the end.
                    noteSkipped(Int((written - nextEnd - 1) / hop + 1), at: written)
                } else if written >= nextEnd, copyWindow(from: ring, endingAt: nextEnd) {
                    feedTap(from: ring, upTo: nextEnd)
                    try runWindow(endingAt: nextEnd)  // the one window now due
                    lastEnd = nextEnd
                }
                break
            }
            if written - nextEnd > hop {
                let latest = written / hop * hop
                // Silence that capture wrote in for lost audio arrives all at once: the windows it makes due are
                // skipped too, but they are no sign of slow inference, so they are counted and logged apart.
                let late = (latest - max(nextEnd, min(ring.silenceFilledUpTo, latest))) / hop
                noteSkipped(Int(late), overGap: Int((latest - nextEnd) / hop - late), at: latest)
                nextEnd = latest
            }
            if !copyWindow(from: ring, endingAt: nextEnd) {
                // Overwritten under us (a stall longer than the ring's slack): treat as skipped.
                noteSkipped(1, at: nextEnd)
                nextEnd += hop
                continue
            }
            feedTap(from: ring, upTo: nextEnd)
            try runWindow(endingAt: nextEnd)
            lastEnd = nextEnd
            nextEnd += hop
        }
        try finishStream(ring: ring, lastEnd: lastEnd)
    }

    /// Ends `runFile` early (shutdown): it stops reading, runs the final window and closes open events. Any thread.
    public func cancel() {
        statsLock.lock()
        cancelled = true
        statsLock.unlock()
    }

    private var isCancelled: Bool {
        statsLock.lock()
        defer { statsLock.unlock() }
        return cancelled
    }

    /// File mode: every window over the whole file, as fast as possible and without skipping, then closes open events.
    public func runFile(_ reader: AudioFileReader) throws {
        logStart(mode: "file")
        let ring = AudioRing(capacity: clipSamples + hopSamples)
        var chunk = [Float](repeating: 0, count: hopSamples)
        let hop = Int64(hopSamples)
        var nextEnd = hop
        var lastEnd: Int64 = 0
        while !isCancelled {
            let n = try chunk.withUnsafeMutableBufferPointer { try reader.read(into: $0) }
            if n == 0 { break }
            chunk.withUnsafeBufferPointer { ring.write(UnsafeBufferPointer(rebasing: $0[0..<n])) }
            feedTap(from: ring, upTo: ring.totalWritten)
            while ring.totalWritten >= nextEnd {
                guard copyWindow(from: ring, endingAt: nextEnd) else { preconditionFailure("file ring holds a clip plus a hop") }
                try runWindow(endingAt: nextEnd)
                lastEnd = nextEnd
                nextEnd += hop
            }
        }
        try finishStream(ring: ring, lastEnd: lastEnd)
    }

    /// A final window at the last sample (if not already one), then the detector's finish.
    private func finishStream(ring: AudioRing, lastEnd: Int64) throws {
        var end = lastEnd
        let written = ring.totalWritten
        feedTap(from: ring, upTo: written)
        if written > lastEnd, copyWindow(from: ring, endingAt: written) {
            try runWindow(endingAt: written)
            end = written
        }
        for event in detector.finish(atSample: end) { output(event) }
        let s = stats
        logger.debug("window scheduler finished", metadata: [
            "stream_seconds": "\(Double(end) / Double(sampleRate))", "windows": "\(s.windowsRun)",
            "skipped": "\(s.windowsSkipped)", "mean_inference_ms": "\(s.meanInferenceMilliseconds)",
            "real_time_factor": "\(s.realTimeFactor)",
        ])
    }

    private func logStart(mode: String) {
        logger.debug("window scheduler started", metadata: [
            "mode": "\(mode)", "hop_s": "\(Double(hopSamples) / Double(sampleRate))",
            "clip_s": "\(Double(clipSamples) / Double(sampleRate))",
            "settle_s": "\(Double(detector.fusion.settleSamples) / Double(sampleRate))",
        ])
    }

    private func runWindow(endingAt end: Int64) throws {
        let started = DispatchTime.now().uptimeNanoseconds
        var elapsed: UInt64 = 0
        var events: [DetectionEvent] = []
        try window.withUnsafeBufferPointer { samples in
            try inference(samples) { framewise in
                elapsed = DispatchTime.now().uptimeNanoseconds - started
                events = detector.consume(windowEndSample: end, framewise: framewise)
            }
        }
        statsLock.lock()
        _stats.windowsRun += 1
        _stats.inferenceSeconds += Double(elapsed) / 1e9
        statsLock.unlock()
        for event in events { output(event) }
    }

    /// Hands the samples in [`tapped`, `end`) to `audioTap`, a hop at a time; any the ring no longer holds are skipped.
    private func feedTap(from ring: AudioRing, upTo end: Int64) {
        guard let tap = audioTap else { return }
        tapped = max(tapped, ring.oldestAvailable)
        while tapped < end {
            let n = Int(min(Int64(hopSamples), end - tapped))
            let intact = tapBuffer.withUnsafeMutableBufferPointer { ring.read(endingAt: tapped + Int64(n), count: n, into: $0) }
            if intact { tapBuffer.withUnsafeBufferPointer { tap(UnsafeBufferPointer(rebasing: $0[0..<n]), tapped) } }
            tapped += Int64(n)
        }
    }

    /// Copies the clip ending at `end` into `window`, zero-padding on the left before the stream start.
    private func copyWindow(from ring: AudioRing, endingAt end: Int64) -> Bool {
        let available = Int(min(end, Int64(clipSamples)))
        let pad = clipSamples - available
        return window.withUnsafeMutableBufferPointer { buffer in
            if pad > 0 { buffer.baseAddress!.update(repeating: 0, count: pad) }
            return ring.read(endingAt: end, count: available, into: UnsafeMutableBufferPointer(rebasing: buffer[pad...]))
        }
    }

    private func noteSkipped(_ count: Int, overGap: Int = 0, at end: Int64) {
        statsLock.lock()
        _stats.windowsSkipped += count
        _stats.windowsSkippedOverGaps += overGap
        let total = _stats.windowsSkipped
        statsLock.unlock()
        if overGap > 0 {
            // The capture logged the gap itself; this only says what it cost.
            logger.info("skipped \(overGap) window(s) over a capture gap filled with silence",
                        metadata: ["stream_seconds": "\(Double(end) / Double(sampleRate))"])
        }
        guard count > 0 else { return }
        // At most one warning per 10 s of wall time, so a slow machine (or an unpaced source) does not flood the log.
        skipWarnings.record { folded in
            logger.warning("inference fell behind real time: skipped \(count) window(s), \(total) in all; consider a larger --hop or more threads\(LogThrottle.suffix(folded))",
                           metadata: ["stream_seconds": "\(Double(end) / Double(sampleRate))",
                                      "mean_inference_ms": "\(stats.meanInferenceMilliseconds)"])
        }
    }
}

/// Scheduler set-up errors.
public enum SchedulerError: Error, CustomStringConvertible, Equatable {
    /// The live ring cannot hold a clip plus slack.
    case ringTooSmall(capacity: Int, needed: Int)

    public var description: String {
        switch self {
        case let .ringTooSmall(capacity, needed):
            return "audio ring holds \(capacity) samples but the scheduler needs at least \(needed) (a clip plus two hops)"
        }
    }
}
