import Detection
import Sinks
import Foundation
import Glibc
import Logging
import XCTest

/// Keeps log records in memory so tests can check what a sink reported.
final class LogCapture: @unchecked Sendable {
    struct Record {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let lock = NSLock()
    private var stored: [Record] = []

    /// A logger whose records land in this capture.
    func logger(_ label: String = "sinks-test") -> Logger {
        var logger = Logger(label: label) { _ in CaptureHandler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    var records: [Record] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }

    fileprivate func add(_ record: Record) {
        lock.lock()
        stored.append(record)
        lock.unlock()
    }
}

private struct CaptureHandler: LogHandler {
    let capture: LogCapture
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        capture.add(.init(level: event.level, message: "\(event.message)", metadata: metadata.merging(event.metadata ?? [:]) { $1 }))
    }
}

/// A fresh short directory under /tmp (socket paths must stay under 108 bytes).
func makeShortTempDir() throws -> String {
    var template = Array("/tmp/sinks-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
    }
    return String(cString: made)
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
func waitUntil(timeout: TimeInterval = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(2_000)
    }
    return condition()
}

/// A blocking client connection that reads newline-terminated lines, with a receive timeout so tests never hang.
final class LineClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 65536)
    /// True once the server closed the connection.
    private(set) var sawEOF = false

    init(path: String, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let result = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }

    /// The next line, or nil on EOF or timeout.
    func readLine() -> String? {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeFirst(newline + 1)
                return line
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { sawEOF = true }
            guard n > 0 else { return nil }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    /// Up to `count` lines (fewer on EOF or timeout).
    func readLines(_ count: Int) -> [String] {
        var lines: [String] = []
        while lines.count < count, let line = readLine() { lines.append(line) }
        return lines
    }

    /// Every remaining line until EOF (or timeout).
    func readToEnd() -> [String] {
        var lines: [String] = []
        while let line = readLine() { lines.append(line) }
        return lines
    }

    func close() {
        Glibc.close(fd)
    }
}

/// A JSON-ish event line for tests.
func eventLine(_ index: Int, padding: Int = 0) -> String {
    "{\"seq\":\(index),\"pad\":\"\(String(repeating: "x", count: padding))\"}"
}

/// Compares line lists, reporting only the counts and the first difference (the lines can be long).
func assertLines(_ actual: [String], _ expected: [String], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    if actual == expected { return }
    let index = zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(actual.count, expected.count)
    let got = index < actual.count ? String(actual[index].prefix(60)) : "<none>"
    let want = index < expected.count ? String(expected[index].prefix(60)) : "<none>"
    XCTFail("\(what): got \(actual.count) lines, expected \(expected.count); first difference at \(index): \(got) ≠ \(want)", file: file, line: line)
}

/// A message whose written line is `text`: an event start with id `opens`, a stop of `closes`, a status line, or
/// by default a stats message (which the socket does not replay).
func message(_ text: String, opens: Int? = nil, closes: Int? = nil, status: Bool = false) -> EncodedMessage {
    let clock = { (_: Double) in Date(timeIntervalSince1970: 0) }
    if let id = opens ?? closes {
        let event = DetectionEvent(kind: opens != nil ? .start : .stop, event: "e", id: id, start: 0, end: opens != nil ? nil : 1,
                                   score: 0.5, labels: [])
        return EncodedMessage(.event(EventLine(event, clock: clock)), line: text)
    }
    if status { return EncodedMessage(.status(StatusLine(state: .capturing, device: "d")), line: text) }
    return EncodedMessage(.stats(StatsLine(cpuPercent: 0, realTimeFactor: 0, meanInferenceMs: 0, windows: 0, windowsSkippedTotal: 0,
                                           overrunsTotal: 0, reconnectsTotal: 0, clients: 0)), line: text)
}
