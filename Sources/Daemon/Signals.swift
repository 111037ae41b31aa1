import Foundation
import SystemSupport
#if canImport(Glibc)
import Glibc
#endif

/// Write end of the self-pipe; the only state the async-signal handler touches.
private var signalPipeWriteEnd: Int32 = -1

/// Delivers SIGTERM/SIGINT/SIGHUP to a handler on a dedicated thread, so no work runs in signal context.
///
/// A handler that writes the signal number into a pipe (the self-pipe trick) works whichever thread the kernel
/// picks; blocking the signals instead would miss threads that libraries start early (OpenBLAS's pool starts
/// when the library loads).
public final class SignalWatcher {
    /// The signals the daemon reacts to.
    public enum Signal { case terminate(Int32), hangup }

    /// Installs the handlers and starts the thread that calls `handler` for each signal.
    public init(handler: @escaping (Signal) -> Void) {
        guard let pipe = try? WakePipe() else { fatalError("htsatd: cannot create the signal pipe: \(Errno.current)") }
        self.pipe = pipe
        signalPipeWriteEnd = pipe.writeFD
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                let saved = errno
                var byte = UInt8(truncatingIfNeeded: sig)
                _ = write(signalPipeWriteEnd, &byte, 1)
                errno = saved
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
        }
        let thread = Thread {
            while true {
                guard pipe.wait(milliseconds: -1) else { continue }
                pipe.drain { byte in handler(Int32(byte) == SIGHUP ? .hangup : .terminate(Int32(byte))) }
            }
        }
        thread.name = "htsatd-signals"
        thread.start()
    }

    private let pipe: WakePipe
}
