import AudioCapture
import Detection
import Dispatch
import Engine
import Foundation
import Logging
import Sinks
import SystemSupport

/// The outputs: opened at construction (so a bad path fails start-up), flushed and closed last.
final class OutputsService: Service {
    let name = "outputs"
    let fanout: SinkFanout
    let socket: UnixSocketSink?
    let logFile: LogFileSink?

    /// The MQTT sink, when `mqtt` options are given (created last: it starts connecting at once).
    let mqtt: MQTTSink?

    init(config: DaemonConfig.Outputs, mqtt: MQTTSinkOptions? = nil, logger: Logger) throws {
        var sinks: [Sink] = []
        if config.stdout { sinks.append(StdoutSink(logger: logger)) }
        socket = try config.socket.map { path in
            let group = config.socketGroup.flatMap { getgrnam($0)?.pointee.gr_gid }
            return try UnixSocketSink(path: path, mode: mode_t(config.socketMode), group: group,
                                      maxClientBacklog: config.maxClientBacklog, logger: logger)
        }
        do {
            logFile = try config.logFile.map { try LogFileSink(path: $0, logger: logger) }
        } catch {
            socket?.close()  // removes the socket file it just created
            throw error
        }
        sinks += [socket as Sink?, logFile as Sink?].compactMap { $0 }
        self.mqtt = try mqtt.map { try MQTTSink(options: $0, logger: logger) }
        if let sink = self.mqtt { sinks.append(sink) }
        if sinks.isEmpty { logger.warning("no outputs: events are computed but go nowhere (add --socket or --log-file, or drop --no-stdout)") }
        fanout = SinkFanout(sinks)
    }

    func start() {}
    func stop() { fanout.close() }
}

/// ALSA capture into the ring; stopped first at shutdown, so no audio arrives after the stop begins.
final class CaptureService: Service {
    let name = "capture"
    let capture: ALSACapture

    init(_ capture: ALSACapture) { self.capture = capture }
    func start() { capture.start() }
    func stop() { capture.stop() }
}

/// The window scheduler on its own thread, over the ring (live) or a file. It reports to the group when the input
/// ends; `stop()` ends the input (closes the ring, cancels the file) and waits for the final window and stops.
final class EngineService: Service, @unchecked Sendable {
    enum Source { case live(AudioRing), file(AudioFileReader) }

    let name = "engine"
    let scheduler: WindowScheduler
    private let source: Source
    private let group: () -> ServiceGroup?
    private let done = DispatchSemaphore(value: 0)

    init(scheduler: WindowScheduler, source: Source, group: @escaping () -> ServiceGroup?) {
        self.scheduler = scheduler
        self.source = source
        self.group = group
    }

    func start() {
        startThread(named: "htsatd-engine") { [self] in
            var failure: Error?
            do {
                switch source {
                case .live(let ring): try scheduler.runLive(ring: ring)
                case .file(let reader): try scheduler.runFile(reader)
                }
            } catch {
                failure = error
            }
            done.signal()
            group()?.finished(name, error: failure)
        }
    }

    func stop() {
        switch source {
        case .live(let ring): ring.close()
        case .file(let reader):
            scheduler.cancel()
            reader.cancel()
        }
        done.wait()
        done.signal()  // stays signalled for any later waiter
    }
}

/// Watchdog keep-alives while windows (or device retries) make progress, and the periodic stats line.
final class MonitorService: Service, @unchecked Sendable {
    let name = "monitor"
    private let notifier: SystemdNotifier
    private let logger: Logger
    private let statsInterval: Double
    private let hopSeconds: Double
    private let stats: () -> StatsLine
    private let publish: (OutputMessage) -> Void
    private let lock = NSLock()
    /// Uptime (ns) of the last sign of progress.
    private var lastProgress: UInt64 = 0
    private let done = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    init(notifier: SystemdNotifier, logger: Logger, statsInterval: Double, hopSeconds: Double,
         stats: @escaping () -> StatsLine, publish: @escaping (OutputMessage) -> Void) {
        self.notifier = notifier
        self.logger = logger
        self.statsInterval = statsInterval
        self.hopSeconds = hopSeconds
        self.stats = stats
        self.publish = publish
    }

    /// A window was processed, or capture is retrying a lost device: analysis is alive.
    func progress() {
        lock.lock(); lastProgress = DispatchTime.now().uptimeNanoseconds; lock.unlock()
    }

    func start() {
        let interval = notifier.watchdogInterval
        let tick = min(interval.map { $0 / 4 } ?? 1.0, 1.0)
        startThread(named: "htsatd-monitor", signalling: finished) { [self] in
            var lastStats = DispatchTime.now().uptimeNanoseconds
            while done.wait(timeout: .now() + tick) == .timedOut {
                let now = DispatchTime.now().uptimeNanoseconds
                if interval != nil {
                    lock.lock(); let progress = lastProgress; lock.unlock()
                    // Stale progress means the analysis hangs: stop pinging and let systemd restart us. The bound
                    // exceeds capture's longest retry wait (10 s), which also counts as progress.
                    if progress > 0, now - progress < max(3 * UInt64(hopSeconds * 1e9), 15_000_000_000) { _ = notifier.watchdog() }
                }
                if statsInterval > 0, Double(now - lastStats) / 1e9 >= statsInterval {
                    let line = stats()
                    logger.info("stats", metadata: [
                        "cpu": "\(fmt(line.cpuPercent))% of one core", "real_time_factor": "\(fmt(line.realTimeFactor))",
                        "mean_inference_ms": "\(fmt(line.meanInferenceMs))", "windows": "\(line.windows)",
                        "skipped_total": "\(line.windowsSkippedTotal)", "overruns_total": "\(line.overrunsTotal)",
                        "reconnects": "\(line.reconnectsTotal)", "clients": "\(line.clients)",
                    ])
                    publish(.stats(line))
                    lastStats = now
                }
            }
        }
    }

    func stop() {
        done.signal()
        finished.wait()
    }
}

/// Counters over an interval, for the stats line: CPU and windows since the previous call.
final class StatsSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var lastTime = DispatchTime.now().uptimeNanoseconds
    private var lastCPU = cpuSeconds()
    private var lastWindows = 0

    func sample(scheduler: SchedulerStats, capture: CaptureStats?, clients: Int) -> StatsLine {
        lock.lock(); defer { lock.unlock() }
        let now = DispatchTime.now().uptimeNanoseconds, cpu = cpuSeconds()
        let wall = max(Double(now - lastTime) / 1e9, 1e-9)
        defer { lastTime = now; lastCPU = cpu; lastWindows = scheduler.windowsRun }
        return StatsLine(cpuPercent: 100 * (cpu - lastCPU) / wall, realTimeFactor: scheduler.realTimeFactor,
                         meanInferenceMs: scheduler.meanInferenceMilliseconds, windows: scheduler.windowsRun - lastWindows,
                         windowsSkippedTotal: scheduler.windowsSkipped, overrunsTotal: capture?.overruns ?? 0,
                         reconnectsTotal: capture?.reconnects ?? 0, clients: clients)
    }
}
