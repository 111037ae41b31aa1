import AudioCapture
import Detection
import Engine
import Foundation
import Logging
import Sinks
import SystemSupport

/// One run of the daemon: the model and outputs, then the services of live or file mode under one `ServiceGroup`.
///
/// Stop order (reverse of start): capture first, so no audio arrives once the stop begins; then the engine, which
/// runs at most the next window and one final window and closes open events; then the monitor; the outputs last,
/// flushing the final stop lines. SIGTERM/SIGINT start that stop; SIGHUP reopens the log file.
final class DaemonRun {
    private let config: DaemonConfig
    private let logger: Logger
    private let loaded: LoadedModel
    private let outputs: OutputsService
    private let clips: ClipService?
    private let notifier: SystemdNotifier
    /// Prometheus metrics, when a metrics file is configured.
    private let metrics: DaemonMetrics?

    init(config: DaemonConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        notifier = SystemdNotifier(logger: logger)
        loaded = try LoadedModel(config: config, logger: logger)
        for name in loaded.unusedEventSettings {
            logger.warning("event_settings has \"\(name)\", which is not among the selected events (\(config.events.joined(separator: ", "))): check its spelling")
        }
        // Before the outputs: a bad clip directory then fails start-up before a socket file exists.
        clips = try ClipService(config: config, loaded: loaded, logger: logger)
        let mqtt = try config.mqtt.sinkOptions(events: loaded.specs.map(\.definition.name), logger: logger)
        outputs = try OutputsService(config: config.outputs, mqtt: mqtt, logger: logger)
        let names = loaded.specs.map(\.definition.name)
        metrics = config.metricsFile == nil && config.metricsListen == nil ? nil
            : DaemonMetrics(eventNames: names, mqtt: outputs.mqtt != nil, clips: clips != nil)
    }

    /// The metrics file writer and the HTTP listener, as configured, refreshing from `counts` (scheduler, capture,
    /// socket clients) and the MQTT and clip counters. They go first in the group, so they stop last: the final
    /// write counts what the outputs flushed at the stop.
    private func metricsServices(_ counts: @escaping () -> (SchedulerStats, CaptureStats?, Int)) throws -> [Service] {
        guard let metrics else { return [] }
        let refresh = { [mqtt = outputs.mqtt, clips] in
            let (scheduler, capture, clients) = counts()
            metrics.refresh(scheduler: scheduler, capture: capture, clients: clients, mqtt: mqtt?.client.stats, clips: clips?.writer.stats)
        }
        var services: [Service] = []
        if let path = config.metricsFile {
            services.append(MetricsService(metrics: metrics, path: path, interval: config.statsInterval > 0 ? config.statsInterval : 10,
                                           logger: logger, refresh: refresh))
        }
        if let address = config.metricsListen {
            services.append(try MetricsListener(address: address, metrics: metrics, logger: logger, refresh: refresh))
        }
        return services
    }

    /// Runs until the input ends (file mode) or a signal stops it; throws on a fatal error.
    func run(input: String?, paceToRealTime: Bool) throws {
        weak var weakGroup: ServiceGroup?
        let group: ServiceGroup, finish: () -> Void
        do {
            (group, finish) = try input.map { try fileGroup(input: $0) { weakGroup } }
                ?? (try liveGroup(paceToRealTime: paceToRealTime) { weakGroup }, {})
        } catch {
            outputs.stop()  // a socket file must not outlive a failed start
            throw error
        }
        weakGroup = group
        let watcher = SignalWatcher { [logger, notifier, outputs] signal in
            switch signal {
            case .terminate:
                logger.info("stopping")
                _ = notifier.stopping()
                group.shutdown()
            case .hangup:
                if let logFile = outputs.logFile, logFile.reopen() { logger.info("reopened log file \(logFile.path)") }
            }
        }
        try withExtendedLifetime(watcher) { try group.run() }
        _ = notifier.stopping()
        finish()
    }

    private func fileGroup(input: String, group: @escaping () -> ServiceGroup?) throws -> (ServiceGroup, () -> Void) {
        let reader = try AudioFileReader(path: input, targetRate: loaded.model.config.signal.sampleRate)
        logger.info("reading \(input == "-" ? "stdin" : input): \(reader.formatDescription), \(reader.sourceRate) Hz, \(reader.channels) channel(s)")
        let started = Date(), cpu0 = cpuSeconds()
        let clock = { (seconds: Double) in started.addingTimeInterval(seconds) }
        let fanout = outputs.fanout
        let scheduler = try loaded.scheduler(config: config, logger: logger, metrics: metrics, afterWindow: {}) { [clips] event in
            fanout.publish(.event(clips?.line(event, clock: clock) ?? EventLine(event, clock: clock)))
        }
        scheduler.audioTap = clips?.tap(fileMode: true)
        let engine = EngineService(scheduler: scheduler, source: .file(reader), group: group)
        let metricsServices = try metricsServices { [socket = outputs.socket] in (scheduler.stats, nil, socket?.clientCount ?? 0) }
        return (ServiceGroup(metricsServices + [outputs, clips as Service?, engine].compactMap { $0 }, logger: logger), { [logger] in
            let s = scheduler.stats
            let wall = Date().timeIntervalSince(started)
            logger.info("file done", metadata: [
                "windows": "\(s.windowsRun)", "mean_inference_ms": "\(fmt(s.meanInferenceMilliseconds))",
                "speed": "\(fmt(Double(s.windowsRun) * s.hopSeconds / max(wall, 1e-9)))x real time",
                "cpu_s": "\(fmt(cpuSeconds() - cpu0))",
            ])
        })
    }

    private func liveGroup(paceToRealTime: Bool, group: @escaping () -> ServiceGroup?) throws -> ServiceGroup {
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
        let fanout = outputs.fanout, socket = outputs.socket
        let sampler = StatsSampler()
        var capture: ALSACapture!
        let unavailable = LogThrottle()
        var scheduler: WindowScheduler!
        let monitor = MonitorService(
            notifier: notifier, logger: logger, statsInterval: config.statsInterval, hopSeconds: config.hopSeconds,
            stats: { sampler.sample(scheduler: scheduler.stats, capture: capture.stats, clients: socket?.clientCount ?? 0) },
            publish: fanout.publish)
        capture = ALSACapture(config: captureConfig, ring: ring, logger: logger) { [config, logger, notifier] status in
            let line: StatusLine
            switch status {
            case let .running(device, rate, format, channels):
                logger.info("capturing from '\(device)': \(rate) Hz, \(format), \(channels) channel(s)")
                line = StatusLine(state: .capturing, device: config.device, rate: rate, format: format, channels: channels)
            case let .deviceUnavailable(device, error, retryIn):
                unavailable.record { folded in
                    logger.error("audio device '\(device)' unavailable: \(error); retrying in \(fmt(retryIn)) s\(LogThrottle.suffix(folded))")
                }
                line = StatusLine(state: .deviceUnavailable, device: config.device, error: "\(error)", retryIn: retryIn)
                monitor.progress()
                _ = notifier.status("waiting for audio device \(device): \(error)")
            case let .fatal(error):
                logger.critical("audio device failed: \(error)")
                line = StatusLine(state: .deviceFailed, device: config.device, error: "\(error)")
                group()?.finished("capture", error: DaemonError("capture device failed and --exit-on-device-error is set: \(error)"))
            case .stopped:
                line = StatusLine(state: .stopped, device: config.device)
            }
            fanout.publish(.status(line))
        }
        // Stream time to wall-clock time through the newest captured sample (≈ now): stays right when the device
        // appears late or capture loses frames to a reconnect, where a fixed origin would drift.
        let rate = Double(signal.sampleRate)
        let clock = { (seconds: Double) in Date().addingTimeInterval(seconds - Double(ring.totalWritten) / rate) }
        let ready = ReadyOnce()
        let status = "detecting \(config.events.joined(separator: ", ")) on \(config.device)"
        scheduler = try loaded.scheduler(config: config, logger: logger, metrics: metrics, afterWindow: { [logger, notifier] in
            monitor.progress()
            if ready.first() {
                _ = notifier.ready(status: status)
                logger.info("audio is flowing; first window processed")
            }
        }) { [clips] event in
            fanout.publish(.event(clips?.line(event, clock: clock) ?? EventLine(event, clock: clock)))
        }
        scheduler.audioTap = clips?.tap(fileMode: false)
        let engine = EngineService(scheduler: scheduler, source: .live(ring), group: group)
        let metricsServices = try metricsServices { (scheduler.stats, capture.stats, socket?.clientCount ?? 0) }
        return ServiceGroup(metricsServices + [outputs, clips as Service?, monitor, engine, CaptureService(capture)].compactMap { $0 },
                            logger: logger)
    }
}

/// True exactly once, from any thread.
private final class ReadyOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func first() -> Bool {
        lock.lock(); defer { lock.unlock() }
        defer { done = true }
        return !done
    }
}
