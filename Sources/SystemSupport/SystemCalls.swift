#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system call's errno value, typed; its description is strerror's text.
public struct Errno: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// The raw errno value.
    public let code: Int32

    /// Wraps an errno value.
    public init(_ code: Int32) { self.code = code }

    /// The calling thread's current errno.
    public static var current: Errno { Errno(errno) }

    public var description: String { String(cString: strerror(code)) }
}

/// Runs `body` again while it reports EINTR, the one place the project handles interrupted calls.
///
/// `body` returns a negative errno on failure (ALSA's convention); wrap POSIX calls, which return -1 and set errno,
/// in `negativeErrno`, or use `posixCall`.
@inline(__always)
public func retryingEINTR(_ body: () -> Int) -> Int {
    while true {
        let result = body()
        if result != -Int(EINTR) { return result }
    }
}

/// A POSIX "-1 and errno" result as "-errno", so that it fits `retryingEINTR`.
@inline(__always)
public func negativeErrno<T: BinaryInteger>(_ result: T) -> Int {
    result == -1 ? -Int(errno) : Int(result)
}

/// A POSIX call retried on EINTR: its (non-negative) result, or the errno that stopped it.
@inline(__always)
public func posixCall<T: BinaryInteger>(_ body: () -> T) -> Result<Int, Errno> {
    let result = retryingEINTR { negativeErrno(body()) }
    return result < 0 ? .failure(Errno(Int32(-result))) : .success(result)
}

/// Ignores SIGPIPE process-wide, so that a write to a vanished reader fails with EPIPE instead of killing the daemon.
public func ignoreSIGPIPE() {
    signal(SIGPIPE, SIG_IGN)
}

/// Adds `flags` to an fd's status flags (e.g. O_NONBLOCK). False on failure.
@discardableResult
public func addStatusFlags(_ fd: Int32, _ flags: Int32) -> Bool {
    let current = fcntl(fd, F_GETFL)
    return current >= 0 && fcntl(fd, F_SETFL, current | flags) == 0
}

/// Writes all of `bytes` to `fd`, retrying partial writes. Nil on success, else the errno that stopped it.
///
/// Meant for blocking fds; if the fd turns out to be non-blocking (an inherited stdout can be), it waits up to
/// `stallTimeoutMs` for room before giving up with EAGAIN.
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, stallTimeoutMs: Int32 = 1000) -> Errno? {
    guard let base = bytes.baseAddress else { return nil }
    var done = 0
    while done < bytes.count {
        switch posixCall({ write(fd, base + done, bytes.count - done) }) {
        case .success(let n) where n > 0:
            done += n
            continue
        case .success:
            return Errno(EIO)
        case .failure(let e) where e.code == EAGAIN || e.code == EWOULDBLOCK:
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if case .success(0) = posixCall({ poll(&pfd, 1, stallTimeoutMs) }) { return e }
        case .failure(let e):
            return e
        }
    }
    return nil
}

/// Writes `line` plus a newline with one `writeAll` (so lines never interleave), staged in the reused `buffer`.
public func writeLine(_ fd: Int32, _ line: String, buffer: inout [UInt8]) -> Errno? {
    buffer.removeAll(keepingCapacity: true)
    buffer.append(contentsOf: line.utf8)
    buffer.append(0x0A)
    return buffer.withUnsafeBytes { writeAll(fd, $0) }
}
