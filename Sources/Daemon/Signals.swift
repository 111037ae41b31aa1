import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Delivers SIGTERM/SIGINT/SIGHUP to a handler on a dedicated thread (sigwait), so no work runs in signal context.
public final class SignalWatcher {
    /// The signals the daemon reacts to.
    public enum Signal { case terminate(Int32), hangup }

    private let handler: (Signal) -> Void
    private var thread: Thread?

    /// Blocks the signals in the calling thread (call before starting other threads, so they inherit the mask)
    /// and ignores SIGPIPE so a vanished reader surfaces as EPIPE, not as death.
    public static func blockDaemonSignals() {
        signal(SIGPIPE, SIG_IGN)
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    public init(handler: @escaping (Signal) -> Void) {
        self.handler = handler
        let t = Thread { [handler] in
            var set = sigset_t()
            sigemptyset(&set)
            for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
            while true {
                var sig: Int32 = 0
                guard sigwait(&set, &sig) == 0 else { continue }
                handler(sig == SIGHUP ? .hangup : .terminate(sig))
            }
        }
        t.name = "htsatd-signals"
        thread = t
        t.start()
    }
}
