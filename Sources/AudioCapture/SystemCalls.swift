#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The single place where this module retries calls interrupted by a signal.
/// `body` returns a negative errno on failure (ALSA style); POSIX calls are adapted with
/// `negativeErrno`.
@inline(__always)
func retryingEINTR(_ body: () -> Int) -> Int {
    while true {
        let result = body()
        if result != -Int(EINTR) { return result }
    }
}

/// Turns a POSIX "-1 and errno" result into "-errno" so it fits `retryingEINTR`.
@inline(__always)
func negativeErrno(_ result: Int) -> Int {
    result == -1 ? -Int(errno) : result
}

/// Text for an errno value.
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}
