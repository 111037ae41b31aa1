import Dispatch
import Foundation
import Logging

/// A part of the daemon with a start and a stop (capture, the engine, the socket server, the monitor).
protocol Service: AnyObject {
    var name: String { get }
    /// Starts the service; a thrown error stops the ones already started and fails the run.
    func start() throws
    /// Stops it and waits until it has (flushed outputs, joined threads). Called once, after a successful start.
    func stop()
}

/// Starts services in order and stops them in reverse order, within a time bound: swift-service-lifecycle's
/// `ServiceGroup` contract for a daemon whose work runs on real-time threads, not on async tasks.
///
/// ServiceGroup itself was not used because capture and inference are dedicated threads (a blocking ALSA read,
/// a CPU-bound model on its own pool) that must never wait on the cooperative executor; wrapping each in a task would
/// only add a hop between threads and a Concurrency runtime to a loop that has none.
///
/// A run ends when `shutdown()` is called (SIGTERM/SIGINT) or a service reports that it has finished (end of input,
/// or a fatal device error). Then every service is stopped in reverse start order; if that takes longer than
/// `bound` seconds, the process logs what hangs and exits with status 1 rather than wait for systemd's SIGKILL.
final class ServiceGroup: @unchecked Sendable {
    private let services: [Service]
    private let logger: Logger
    private let bound: Double
    private let lock = NSLock()
    private let ended = DispatchSemaphore(value: 0)
    private var endSignalled = false
    private var failure: Error?

    init(_ services: [Service], logger: Logger, bound: Double = 5) {
        self.services = services
        self.logger = logger
        self.bound = bound
    }

    /// Requests the end of the run (graceful shutdown). Any thread; repeated calls are harmless.
    func shutdown() { end(nil) }

    /// A service calls this when it has finished on its own; `error` fails the run.
    func finished(_ service: String, error: Error?) {
        if let error { logger.debug("service finished with an error", metadata: ["service": "\(service)", "error": "\(error)"]) }
        end(error)
    }

    /// Starts every service, waits for the end of the run, stops them in reverse order. Throws the first failure.
    func run() throws {
        var started: [Service] = []
        do {
            for service in services {
                try service.start()
                started.append(service)
            }
        } catch {
            stop(started)
            throw error
        }
        ended.wait()
        stop(started)
        lock.lock(); defer { lock.unlock() }
        if let failure { throw failure }
    }

    private func end(_ error: Error?) {
        lock.lock()
        if failure == nil { failure = error }
        let first = !endSignalled
        endSignalled = true
        lock.unlock()
        if first { ended.signal() }
    }

    private func stop(_ started: [Service]) {
        let stopping = Stopping()
        let guardThread = Thread { [logger, bound] in
            guard stopping.done.wait(timeout: .now() + bound) == .timedOut else { return }
            logger.critical("shutdown did not finish within \(bound) s (stuck stopping '\(stopping.name)'); exiting")
            exit(1)
        }
        guardThread.name = "htsatd-shutdown"
        guardThread.start()
        for service in started.reversed() {
            stopping.name = service.name
            service.stop()
        }
        stopping.done.signal()
    }

    /// What is being stopped, for the shutdown guard.
    private final class Stopping: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        private let lock = NSLock()
        private var current = ""
        var name: String {
            get { lock.lock(); defer { lock.unlock() }; return current }
            set { lock.lock(); current = newValue; lock.unlock() }
        }
    }
}
