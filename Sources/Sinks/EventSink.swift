import Foundation
import Glibc

/// One line for every output; `opens`/`closes` carry an event id so late socket clients can be sent the events still open.
///
/// `line` is one already-encoded JSON object with no newline in it; the sinks add the trailing one.
/// For the socket's open-event table, `closes` is applied before `opens`; a message whose
/// `opens` id is already open (including `opens == closes`) replaces that event's line in place.
public struct SinkMessage: Sendable {
    public var line: String
    public var opens: UInt64?
    public var closes: UInt64?

    public init(line: String, opens: UInt64? = nil, closes: UInt64? = nil) {
        self.line = line
        self.opens = opens
        self.closes = closes
    }
}

/// An event output.
///
/// `publish` may be called from any thread and never throws: a failing output logs and carries on.
/// `close` is idempotent; `publish` after `close` is ignored.
public protocol EventSink: AnyObject {
    func publish(_ message: SinkMessage)
    func close()
}

/// Publishes every message to several sinks, in order.
public final class SinkFanout: EventSink, @unchecked Sendable {
    /// The sinks, in publishing order.
    public let sinks: [EventSink]

    public init(_ sinks: [EventSink]) {
        self.sinks = sinks
    }

    public func publish(_ message: SinkMessage) {
        for sink in sinks { sink.publish(message) }
    }

    public func close() {
        for sink in sinks { sink.close() }
    }
}

/// Why a sink could not be set up; every case names the path and says what to do.
public enum SinkError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// The log file could not be opened for appending.
    case cannotOpenLogFile(path: String, errno: Int32)
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
    case system(path: String, call: String, errno: Int32)

    public var description: String {
        switch self {
        case let .cannotOpenLogFile(path, code):
            return "cannot open event log file \(path) for appending: \(errnoText(code)); check that its directory exists and is writable by the daemon user"
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
            return "\(call) failed for socket \(path): \(errnoText(code))"
        }
    }

    public var errorDescription: String? { description }
}
