import Foundation
import Glibc
import Logging
import Sinks
import SystemSupport
import Detection
import XCTest

final class LogFileSinkTests: XCTestCase {
    private var dir = ""
    private var logPath: String { dir + "/events.log" }
    private let logs = LogCapture()

    override func setUpWithError() throws {
        dir = try makeShortTempDir()
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func contents(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    func testAppendsOneLinePerEventWithMode0640() throws {
        let sink = try LogFileSink(path: logPath, logger: logs.logger())
        sink.publish(message("a"))
        sink.publish(message("b", opens: 1))
        XCTAssertEqual(try contents(logPath), "a\nb\n", "lines must reach the file without buffering")
        sink.close()
        sink.publish(message("after close"))

        let umaskValue = umask(0o022)
        umask(umaskValue)
        var st = stat()
        XCTAssertEqual(stat(logPath, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o640 & ~umaskValue)

        // A second sink appends, never truncates.
        let again = try LogFileSink(path: logPath, logger: logs.logger())
        again.publish(message("c"))
        again.close()
        XCTAssertEqual(try contents(logPath), "a\nb\nc\n")
    }

    func testReopenAfterRenameWritesToANewFile() throws {
        let sink = try LogFileSink(path: logPath, logger: logs.logger())
        defer { sink.close() }
        sink.publish(message("before rotate"))
        XCTAssertEqual(rename(logPath, logPath + ".1"), 0)
        sink.publish(message("still old fd"))
        XCTAssertTrue(sink.reopen())
        sink.publish(message("after rotate"))
        XCTAssertEqual(try contents(logPath + ".1"), "before rotate\nstill old fd\n")
        XCTAssertEqual(try contents(logPath), "after rotate\n")
    }

    func testFailedReopenIsLoggedAndOldFileKeepsBeingUsed() throws {
        let sink = try LogFileSink(path: logPath, logger: logs.logger())
        defer { sink.close() }
        XCTAssertEqual(rename(logPath, logPath + ".1"), 0)
        XCTAssertEqual(mkdir(logPath, 0o755), 0)  // cannot be opened for writing, even by root
        XCTAssertFalse(sink.reopen())
        sink.publish(message("kept"))
        XCTAssertEqual(try contents(logPath + ".1"), "kept\n")
        let errors = logs.records.filter { $0.level == .error }
        XCTAssertEqual(errors.count, 1)
        XCTAssertTrue(errors.first?.metadata["error"]?.description.contains(logPath) ?? false)
    }

    func testUnopenablePathThrowsNamingIt() throws {
        let bad = dir + "/missing/events.log"
        XCTAssertThrowsError(try LogFileSink(path: bad, logger: logs.logger())) { error in
            XCTAssertEqual(error as? SinkError, .cannotOpenLogFile(path: bad, errno: Errno(ENOENT)))
            XCTAssertTrue("\(error)".contains(bad) && "\(error)".contains("No such file"), "\(error)")
        }
        // A FIFO without a reader must fail at once, not hang.
        let fifo = dir + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertThrowsError(try LogFileSink(path: fifo, logger: logs.logger()))
    }

    func testConcurrentWritersNeverInterleaveLines() throws {
        let sinks = try (0..<2).map { _ in try LogFileSink(path: logPath, logger: logs.logger()) }
        let perThread = 300
        let group = DispatchGroup()
        for t in 0..<4 {
            let sink = sinks[t % 2]
            DispatchQueue.global().async(group: group) {
                for i in 0..<perThread {
                    sink.publish(message("t\(t)-\(i)-" + String(repeating: "\(t)", count: 5000)))
                }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 20), .success)
        sinks.forEach { $0.close() }
        let lines = try contents(logPath).split(separator: "\n")
        XCTAssertEqual(lines.count, 4 * perThread)
        for line in lines {
            let t = line.dropFirst().prefix { $0 != "-" }
            XCTAssertTrue(line.hasSuffix(String(repeating: String(t), count: 5000)), "interleaved line: \(line.prefix(40))…")
        }
    }
}

final class StdoutSinkTests: XCTestCase {
    private let logs = LogCapture()

    private func makePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        return (fds[0], fds[1])
    }

    private func readAll(_ fd: Int32) -> String {
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            data.append(contentsOf: chunk[..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }

    func testWritesWholeLinesEvenWhenLargerThanThePipe() throws {
        let (r, w) = makePipe()
        // Non-blocking, as an inherited stdout can be: writes come back partial or with EAGAIN and must be resumed.
        XCTAssertEqual(fcntl(w, F_SETFL, fcntl(w, F_GETFL) | O_NONBLOCK), 0)
        let sink = StdoutSink(fd: w, logger: logs.logger())
        let big = String(repeating: "z", count: 300_000)  // > 64 KiB pipe: needs partial-write retries
        let text = LockedLines()
        let reader = Thread {
            text.append(self.readAll(r))
        }
        reader.start()
        sink.publish(message("first"))
        sink.publish(message(big))
        sink.publish(message("last"))
        sink.close()
        Glibc.close(w)
        XCTAssertTrue(waitUntil { text.count == 1 })
        let expected = "first\n\(big)\nlast\n"
        XCTAssertEqual(text.lines.first?.utf8.count, expected.utf8.count)
        XCTAssertTrue(text.lines.first == expected, "lines were cut or reordered")
        XCTAssertTrue(sink.isDisabled)
        XCTAssertTrue(logs.records.isEmpty, "\(logs.records.map(\.message))")
        Glibc.close(r)
    }

    func testReaderGoneDisablesSinkWithOneLogAndNoCrash() throws {
        ignoreSIGPIPE()  // what the daemon does at start-up
        let (r, w) = makePipe()
        defer { Glibc.close(w) }
        let sink = StdoutSink(fd: w, logger: logs.logger())
        sink.publish(message("seen"))
        XCTAssertFalse(sink.isDisabled)
        Glibc.close(r)
        for i in 0..<5 { sink.publish(message("lost \(i)")) }
        XCTAssertTrue(sink.isDisabled)
        let warnings = logs.records.filter { $0.level >= .warning }
        XCTAssertEqual(warnings.count, 1, "\(warnings.map(\.message))")
        XCTAssertTrue(warnings.first?.message.contains("EPIPE") ?? false)
    }
}

final class SinkFanoutTests: XCTestCase {
    func testPublishesToEverySinkAndClosesThemAll() throws {
        let dir = try makeShortTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logs = LogCapture()
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)
        defer { fds.forEach { Glibc.close($0) } }
        let file = try LogFileSink(path: dir + "/a.log", logger: logs.logger())
        let socket = try UnixSocketSink(path: dir + "/s.sock", logger: logs.logger())
        let stdout = StdoutSink(fd: fds[1], logger: logs.logger())
        let fanout = SinkFanout([file, socket, stdout])
        let client = try LineClient(path: dir + "/s.sock")
        XCTAssertTrue(waitUntil { socket.clientCount == 1 })

        // Each sink takes only its kinds: the status line reaches the socket alone, the event every sink.
        let event = OutputMessage.event(EventLine(DetectionEvent(kind: .start, event: "one", id: 7, start: 1, score: 0.5, labels: []),
                                                  clock: { Date(timeIntervalSince1970: $0) }))
        let status = OutputMessage.status(StatusLine(state: .capturing, device: "hw:9"))
        fanout.publish(status)
        fanout.publish(event)
        fanout.close()
        XCTAssertEqual(try String(contentsOfFile: dir + "/a.log", encoding: .utf8), event.line + "\n")
        XCTAssertEqual(client.readToEnd(), [status.line, event.line])
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fds[0], &buffer, buffer.count)
        XCTAssertEqual(String(decoding: buffer[..<max(n, 0)], as: UTF8.self), event.line + "\n")
        XCTAssertTrue(stdout.isDisabled)
        XCTAssertNotEqual(access(dir + "/s.sock", F_OK), 0)
        client.close()
    }
}
