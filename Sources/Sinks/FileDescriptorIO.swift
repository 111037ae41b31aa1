import Glibc

// Small system-call helpers shared by the sinks.

/// Repeats a system call while it fails with EINTR; the one place EINTR is handled.
@inline(__always)
func retryingEINTR<T: BinaryInteger>(_ call: () -> T) -> T {
    while true {
        let result = call()
        if result == -1 && errno == EINTR { continue }
        return result
    }
}

/// `strerror` text for an errno value.
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// Writes all of `bytes` to `fd`, retrying partial writes. Returns 0, or the errno that stopped it.
///
/// Meant for blocking fds; if the fd turns out to be non-blocking (an inherited stdout can be),
/// it waits up to `stallTimeoutMs` for room before giving up with EAGAIN.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, stallTimeoutMs: Int32 = 1000) -> Int32 {
    guard let base = bytes.baseAddress else { return 0 }
    var done = 0
    while done < bytes.count {
        let n = retryingEINTR { write(fd, base + done, bytes.count - done) }
        if n > 0 {
            done += n
            continue
        }
        let code = n == 0 ? EIO : errno
        guard code == EAGAIN || code == EWOULDBLOCK else { return code }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if retryingEINTR({ poll(&pfd, 1, stallTimeoutMs) }) == 0 { return EAGAIN }
    }
    return 0
}

/// Adds `flags` to an fd's status flags (e.g. O_NONBLOCK). Returns false on failure.
func addStatusFlags(_ fd: Int32, _ flags: Int32) -> Bool {
    let current = fcntl(fd, F_GETFL)
    return current >= 0 && fcntl(fd, F_SETFL, current | flags) == 0
}

/// Marks an fd close-on-exec so the daemon's children don't inherit it.
func setCloseOnExec(_ fd: Int32) {
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
}

/// Writes `line` plus a newline with one `writeAll` (so lines never interleave), staging it in the reused `buffer`.
/// Returns 0 or the errno that stopped it.
func writeLine(_ fd: Int32, _ line: String, buffer: inout [UInt8]) -> Int32 {
    buffer.removeAll(keepingCapacity: true)
    buffer.append(contentsOf: line.utf8)
    buffer.append(0x0A)
    return buffer.withUnsafeBytes { writeAll(fd, $0) }
}
