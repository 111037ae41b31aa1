import AudioCapture
import Detection
import Dispatch
import Foundation
import HTSAT
import Logging
import Sinks
#if canImport(Glibc)
import Glibc
#endif

/// A start-up or run-time failure, printed as one `error:` line before a non-zero exit.
public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The model, labels and resolved events a run needs; loaded once at start-up.
struct LoadedModel {
    let model: HTSATModel
    let specs: [EventSpec]
    let labels: AudioSetLabels

    /// Loads labels first (cheap, and the usual mistake), resolves the events, then loads the checkpoint.
    init(config: DaemonConfig, logger: Logger) throws {
        let labels = try loadLabels(path: config.labelsPath)
        let catalog = try EventCatalog(labels: labels)
        let definitions = try catalog.resolve(config.events)
        specs = zip(config.events, definitions).map { name, definition in
            let overridden = config.eventSettings[name] != nil ? name : definition.name
            return EventSpec(definition: definition, settings: config.settings(for: overridden))
        }
        let started = DispatchTime.now().uptimeNanoseconds
        model = try loadModel(path: config.model, signal: config.signal.modelSignal, threads: config.threads,
                              precision: config.precision == .bfloat16 ? .bfloat16 : .float32)
        try labels.validate(classes: model.config.classes)
        self.labels = labels
        logger.info("model loaded", metadata: [
            "path": "\(config.model)",
            "ms": "\((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)",
            "embed_dim": "\(model.config.embedDim)", "depths": "\(model.config.depths)",
            "classes": "\(model.config.classes)", "threads": "\(config.threads)", "precision": "\(config.precision.rawValue)",
        ])
    }

    var geometry: WindowGeometry {
        let s = model.config.signal
        return WindowGeometry(sampleRate: s.sampleRate, clipSamples: s.clipSamples, stftHop: s.hopSize,
                              frames: model.config.framewiseFrames)
    }
}

/// Reads the AudioSet label list, with a hint for the usual cause (not downloaded yet).
func loadLabels(path: String) throws -> AudioSetLabels {
    guard FileManager.default.fileExists(atPath: path) else {
        throw DaemonError("labels file \(path) not found: pass --labels PATH, set \"labels\" in the config, or run scripts/download-model.sh")
    }
    return try AudioSetLabels(contentsOf: URL(fileURLWithPath: path))
}

/// Loads a checkpoint (.ckpt, torch.save or .safetensors) into a model.
func loadModel(path: String, signal: SignalConfig, threads: Int, precision: HTSATPrecision = .float32) throws -> HTSATModel {
    guard FileManager.default.fileExists(atPath: path) else {
        throw DaemonError("model file \(path) not found: pass --model PATH, set \"model\" in the config, or run scripts/download-model.sh")
    }
    return try HTSATModel(stateDict: try StateDict.load(contentsOf: path), signal: signal, threads: threads, precision: precision)
}

extension DaemonConfig.Signal {
    /// The model's signal parameters (fmin/fmax only shape the stored mel filterbank, so the preset's are kept).
    var modelSignal: SignalConfig {
        SignalConfig(sampleRate: sampleRate, hopSize: hopSize, clipSamples: clipSamples,
                     fmin: SignalConfig.audioSet.fmin, fmax: SignalConfig.audioSet.fmax)
    }
}

/// Runs the pipeline: audio (ALSA or a file) → windows → model → fusion and tracking → event lines to the sinks.
final class Pipeline: @unchecked Sendable {
    private let config: DaemonConfig
    private let logger: Logger
    private let loaded: LoadedModel
    private let notifier: SystemdNotifier
    private var sinks: [EventSink] = []
    private var logFile: LogFileSink?
    private var socket: UnixSocketSink?
    private let lock = NSLock()
    private var ring: AudioRing?
    private var stopRequested = false
    /// Uptime (ns) of the last sign of progress: a window processed, or capture retrying a lost device.
    private var lastProgress: UInt64 = 0
    private var announcedReady = false
    private var isLive = false
    /// The socket sink's replay slot for the latest status line (event ids count up from 1, so this never clashes).
    private static let statusSlot = UInt64.max
    private var scheduler: WindowScheduler?
    private var reader: AudioFileReader?

    init(config: DaemonConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        self.notifier = SystemdNotifier(logger: logger)
        for name in config.unusedEventSettings {
            logger.warning("event_settings has \"\(name)\", which is not among the selected events (\(config.events.joined(separator: ", "))): check its spelling")
        }
        self.loaded = try LoadedModel(config: config, logger: logger)
        try openSinks()
    }

    private func openSinks() throws {
        if config.outputs.stdout { sinks.append(StdoutSink(logger: logger)) }
        if let path = config.outputs.socket {
            let group = config.outputs.socketGroup.flatMap { getgrnam($0)?.pointee.gr_gid }
            let sink = try UnixSocketSink(path: path, mode: mode_t(config.outputs.socketMode), group: group,
                                          maxClientBacklog: config.outputs.maxClientBacklog, logger: logger)
            socket = sink
            sinks.append(sink)
        }
        if let path = config.outputs.logFile {
            let sink = try LogFileSink(path: path, logger: logger)
            logFile = sink
            sinks.append(sink)
        }
        if sinks.isEmpty { logger.warning("no outputs: events are computed but go nowhere (add --socket or --log-file, or drop --no-stdout)") }
    }

    private func makeScheduler(clock: @escaping @Sendable (Double) -> Date) throws -> WindowScheduler {
        let settle = config.settleSeconds ?? Detector.defaultSettle(clipSeconds: config.signal.clipSeconds, hopSeconds: config.hopSeconds)
        let detector = try Detector(events: loaded.specs, geometry: loaded.geometry, classes: loaded.model.config.classes,
                                    settle: settle, onsetSettle: config.onsetSettleSeconds ?? min(Detector.defaultOnsetSettle, settle),
                                    hopSeconds: config.hopSeconds)
        let encoder = EventLineEncoder(clock: clock)
        let fanout = SinkFanout(sinks)
        let infer = WindowScheduler.inference(model: loaded.model)
        return try WindowScheduler(
            detector: detector, hopSeconds: config.hopSeconds, logger: logger,
            inference: { [weak self] samples, body in
                try infer(samples, body)
                self?.windowDone()
            },
            output: { event in
                let id = UInt64(event.id)
                fanout.publish(SinkMessage(line: encoder.line(for: event),
                                           opens: event.kind == .start ? id : nil,
                                           closes: event.kind == .stop ? id : nil))
            })
    }

    // MARK: - File mode

    /// Runs every window over a file ("-" = stdin) as fast as possible; returns after closing open events.
    func runFile(path: String) throws {
        let rate = loaded.model.config.signal.sampleRate
        let reader = try AudioFileReader(path: path, targetRate: rate)
        logger.info("reading \(path == "-" ? "stdin" : path): \(reader.formatDescription), \(reader.sourceRate) Hz, \(reader.channels) channel(s)")
        let started = Date()
        let scheduler = try makeScheduler(clock: EventLineEncoder.clock(origin: started))
        lock.lock()
        self.scheduler = scheduler
        self.reader = reader
        let stopping = stopRequested
        lock.unlock()
        if stopping { scheduler.cancel() }
        let cpu0 = cpuSeconds()
        try scheduler.runFile(reader)
        let wall = Date().timeIntervalSince(started)
        let s = scheduler.stats
        let audio = Double(s.windowsRun) * s.hopSeconds
        logger.info("file done", metadata: [
            "windows": "\(s.windowsRun)", "mean_inference_ms": "\(fmt(s.meanInferenceMilliseconds))",
            "speed": "\(fmt(audio / max(wall, 1e-9)))x real time", "cpu_s": "\(fmt(cpuSeconds() - cpu0))",
        ])
        closeSinks()
    }

    // MARK: - Live mode

    /// Captures from ALSA until `stop()`; returns after the final stops are written. Throws on a fatal device error.
    func runLive(paceToRealTime: Bool) throws {
        let signal = loaded.model.config.signal
        let hop = max(1, Int((config.hopSeconds * Double(signal.sampleRate)).rounded()))
        // A clip, a few hops of slack for a slow window, and 2 s for a stalled reader: fixed, allocated once.
        let ring = AudioRing(capacity: WindowScheduler.minimumRingCapacity(clipSamples: signal.clipSamples, hopSamples: hop)
                             + 2 * signal.sampleRate)
        var captureConfig = CaptureConfig(device: config.device, targetRate: signal.sampleRate)
        captureConfig.periodMilliseconds = config.periodMs
        captureConfig.exitOnDeviceError = config.exitOnDeviceError
        captureConfig.retryMax = 10
        captureConfig.paceToRealTime = paceToRealTime
        var fatal: ALSAError?
        let capture = ALSACapture(config: captureConfig, ring: ring, logger: logger) { [weak self] status in
            guard let self else { return }
            if case let .fatal(error) = status {
                self.lock.lock(); fatal = error; self.lock.unlock()
                ring.close()
            }
            self.captureStatusChanged(status)
        }
        lock.lock()
        let alreadyStopping = stopRequested
        self.ring = ring
        lock.unlock()
        if alreadyStopping { ring.close() }

        isLive = true
        // Stream time to wall-clock time through the newest captured sample (≈ now): stays right when the device
        // appears late or capture loses frames to a reconnect, where a fixed origin would drift.
        let rate = Double(signal.sampleRate)
        let scheduler = try makeScheduler(clock: { streamSeconds in
            Date().addingTimeInterval(streamSeconds - Double(ring.totalWritten) / rate)
        })
        lock.lock(); self.scheduler = scheduler; lock.unlock()
        let watchdogStop = startWatchdogAndStats(ring: ring, capture: capture, scheduler: scheduler)
        capture.start()
        try scheduler.runLive(ring: ring)
        watchdogStop()
        capture.stop()
        notifier.stopping()
        closeSinks()
        lock.lock(); let error = fatal; lock.unlock()
        if let error { throw DaemonError("capture device failed and --exit-on-device-error is set: \(error)") }
    }

    /// Ends a live run: capture stops, the scheduler drains, open events get their stop. Safe from any thread.
    func stop() {
        lock.lock()
        stopRequested = true
        let ring = self.ring
        let scheduler = self.scheduler
        let reader = self.reader
        lock.unlock()
        logger.info("stopping")
        notifier.stopping()
        ring?.close()
        scheduler?.cancel()
        reader?.cancel()
    }

    /// Reopens the log file (SIGHUP, for logrotate).
    func reopenLogFile() {
        guard let logFile else { return }
        if logFile.reopen() { logger.info("reopened log file \(logFile.path)") }
    }

    private func windowDone() {
        guard isLive else { return }
        lock.lock()
        lastProgress = DispatchTime.now().uptimeNanoseconds
        let first = !announcedReady
        announcedReady = true
        lock.unlock()
        if first {
            notifier.ready(status: "detecting \(config.events.joined(separator: ", ")) on \(config.device)")
            logger.info("audio is flowing; first window processed")
        }
    }

    private func captureStatusChanged(_ status: CaptureStatus) {
        var fields: [String: Any] = ["type": "status", "device": config.device,
                                     "time": EventLineEncoder.timestamp(Date())]
        switch status {
        case let .running(device, rate, format, channels):
            logger.info("capturing from '\(device)': \(rate) Hz, \(format), \(channels) channel(s)")
            fields["state"] = "capturing"; fields["rate"] = rate; fields["format"] = format; fields["channels"] = channels
        case let .deviceUnavailable(device, error, retryIn):
            logger.error("audio device '\(device)' unavailable: \(error); retrying in \(fmt(retryIn)) s")
            fields["state"] = "device_unavailable"; fields["error"] = "\(error)"; fields["retry_in"] = retryIn
            lock.lock(); lastProgress = DispatchTime.now().uptimeNanoseconds; lock.unlock()
            notifier.status("waiting for audio device \(device): \(error)")
        case let .fatal(error):
            logger.critical("audio device failed: \(error)")
            fields["state"] = "device_failed"; fields["error"] = "\(error)"
        case .stopped:
            fields["state"] = "stopped"
        }
        // Status lines go to socket clients only (stdout and the log file carry events). Published as a
        // replaceable "open" entry, so a client connecting later first hears the device's current state.
        if let socket, let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]),
           let line = String(data: data, encoding: .utf8) {
            socket.publish(SinkMessage(line: line, opens: Self.statusSlot, closes: Self.statusSlot))
        }
    }

    /// Watchdog keep-alives only while windows (or device retries) make progress, and the periodic stats line.
    private func startWatchdogAndStats(ring: AudioRing, capture: ALSACapture, scheduler: WindowScheduler) -> () -> Void {
        let done = DispatchSemaphore(value: 0)
        let interval = notifier.watchdogInterval
        let hopNs = UInt64(config.hopSeconds * 1e9)
        let statsEvery = config.statsInterval
        let thread = Thread { [weak self] in
            var lastStats = DispatchTime.now().uptimeNanoseconds
            var lastCPU = cpuSeconds()
            var lastWindows = 0
            let tick = min(interval.map { $0 / 4 } ?? 1.0, 1.0)
            while done.wait(timeout: .now() + tick) == .timedOut {
                guard let self else { return }
                let now = DispatchTime.now().uptimeNanoseconds
                if interval != nil {
                    self.lock.lock(); let progress = self.lastProgress; self.lock.unlock()
                    // Stale progress means the analysis hangs: stop pinging and let systemd restart us. The bound
                    // exceeds capture's longest retry wait (10 s), which also counts as progress.
                    if progress > 0, now - progress < max(3 * hopNs, 15_000_000_000) { self.notifier.watchdog() }
                }
                if statsEvery > 0, Double(now - lastStats) / 1e9 >= statsEvery {
                    let cpu = cpuSeconds()
                    let wall = Double(now - lastStats) / 1e9
                    let s = scheduler.stats
                    let c = capture.stats
                    self.logger.info("stats", metadata: [
                        "cpu": "\(fmt(100 * (cpu - lastCPU) / wall))% of one core",
                        "real_time_factor": "\(fmt(s.realTimeFactor))",
                        "mean_inference_ms": "\(fmt(s.meanInferenceMilliseconds))",
                        "windows": "\(s.windowsRun - lastWindows)", "skipped_total": "\(s.windowsSkipped)",
                        "overruns_total": "\(c.overruns)", "reconnects": "\(c.reconnects)",
                        "clients": "\(self.socket?.clientCount ?? 0)",
                    ])
                    lastStats = now; lastCPU = cpu; lastWindows = s.windowsRun
                }
            }
        }
        thread.name = "htsatd-watchdog"
        thread.start()
        return { done.signal() }
    }

    private func closeSinks() {
        for sink in sinks { sink.close() }
    }
}

/// CPU time (user + system) this process has used, in seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// Two decimals, for log lines.
func fmt(_ x: Double) -> String { String(format: "%.2f", x) }
