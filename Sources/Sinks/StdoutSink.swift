import Foundation
import Glibc
import Logging
import SystemSupport

/// Writes each event line to standard output (or another fd) with write(2), one line per call, unbuffered.
///
/// The daemon MUST ignore SIGPIPE (`ignoreSIGPIPE()` at start-up): otherwise a reader
/// that goes away (`htsatd | head`) kills the process before this sink can see EPIPE. With SIGPIPE
/// ignored, EPIPE is logged once and the sink disables itself. Nothing else in the process should
/// write to the same fd through stdio buffers, or lines may interleave.
public final class StdoutSink: Sink, @unchecked Sendable {
    /// Event lines only: stdout is the event stream.
    public let accepts: Set<OutputMessage.Kind> = [.event]
    private let fd: Int32
    private let logger: Logger
    private let lock = NSLock()
    private var buffer: [UInt8] = []
    private var disabled = false
    private var failing = false

    /// `fd` is not owned: `close()` stops writing but leaves the fd open.
    public init(fd: Int32 = STDOUT_FILENO, logger: Logger) {
        self.fd = fd
        self.logger = logger
    }

    /// True once the reader has gone (EPIPE) or `close()` was called.
    public var isDisabled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return disabled
    }

    public func publish(_ message: EncodedMessage) {
        lock.lock()
        defer { lock.unlock() }
        guard !disabled else { return }
        guard let error = writeLine(fd, message.line, buffer: &buffer) else {
            failing = false
            return
        }
        if error.code == EPIPE {
            disabled = true
            logger.warning("stdout reader has gone away (EPIPE); no more events are written to stdout", metadata: ["fd": "\(fd)"])
        } else if !failing {
            // Log the first failure of a run only, so a stuck stdout cannot flood the journal.
            failing = true
            logger.error("writing an event to stdout failed; the event was dropped", metadata: ["fd": "\(fd)", "error": "\(error)"])
        }
    }

    public func close() {
        lock.lock()
        disabled = true
        lock.unlock()
    }
}
