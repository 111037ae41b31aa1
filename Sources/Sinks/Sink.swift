import Foundation
import SystemSupport

/// An output of the pipeline.
///
/// `publish` may be called from any thread and never throws: a failing output logs and carries on.
/// `close` flushes and is idempotent; `publish` after `close` is ignored.
public protocol Sink: AnyObject {
    /// The message kinds this sink takes; `SinkFanout` hands it nothing else.
    var accepts: Set<OutputMessage.Kind> { get }
    func publish(_ message: EncodedMessage)
    func close()
}

/// Encodes each message once and hands it to every sink that takes its kind, in order.
public final class SinkFanout: @unchecked Sendable {
    /// The sinks, in publishing order.
    public let sinks: [Sink]

    public init(_ sinks: [Sink]) {
        self.sinks = sinks
    }

    public func publish(_ message: OutputMessage) {
        let kind = message.kind
        guard sinks.contains(where: { $0.accepts.contains(kind) }) else { return }
        let encoded = EncodedMessage(message)
        for sink in sinks where sink.accepts.contains(kind) { sink.publish(encoded) }
    }

    public func close() {
        for sink in sinks { sink.close() }
    }
}

/// Why a sink could not be set up; every case names the path and says what to do.
public enum SinkError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The log file could not be opened for appending.
    case cannotOpenLogFile(path: String, errno: Errno)
    /// The socket path does not fit in `sockaddr_un.sun_path`.
    case socketPathTooLong(path: String, limit: Int)
    /// The socket path is empty or contains a NUL byte.
    case invalidSocketPath(path: String)
    /// The directory that should hold the socket does not exist.
    case socketDirectoryMissing(path: String)
    /// Something other than a socket exists at the socket path.
    case notASocket(path: String)
    /// A live process is accepting connections on the socket path.
    case alreadyServing(path: String)
    /// A system call failed while setting up the socket.
    case system(path: String, call: String, errno: Errno)

    public var description: String {
        switch self {
        case let .cannotOpenLogFile(path, code):
            return "cannot open event log file \(path) for appending: \(code); check that its directory exists and is writable by the daemon user"
        case let .socketPathTooLong(path, limit):
            return "socket path \(path) is \(path.utf8.count) bytes but Unix socket paths must be shorter than \(limit) bytes; choose a shorter path"
        case let .invalidSocketPath(path):
            return "socket path \"\(path)\" is empty or contains a NUL byte; give an absolute file path such as /run/htsatd/events.sock"
        case let .socketDirectoryMissing(path):
            let dir = (path as NSString).deletingLastPathComponent
            return "cannot create socket \(path): directory \(dir.isEmpty ? "." : dir) does not exist; create it (with systemd: RuntimeDirectory=htsatd) or choose another socket path"
        case let .notASocket(path):
            return "\(path) exists and is not a socket; remove it or choose another socket path"
        case let .alreadyServing(path):
            return "another htsatd is serving \(path); stop it or choose another socket path"
        case let .system(path, call, code):
            return "\(call) failed for socket \(path): \(code)"
        }
    }

    public var errorDescription: String? { description }
}
