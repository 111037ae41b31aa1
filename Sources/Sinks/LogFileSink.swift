import Foundation
import Glibc
import Logging
import SystemSupport

/// Appends each event line to a file (O_APPEND, created with mode 0640 minus the umask).
///
/// Each line goes out in a single write(2) on an O_APPEND fd, so lines from several writers never
/// interleave, and nothing is buffered in user space. `reopen()` supports logrotate: call it on SIGHUP.
public final class LogFileSink: Sink, @unchecked Sendable {
    /// Event lines only: the file is an event log.
    public let accepts: Set<OutputMessage.Kind> = [.event]
    /// The file path, reopened by `reopen()`.
    public let path: String
    private let logger: Logger
    private let lock = NSLock()
    private var fd: Int32
    private var buffer: [UInt8] = []
    private var failing = false

    public init(path: String, logger: Logger) throws {
        self.path = path
        self.logger = logger
        self.fd = try Self.openForAppend(path)
    }

    private static func openForAppend(_ path: String) throws -> Int32 {
        // O_NONBLOCK only so that opening a FIFO without a reader fails instead of hanging.
        let opened = posixCall { open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, mode_t(0o640)) }
        let fd: Int32
        switch opened {
        case .success(let n): fd = Int32(n)
        case .failure(let e): throw SinkError.cannotOpenLogFile(path: path, errno: e)
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// Opens `path` afresh (after logrotate renamed the file) and switches to it.
    /// On failure the error is logged, the old fd keeps being used, and false is returned.
    @discardableResult
    public func reopen() -> Bool {
        let newFD: Int32
        do {
            newFD = try Self.openForAppend(path)
        } catch {
            logger.error("cannot reopen event log file; still writing to the previously opened file", metadata: ["error": "\(error)"])
            return false
        }
        lock.lock()
        let oldFD = fd
        let wasClosed = oldFD < 0
        if !wasClosed { fd = newFD }
        lock.unlock()
        Glibc.close(wasClosed ? newFD : oldFD)
        return !wasClosed
    }

    public func publish(_ message: EncodedMessage) {
        lock.lock()
        defer { lock.unlock() }
        guard fd >= 0 else { return }
        guard let error = writeLine(fd, message.line, buffer: &buffer) else {
            failing = false
            return
        }
        if !failing {
            // Log the first failure of a run only (a full disk would otherwise flood the journal).
            failing = true
            logger.error("writing an event to the log file failed; events are dropped until writes succeed again",
                         metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    public func close() {
        lock.lock()
        let oldFD = fd
        fd = -1
        lock.unlock()
        if oldFD >= 0 { Glibc.close(oldFD) }
    }
}
