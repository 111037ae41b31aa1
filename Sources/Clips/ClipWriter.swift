import Detection
import Foundation
import Logging
import SystemSupport

/// The `clips` settings.
public struct ClipSettings: Equatable, Sendable {
    /// Directory holding `YYYY-MM-DD/…` clip files.
    public var dir: String
    /// Seconds of audio before the start and after the end.
    public var preRoll = 2.0, postRoll = 1.0
    public var format = ClipFormat.flac
    /// Longest clip; a longer event gets its first `maxSeconds` (counted from the clip start).
    public var maxSeconds = 120.0
    public var budget = ClipBudget()
    /// Write a spectrogram PNG beside each clip.
    public var spectrogram = false

    public init(dir: String) { self.dir = dir }
}

/// What an event line says about its clip.
public struct ClipReference: Equatable, Sendable {
    /// The clip's path (it appears there, atomically, once written).
    public var path: String
    /// The event outlasted `max_seconds`: the clip holds its first `max_seconds`.
    public var truncated: Bool
}

/// Counters of the clip writer.
public struct ClipStats: Equatable, Sendable {
    public var written = 0
    /// Clips given up: a full disk, an I/O error, the budget, or audio the writer fell too far behind to read.
    public var abandoned = 0
    /// Files (clips and pictures) retention deleted, their bytes, and how many of them went for the disk budget
    /// (`max_bytes`, `min_free_percent`) rather than age.
    public var deletedFiles = 0, deletedBytes: Int64 = 0, budgetEvictions = 0

    public init(written: Int = 0, abandoned: Int = 0) { (self.written, self.abandoned) = (written, abandoned) }
}

/// Why the clip directory cannot be used (start-up).
public struct ClipDirectoryError: Error, CustomStringConvertible {
    public var dir: String
    public var detail: String
    public var description: String {
        "clip directory \(dir) is not usable: \(detail); create it writable for the daemon user (the systemd unit: StateDirectory=htsatd, /var/lib/htsatd/clips) or choose another --clips directory"
    }
}

/// The log-mel of a clip: mel bands, and `frames x mels` dB values, frame-major.
public typealias ClipLogMel = (UnsafeBufferPointer<Float>) -> (mels: Int, values: [Float])

/// Writes one audio file per event on its own thread, never blocking the engine.
///
/// Design: the engine thread `feed`s every stream sample once, in order, into a fixed history ring (`history` +
/// slack seconds, allocated once; a feed is a copy under a lock, no allocation), and posts starts and stops stamped
/// with the stream position fed so far. The writer thread follows the stream: on a start it opens a temporary file
/// and writes the pre-roll from the ring, then streams the clip to it, always staying `lag` seconds behind the stream.
/// `lag` covers the longest a stop can arrive after its event's end (settle + hop + merge gap or onset tolerance), so
/// when the stop comes nothing past end + post-roll has been written yet: the writer writes up to exactly there,
/// closes, checks the file, renames it into place. Memory is the ring whatever the event length.
///
/// Live mode never waits: a writer that falls more than the slack behind loses the clips whose audio was overwritten
/// (counted). File mode (`wait: true`) waits for the writer instead, so a file gives the clips live capture would.
public final class ClipWriter: @unchecked Sendable {
    public let settings: ClipSettings
    public let sampleRate: Int
    /// Samples the writer stays behind the stream while an event is open.
    public let lagSamples: Int64
    private let historySamples: Int64
    private let slackSamples: Int64
    private let capacity: Int
    private let storage: UnsafeMutablePointer<Float>
    private let logMel: ClipLogMel?
    private let logger: Logger
    private let retention: ClipRetention
    /// Seconds between retention passes while running (10 min).
    private let retentionInterval: Double

    // Shared with the engine thread, under `cond`.
    private let cond = NSCondition()
    private var fed: Int64 = 0
    private var position: Int64 = 0  // the writer's "now": commands before it are handled
    private var commands: [(stamp: Int64, command: Command)] = []
    private var references: [Int: (path: String, abandoned: Bool)] = [:]
    private var running = false
    private var _stats = ClipStats()

    // Writer thread only.
    private var active: [OpenClip] = []
    private var scratch: [Float]
    private var committedBytes: Int64 = 0
    private var loggedFailure = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)

    private enum Command {
        case start(id: Int, name: ClipName, from: Int64, eventStart: Double)
        case stop(id: Int, to: Int64, eventEnd: Double)
        case finish
    }

    private final class OpenClip {
        let id: Int, name: ClipName, path: String, temporary: String, from: Int64, eventStart: Double
        var target: Int64, written: Int64, stopped = false, eventEnd: Double?
        let file: SoundFileWriter
        init(id: Int, name: ClipName, path: String, temporary: String, from: Int64, target: Int64, eventStart: Double, file: SoundFileWriter) {
            (self.id, self.name, self.path, self.temporary, self.from) = (id, name, path, temporary, from)
            (self.target, self.written, self.eventStart, self.file) = (target, from, eventStart, file)
        }
    }

    /// How far behind the stream the writer must stay so that a stop never finds audio past its end written:
    /// settle + hop + the longest wait before a stop (merge gap, onset tolerance, min duration) + 1 s.
    public static func lagSeconds(settle: Double, hop: Double, events: [EventSettings]) -> Double {
        let wait = events.map { max($0.mergeGap, $0.minDuration, 1, hop) }.max() ?? max(1, hop)
        return settle + hop + wait + 1
    }

    /// Checks that `settings.dir` is writable (creating it), removes leftovers of an earlier run and enforces the
    /// budget; throws a `ClipDirectoryError` naming the directory otherwise.
    public init(settings: ClipSettings, sampleRate: Int, lagSeconds: Double, hopSeconds: Double,
                logMel: ClipLogMel? = nil, retentionInterval: Double = 600, logger: Logger) throws {
        self.settings = settings
        self.retentionInterval = retentionInterval
        self.sampleRate = sampleRate
        self.logMel = logMel
        self.logger = logger
        let rate = Double(sampleRate)
        lagSamples = Int64((lagSeconds * rate).rounded(.up))
        historySamples = lagSamples + Int64((settings.preRoll * rate).rounded(.up))
        slackSamples = Int64(max(4, 2 * hopSeconds) * rate)
        capacity = Int(historySamples + slackSamples)
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: 0, count: capacity)
        scratch = [Float](repeating: 0, count: sampleRate / 2)
        commands.reserveCapacity(32)
        retention = ClipRetention(dir: settings.dir, budget: settings.budget)
        try Self.checkWritable(settings.dir)
        _ = retention.scan(removingStaleTemporaries: true, logger: logger)
        enforceRetention()
        logger.info("writing event clips", metadata: [
            "dir": "\(settings.dir)", "format": "\(settings.format.rawValue)", "pre_roll_s": "\(settings.preRoll)",
            "post_roll_s": "\(settings.postRoll)", "buffer_s": "\(Double(capacity) / rate)",
        ])
    }

    deinit { storage.deallocate() }

    private static func checkWritable(_ dir: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw ClipDirectoryError(dir: dir, detail: "cannot create it (\((error as NSError).localizedFailureReason ?? "\(error)"))")
        }
        let probe = dir + "/.htsatd-probe-\(getpid())"
        switch posixCall({ open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600) }) {
        case .success(let fd):
            close(Int32(fd))
            unlink(probe)
        case .failure(let e):
            throw ClipDirectoryError(dir: dir, detail: "cannot create files in it (\(e))")
        }
    }

    /// A snapshot of the counters.
    public var stats: ClipStats {
        cond.lock(); defer { cond.unlock() }
        return _stats
    }

    // MARK: Engine thread

    /// The stream's samples from stream sample `at`, in order (a gap since the last feed is filled with silence).
    /// `wait` (file mode) waits for the writer when the ring is full; otherwise the oldest audio is overwritten.
    public func feed(_ samples: UnsafeBufferPointer<Float>, at: Int64, wait: Bool) {
        cond.lock()
        defer { cond.unlock() }
        let n = Int64(samples.count)
        if wait { while running, fed + n - position > slackSamples { cond.wait() } }
        if at > fed {
            let gap = min(at - fed, Int64(capacity))
            store(nil, count: Int(gap), at: at - gap)
            fed = at
        }
        let skip = Int(max(0, fed - at))  // already fed (never expected)
        guard skip < samples.count else { return }
        store(samples.baseAddress! + skip, count: samples.count - skip, at: fed)
        fed += Int64(samples.count - skip)
        cond.broadcast()
    }

    private func store(_ source: UnsafePointer<Float>?, count: Int, at: Int64) {
        var done = 0
        while done < count {
            let pos = Int((at + Int64(done)) % Int64(capacity))
            let n = min(count - done, capacity - pos)
            if let source { (storage + pos).update(from: source + done, count: n) } else { (storage + pos).update(repeating: 0, count: n) }
            done += n
        }
    }

    /// An event started at wall-clock `date`: its clip begins `pre_roll` before (times as the line rounds them).
    public func started(_ event: DetectionEvent, at date: Date) {
        let name = ClipName(event: event.event, start: date, id: event.id, ext: settings.format.rawValue)
        let from = sample(Self.rounded(event.start) - settings.preRoll)
        cond.lock()
        references[event.id] = (settings.dir + "/" + name.relativePath, false)
        commands.append((fed, .start(id: event.id, name: name, from: from, eventStart: Self.rounded(event.start))))
        cond.broadcast()
        cond.unlock()
    }

    /// An event stopped: its clip ends `post_roll` after the end. Returns the clip to name in the stop line, or nil
    /// when it was already given up (or never started).
    public func stopped(_ event: DetectionEvent) -> ClipReference? {
        let start = Self.rounded(event.start), end = Self.rounded(event.end ?? event.start)
        let from = sample(start - settings.preRoll), to = sample(end + settings.postRoll)
        cond.lock()
        defer { cond.unlock() }
        guard let ref = references.removeValue(forKey: event.id) else { return nil }
        commands.append((fed, .stop(id: event.id, to: to, eventEnd: end)))
        cond.broadcast()
        return ref.abandoned ? nil : ClipReference(path: ref.path, truncated: to - from > maxSamples)
    }

    private var maxSamples: Int64 { Int64((settings.maxSeconds * Double(sampleRate)).rounded()) }
    private func sample(_ seconds: Double) -> Int64 { max(0, Int64((seconds * Double(sampleRate)).rounded())) }
    private static func rounded(_ x: Double) -> Double { x.isFinite ? (x * 1000).rounded() / 1000 : 0 }

    // MARK: Lifecycle

    /// Starts the writer thread.
    public func start() {
        cond.lock(); running = true; cond.unlock()
        thread = startThread(named: "htsatd-clips", signalling: done) { [self] in run() }
    }

    /// Ends every open clip at the last sample fed, writes it, and joins the thread (after the engine stopped).
    public func finish() {
        cond.lock()
        let wasRunning = running
        commands.append((fed, .finish))
        cond.broadcast()
        cond.unlock()
        if wasRunning { done.wait() }
        let s = stats
        logger.info("clips: \(s.written) written, \(s.abandoned) abandoned", metadata: ["dir": "\(settings.dir)"])
    }

    // MARK: Writer thread

    private enum Step { case command(Command), advance(Int64), retention }

    private func run() {
        var nextRetention = Date().addingTimeInterval(retentionInterval)
        loop: while true {
            cond.lock()
            var step: Step
            while true {
                // First, so that a writer kept busy by audio every hop still runs retention on time.
                if Date() >= nextRetention { step = .retention; break }
                if let first = commands.first, first.stamp <= position {
                    commands.removeFirst()
                    step = .command(first.command)
                    break
                }
                let limit = min(fed, commands.first?.stamp ?? .max)
                if limit > position {
                    step = .advance(limit)
                    break
                }
                cond.wait(until: nextRetention)
            }
            cond.unlock()
            switch step {
            case .command(.finish):
                for clip in active { clip.target = min(clip.target, position); clip.stopped = true }
                writeOpenClips(now: position)
                break loop
            case let .command(.start(id, name, from, eventStart)):
                begin(id: id, name: name, from: from, eventStart: eventStart)
                writeOpenClips(now: position)
            case let .command(.stop(id, to, eventEnd)):
                if let clip = active.first(where: { $0.id == id }) {
                    clip.target = min(clip.target, to)
                    clip.stopped = true
                    clip.eventEnd = eventEnd
                }
                writeOpenClips(now: position)
            case .advance(let now):
                // `position` moves only once the audio before it is written: the feed's wait keeps the ring from
                // overwriting what an open clip still needs.
                writeOpenClips(now: now)
                cond.lock(); position = now; cond.broadcast(); cond.unlock()
            case .retention:
                enforceRetention(extraBytes: openBytes)
                nextRetention = Date().addingTimeInterval(retentionInterval)
            }
        }
        cond.lock(); running = false; cond.broadcast(); cond.unlock()
    }

    /// A retention pass (`extraBytes`: the clips being written), counted; `committedBytes` becomes what is left.
    private func enforceRetention(extraBytes: Int64 = 0) {
        let outcome = retention.enforce(extraBytes: extraBytes, logger: logger)
        committedBytes = outcome.bytes
        cond.lock()
        _stats.deletedFiles += outcome.deleted.count
        _stats.deletedBytes += outcome.deletedBytes
        _stats.budgetEvictions += outcome.budgetEvictions
        cond.unlock()
    }

    private var openBytes: Int64 { active.reduce(0) { $0 + $1.file.bytes } }

    private func begin(id: Int, name: ClipName, from requested: Int64, eventStart: Double) {
        let dayDir = settings.dir + "/" + name.day
        let path = settings.dir + "/" + name.relativePath
        let temporary = dayDir + "/." + name.file + ".tmp"
        cond.lock(); let oldest = max(0, fed - Int64(capacity)); cond.unlock()
        if requested < oldest { logger.debug("clip \(path): pre-roll no longer buffered; it starts \(Double(oldest - requested) / Double(sampleRate)) s late") }
        let from = max(requested, oldest)
        do {
            try FileManager.default.createDirectory(atPath: dayDir, withIntermediateDirectories: true)
            unlink(temporary)
            let file = try SoundFileWriter(path: temporary, format: settings.format, sampleRate: sampleRate)
            active.append(OpenClip(id: id, name: name, path: path, temporary: temporary, from: from,
                                 target: from + maxSamples, eventStart: eventStart, file: file))
        } catch {
            fail(id: id, path: path, temporary: temporary, reason: "\(error)")
        }
    }

    /// Writes every open clip up to `now` (less the lag until its stop is known); finishes those complete.
    private func writeOpenClips(now: Int64) {
        for clip in active {
            let end = min(clip.target, clip.stopped ? now : now - lagSamples)
            if let reason = write(clip, upTo: end) {
                clip.file.abandon()
                active.removeAll { $0 === clip }
                fail(id: clip.id, path: clip.path, temporary: clip.temporary, reason: reason)
            } else if clip.written >= clip.target {
                active.removeAll { $0 === clip }
                complete(clip)
            }
        }
    }

    /// Nil on success, else why the clip is given up.
    private func write(_ clip: OpenClip, upTo end: Int64) -> String? {
        while clip.written < end {
            let n = Int(min(Int64(scratch.count), end - clip.written))
            cond.lock()
            let intact = clip.written >= fed - Int64(capacity) && clip.written + Int64(n) <= fed
            if intact { scratch.withUnsafeMutableBufferPointer { copyOut(from: clip.written, count: n, into: $0.baseAddress!) } }
            cond.unlock()
            guard intact else { return "its audio is no longer buffered (the clip writer fell behind the stream)" }
            do {
                try scratch.withUnsafeBufferPointer { try clip.file.write(UnsafeBufferPointer(rebasing: $0[0..<n])) }
            } catch {
                return "\(error)"
            }
            clip.written += Int64(n)
            if let reason = overBudget() { return reason }
        }
        return nil
    }

    private func copyOut(from: Int64, count: Int, into dst: UnsafeMutablePointer<Float>) {
        var done = 0
        while done < count {
            let pos = Int((from + Int64(done)) % Int64(capacity))
            let n = min(count - done, capacity - pos)
            (dst + done).update(from: storage + pos, count: n)
            done += n
        }
    }

    /// When the clips being written break `max_bytes` or `min_free_percent`, older clips go first; if that is not
    /// enough, the reason to give up the current one.
    private func overBudget() -> String? {
        let budget = settings.budget
        let extra = openBytes
        let overBytes = budget.maxBytes.map { committedBytes + extra > $0 } ?? false
        let underFree = budget.minFreePercent.map { min in retention.freePercent().map { $0 < min } ?? false } ?? false
        guard overBytes || underFree else { return nil }
        enforceRetention(extraBytes: extra)
        if let max = budget.maxBytes, committedBytes + extra > max {
            return "the clips being written exceed max_bytes (\(max) bytes)"
        }
        if let min = budget.minFreePercent, let free = retention.freePercent(), free < min {
            return "the file system has \(String(format: "%.1f", free)) % free, under min_free_percent (\(min) %)"
        }
        return nil
    }

    private func complete(_ clip: OpenClip) {
        do {
            try clip.file.finish()
            let frames = SoundFileWriter.frameCount(path: clip.temporary)
            guard frames == clip.written - clip.from else {
                throw ClipFileError(path: clip.temporary, detail: "reads back \(frames.map(String.init) ?? "no") frames instead of \(clip.written - clip.from)")
            }
            if case .failure(let e) = posixCall({ rename(clip.temporary, clip.path) }) {
                throw ClipFileError(path: clip.path, detail: "rename failed: \(e)")
            }
        } catch {
            fail(id: clip.id, path: clip.path, temporary: clip.temporary, reason: "\(error)")
            return
        }
        committedBytes += fileSize(clip.path)
        cond.lock(); _stats.written += 1; cond.unlock()
        logger.debug("clip written", metadata: ["path": "\(clip.path)", "seconds": "\(Double(clip.written - clip.from) / Double(sampleRate))"])
        if settings.spectrogram, let logMel { picture(clip, logMel: logMel) }
    }

    private func picture(_ clip: OpenClip, logMel: ClipLogMel) {
        guard let samples = SoundFileWriter.readAll(path: clip.path), !samples.isEmpty else { return }
        let (mels, values) = samples.withUnsafeBufferPointer { logMel($0) }
        let length = Double(samples.count) / Double(sampleRate)
        let offset = Double(clip.from) / Double(sampleRate)
        let image = SpectrogramPicture.clip(logMel: values, mels: mels, from: (clip.eventStart - offset) / length,
                                            to: ((clip.eventEnd ?? offset + length) - offset) / length)
        let png = clip.name.with(ext: "png")
        let path = settings.dir + "/" + png.relativePath
        let temporary = settings.dir + "/" + png.day + "/." + png.file + ".tmp"
        guard let bytes = image.png(), FileManager.default.createFile(atPath: temporary, contents: Data(bytes)),
              posixCall({ rename(temporary, path) }).isSuccess else {
            unlink(temporary)
            logger.warning("cannot write the spectrogram \(path)")
            return
        }
        committedBytes += fileSize(path)
    }

    private func fileSize(_ path: String) -> Int64 {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : 0
    }

    private func fail(id: Int, path: String, temporary: String, reason: String) {
        unlink(temporary)
        cond.lock()
        _stats.abandoned += 1
        let count = _stats.abandoned
        if references[id] != nil { references[id]?.abandoned = true }
        cond.unlock()
        if !loggedFailure {
            loggedFailure = true
            logger.error("clip \(path) abandoned: \(reason); events go on, and further lost clips are counted (total at shutdown)")
        } else {
            logger.debug("clip \(path) abandoned (\(count) so far): \(reason)")
        }
    }
}

private extension Result {
    var isSuccess: Bool { if case .success = self { return true } else { return false } }
}
