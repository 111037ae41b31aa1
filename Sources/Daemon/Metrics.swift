import AudioCapture
import Dispatch
import Engine
import Foundation
import Logging
import Prometheus
import SystemSupport

/// The Prometheus metrics, rendered in one place in the text format.
///
/// The counts themselves are kept where the work happens (the scheduler's and the capture's counters, the socket's
/// client list, the inference adapter's per-window timing, the event output); `refresh` carries them over.
final class DaemonMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let windows, skipped, overruns, reconnects, gapSeconds, cpuSeconds: Counter
    private let inference: ValueHistogram
    private let clients, realTimeFactor, residentBytes: Gauge
    private let events: [String: Counter]
    private let lock = NSLock()
    private var last = (windows: 0, skipped: 0, overruns: 0, reconnects: 0, gap: 0.0, cpu: 0.0)

    init(eventNames: [String]) {
        let r = registry
        windows = r.makeCounter(name: "htsatd_windows_total", help: "Analysis windows run.")
        skipped = r.makeCounter(name: "htsatd_windows_skipped_total", help: "Windows skipped because inference fell behind.")
        overruns = r.makeCounter(name: "htsatd_capture_overruns_total", help: "ALSA overruns recovered from.")
        reconnects = r.makeCounter(name: "htsatd_device_reconnects_total", help: "Capture device re-opens after a failure.")
        gapSeconds = r.makeCounter(name: "htsatd_capture_gap_seconds_total", help: "Seconds of audio lost and filled with silence.")
        cpuSeconds = r.makeCounter(name: "htsatd_process_cpu_seconds_total", help: "User and system CPU time of the process.")
        inference = r.makeValueHistogram(name: "htsatd_inference_seconds", buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
                                         help: "Inference time per window.")
        clients = r.makeGauge(name: "htsatd_socket_clients", help: "Connected event socket clients.")
        realTimeFactor = r.makeGauge(name: "htsatd_real_time_factor", help: "Inference time per second of audio (above 1: cannot keep up).")
        residentBytes = r.makeGauge(name: "htsatd_resident_memory_bytes", help: "Resident set size of the process.")
        events = Dictionary(eventNames.map { ($0, r.makeCounter(name: "htsatd_events_total", labels: [("event", $0)],
                                                                  help: "Events started, by event name.")) },
                            uniquingKeysWith: { first, _ in first })
    }

    /// One window's inference time.
    func observeInference(seconds: Double) { inference.record(seconds) }

    /// One event started.
    func countStart(event: String) { events[event]?.increment() }

    /// Carries the totals kept elsewhere over to the registry.
    func refresh(scheduler: SchedulerStats, capture: CaptureStats?, clients count: Int) {
        lock.lock(); defer { lock.unlock() }
        let cpu = Daemon.cpuSeconds()
        windows.increment(by: Int64(scheduler.windowsRun - last.windows))
        skipped.increment(by: Int64(scheduler.windowsSkipped - last.skipped))
        overruns.increment(by: Int64((capture?.overruns ?? last.overruns) - last.overruns))
        reconnects.increment(by: Int64((capture?.reconnects ?? last.reconnects) - last.reconnects))
        gapSeconds.increment(by: max(0, (capture?.gapSeconds ?? last.gap) - last.gap))
        cpuSeconds.increment(by: max(0, cpu - last.cpu))
        last = (scheduler.windowsRun, scheduler.windowsSkipped, capture?.overruns ?? last.overruns,
                capture?.reconnects ?? last.reconnects, capture?.gapSeconds ?? last.gap, cpu)
        clients.set(Double(count))
        realTimeFactor.set(scheduler.realTimeFactor)
        residentBytes.set(Double(residentMemoryBytes()))
    }

    /// The text format.
    func render() -> String { registry.emitToString() }
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
