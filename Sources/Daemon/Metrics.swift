import AudioCapture
import Clips
import Dispatch
import Engine
import Foundation
import Logging
import Prometheus
import Sinks
import SystemSupport

/// The Prometheus metrics, rendered in one place in the text format.
///
/// The counts themselves are kept where the work happens (the scheduler's, the capture's, the MQTT client's and the
/// clip writer's counters, the socket's client list, the inference adapter's per-window timing, the event output);
/// `refresh` carries them over. The MQTT and clip families exist only when those features are on.
final class DaemonMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let windows, skipped, overruns, suspends, reconnects, gapSeconds, cpuSeconds: Total
    private let inference: ValueHistogram
    private let clients, realTimeFactor, residentBytes: Gauge
    private let events: [String: Counter]
    private let mqtt: (published: Total, dropped: Total, reconnects: Total, queued: Gauge, connected: Gauge)?
    private let clips: (written: Total, failed: Total, deletedFiles: Total, deletedBytes: Total, evictions: Total)?
    private let lock = NSLock()

    init(eventNames: [String], mqtt withMQTT: Bool = false, clips withClips: Bool = false) {
        let r = registry
        func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "htsatd", metricName: name, unitName: unit, helpText: help)
        }
        func total(_ name: String, _ unit: String, _ help: String) -> Total { Total(r.makeCounter(descriptor: d(name, unit, help))) }
        windows = total("windows", "total", "Analysis windows run.")
        skipped = total("windows_skipped", "total", "Windows skipped because inference fell behind (not those over a capture gap).")
        overruns = total("capture_overruns", "total", "ALSA overruns recovered from.")
        suspends = total("capture_suspends", "total", "ALSA suspends (system sleep) recovered from.")
        reconnects = total("device_reconnects", "total", "Capture device re-opens after a failure.")
        gapSeconds = total("capture_gap_seconds", "total", "Seconds of audio lost and filled with silence.")
        cpuSeconds = total("process_cpu_seconds", "total", "User and system CPU time of the process.")
        inference = r.makeValueHistogram(descriptor: d("inference", "seconds", "Inference time per window."),
                                         buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
        clients = r.makeGauge(descriptor: d("socket_clients", "", "Connected event socket clients."))
        realTimeFactor = r.makeGauge(descriptor: d("real_time_factor", "", "Inference time per second of audio (above 1: cannot keep up)."))
        residentBytes = r.makeGauge(descriptor: d("resident_memory", "bytes", "Resident set size of the process."))
        events = Dictionary(eventNames.map { ($0, r.makeCounter(descriptor: d("events", "total", "Events started, by event name."),
                                                                  labels: [("event", $0)])) },
                            uniquingKeysWith: { first, _ in first })
        mqtt = !withMQTT ? nil : (
            total("mqtt_messages_published", "total", "MQTT messages the broker acknowledged (sent, at QoS 0)."),
            total("mqtt_messages_dropped", "total", "MQTT messages dropped from the full queue (broker unreachable or too slow)."),
            total("mqtt_reconnects", "total", "MQTT connections after the first."),
            r.makeGauge(descriptor: d("mqtt_queued_messages", "", "MQTT messages waiting for the broker.")),
            r.makeGauge(descriptor: d("mqtt_connected", "", "1 while connected to the MQTT broker.")))
        clips = !withClips ? nil : (
            total("clips_written", "total", "Event clips written."),
            total("clips_failed", "total", "Event clips given up (disk full, I/O error, over the budget, writer too far behind)."),
            total("clip_files_deleted", "total", "Clip and picture files deleted by retention."),
            total("clip_bytes_deleted", "total", "Bytes of the files retention deleted."),
            total("clip_budget_evictions", "total", "Files retention deleted for max_bytes or min_free_percent (not age)."))
    }

    /// One window's inference time.
    func observeInference(seconds: Double) { inference.record(seconds) }

    /// One event started.
    func countStart(event: String) { events[event]?.increment() }

    /// Carries the totals kept elsewhere over to the registry (nil: that part is not running, or is off).
    func refresh(scheduler: SchedulerStats, capture: CaptureStats?, clients count: Int, mqtt m: MQTTStats? = nil,
                 clips c: ClipStats? = nil) {
        lock.lock(); defer { lock.unlock() }
        windows.follow(scheduler.windowsRun)
        skipped.follow(scheduler.windowsSkipped)
        if let capture {
            overruns.follow(capture.overruns)
            suspends.follow(capture.suspends)
            reconnects.follow(capture.reconnects)
            gapSeconds.follow(capture.gapSeconds)
        }
        cpuSeconds.follow(Daemon.cpuSeconds())
        clients.set(Double(count))
        realTimeFactor.set(scheduler.realTimeFactor)
        residentBytes.set(Double(residentMemoryBytes()))
        if let mqtt, let m {
            mqtt.published.follow(m.published)
            mqtt.dropped.follow(m.dropped)
            mqtt.reconnects.follow(max(0, m.connections - 1))
            mqtt.queued.set(Double(m.queued))
            mqtt.connected.set(m.connected ? 1.0 : 0.0)
        }
        if let clips, let c {
            clips.written.follow(c.written)
            clips.failed.follow(c.abandoned)
            clips.deletedFiles.follow(c.deletedFiles)
            clips.deletedBytes.follow(Int(c.deletedBytes))
            clips.evictions.follow(c.budgetEvictions)
        }
    }

    /// The text format.
    func render() -> String { registry.emitToString() }
}

/// A Prometheus counter that follows a running total kept elsewhere (its counters only take increments).
private final class Total {
    private let counter: Counter
    private var last: Int64 = 0, lastValue = 0.0

    init(_ counter: Counter) { self.counter = counter }

    func follow(_ total: Int) {
        let total = Int64(total)
        if total > last { counter.increment(by: total - last); last = total }
    }

    func follow(_ total: Double) {
        if total > lastValue { counter.increment(by: total - lastValue); lastValue = total }
    }
}

/// The process's resident set size (VmRSS), 0 where unavailable.
func residentMemoryBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return (line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0) * 1024
    }
    return 0
}

/// Refreshes the metrics every interval and writes them to a file, node_exporter textfile-collector style
/// (written under a temporary name, then renamed, so a scraper never reads half a file); a last time at stop.
final class MetricsService: Service, @unchecked Sendable {
    let name = "metrics"
    private let metrics: DaemonMetrics
    private let path: String
    private let interval: Double
    private let refresh: () -> Void
    private let logger: Logger
    private let done = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
    private let writeErrors = LogThrottle()

    init(metrics: DaemonMetrics, path: String, interval: Double, logger: Logger, refresh: @escaping () -> Void) {
        (self.metrics, self.path, self.interval, self.logger, self.refresh) = (metrics, path, interval, logger, refresh)
    }

    /// Writes once now: an unwritable path fails start-up, naming it.
    func start() throws {
        refresh()
        try write()
        startThread(named: "htsatd-metrics", signalling: finished) { [self] in
            while done.wait(timeout: .now() + interval) == .timedOut {
                refresh()
                do { try write() } catch {
                    writeErrors.record { folded in logger.error("\(error)\(LogThrottle.suffix(folded))") }
                }
            }
        }
    }

    func stop() {
        done.signal()
        finished.wait()
        refresh()
        do { try write() } catch { logger.error("\(error)") }
    }

    private func write() throws {
        let temporary = path + ".tmp"
        do {
            try Data(metrics.render().utf8).write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, path) == 0 else { throw Errno.current }
        } catch {
            unlink(temporary)
            throw DaemonError("cannot write the metrics file \(path): \(error); check that its directory exists and is writable")
        }
    }
}
