import CSystemd
import Foundation
import Logging
import SystemSupport

/// Tells systemd (Type=notify) about readiness, status and liveness through libsystemd's `sd_notify`.
///
/// Every call is a no-op when `NOTIFY_SOCKET` is unset (not started by systemd), so the daemon
/// calls it unconditionally. Thread-safe: `sd_notify` opens a fresh datagram socket per call.
public struct SystemdNotifier: Sendable {
    private let logger: Logger?

    /// `logger` receives a warning when a notification cannot be delivered.
    public init(logger: Logger? = nil) {
        self.logger = logger
    }

    /// True when started by systemd with a notification socket.
    public var isEnabled: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// The watchdog period in seconds when systemd expects keep-alives from this process (WatchdogSec=),
    /// else nil. Send `watchdog()` at least every half of it.
    public var watchdogInterval: Double? {
        var usec: UInt64 = 0
        // Checks WATCHDOG_USEC and that WATCHDOG_PID (if set) is this process.
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return Double(usec) / 1_000_000
    }

    /// Start-up is complete (model loaded, capture running); `status` is shown by `systemctl status`.
    @discardableResult
    public func ready(status: String? = nil) -> Bool {
        notify(["READY=1"] + (status.map { ["STATUS=" + Self.oneLine($0)] } ?? []))
    }

    /// A one-line status shown by `systemctl status` (newlines become spaces).
    @discardableResult
    public func status(_ text: String) -> Bool {
        notify(["STATUS=" + Self.oneLine(text)])
    }

    /// Keep-alive for WatchdogSec=: the pipeline is making progress.
    @discardableResult
    public func watchdog() -> Bool {
        notify(["WATCHDOG=1"])
    }

    /// Shutdown has begun.
    @discardableResult
    public func stopping() -> Bool {
        notify(["STOPPING=1"])
    }

    /// Sends `assignments` (KEY=VALUE) as one datagram. Returns true if systemd received it,
    /// false if there is no notification socket or sending failed (logged).
    @discardableResult
    public func notify(_ assignments: [String]) -> Bool {
        guard isEnabled else { return false }
        let result = sd_notify(0, assignments.joined(separator: "\n"))
        if result < 0 {
            logger?.warning("systemd notification failed", metadata: [
                "state": "\(assignments.first ?? "")", "error": "\(Errno(-result))",
            ])
        }
        return result > 0
    }

    /// A newline would start a new assignment in the datagram, so status text must be one line.
    private static func oneLine(_ text: String) -> String {
        text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
    }
}
