#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation

/// A close-on-exec, non-blocking pipe that wakes a thread waiting in poll(2): the self-pipe trick, written once.
///
/// `wake()` is async-signal-safe and never blocks (a full pipe already means a wake-up is pending).
public final class WakePipe: @unchecked Sendable {
    /// Poll this for POLLIN.
    public let readFD: Int32
    /// Written by `wake()`; a signal handler may write to it directly.
    public let writeFD: Int32

    /// Creates the pipe.
    public init() throws {
        var fds: [Int32] = [-1, -1]
        // Glibc's module map does not export pipe2; htsatd never execs, so setting the flags after pipe() is enough.
        guard pipe(&fds) == 0 else { throw Errno.current }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            addStatusFlags(fd, O_NONBLOCK)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    /// Makes `readFD` readable.
    public func wake() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    /// Reads every pending byte, so the next poll waits again; `each` sees every byte read, in order.
    public func drain(_ each: ((UInt8) -> Void)? = nil) {
        var buffer: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes on the stack: no allocation per wake-up
        while true {
            let n = withUnsafeMutableBytes(of: &buffer) { raw in
                let n = read(readFD, raw.baseAddress, raw.count)
                if n > 0, let each { for i in 0..<n { each(raw[i]) } }
                return n
            }
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            return
        }
    }

    /// Waits up to `milliseconds` (-1: forever) for a wake-up; true if one is pending. Leaves it pending.
    public func wait(milliseconds: Int32) -> Bool {
        var pfd = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        if case .success(let n) = posixCall({ poll(&pfd, 1, milliseconds) }) { return n > 0 }
        return false
    }

    deinit {
        close(readFD)
        close(writeFD)
    }
}

/// Starts a named thread running `body`, then signalling `finished` (if given) as its last act, so that its owner
/// can join it; the one way the project starts its long-lived threads.
@discardableResult
public func startThread(named name: String, signalling finished: DispatchSemaphore? = nil,
                        _ body: @escaping () -> Void) -> Thread {
    let thread = Thread {
        body()
        finished?.signal()
    }
    thread.name = name
    thread.start()
    return thread
}
