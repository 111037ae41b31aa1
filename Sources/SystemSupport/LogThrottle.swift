import Dispatch
import Synchronization

/// Lets a repeated diagnostic through at most once per interval: the first occurrence at once, later ones folded
/// into the next line that gets through, which says how many it stands for. Any thread.
///
/// Under sustained overload or a flapping device the same warning would otherwise reach journald once per window,
/// per retry or per client.
public final class LogThrottle: Sendable {
    /// Seconds between lines.
    public let interval: Double
    private let now: @Sendable () -> UInt64
    private let state = Mutex<(last: UInt64?, suppressed: Int)>((nil, 0))

    /// `now` gives monotonic nanoseconds (injectable for tests).
    public init(interval: Double = 10, now: @escaping @Sendable () -> UInt64 = { DispatchTime.now().uptimeNanoseconds }) {
        self.interval = interval
        self.now = now
    }

    /// Notes one occurrence; calls `emit(suppressed)` (occurrences folded since the last line) if a line is due.
    public func record(_ emit: (_ suppressed: Int) -> Void) {
        let t = now()
        let due: Int? = state.withLock { s in
            if let last = s.last, Double(t &- last) / 1e9 < interval {
                s.suppressed += 1
                return nil
            }
            defer { s = (t, 0) }
            return s.suppressed
        }
        if let due { emit(due) }
    }

    /// " (N more like it since the last report)" when N > 0, for the end of a message.
    public static func suffix(_ suppressed: Int) -> String {
        suppressed > 0 ? " (\(suppressed) more like it since the last report)" : ""
    }
}
