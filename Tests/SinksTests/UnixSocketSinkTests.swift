import Foundation
import Glibc
import Logging
import Sinks
import XCTest

final class UnixSocketSinkTests: XCTestCase {
    private var dir = ""
    private var socketPath: String { dir + "/events.sock" }
    private let logs = LogCapture()

    override func setUpWithError() throws {
        dir = try makeShortTempDir()
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    private func makeSink(mode: mode_t = 0o660, maxClientBacklog: Int = 256 * 1024) throws -> UnixSocketSink {
        try UnixSocketSink(path: socketPath, mode: mode, maxClientBacklog: maxClientBacklog, logger: logs.logger())
    }

    private func connect(_ count: Int, to sink: UnixSocketSink) throws -> [LineClient] {
        let before = sink.clientCount
        let clients = try (0..<count).map { _ in try LineClient(path: socketPath) }
        XCTAssertTrue(waitUntil { sink.clientCount == before + count }, "server did not accept \(count) clients")
        return clients
    }

    func testSeveralClientsReceiveAllLinesInOrder() throws {
        let sink = try makeSink()
        defer { sink.close() }
        let clients = try connect(3, to: sink)
        let expected = (0..<2000).map { eventLine($0) }
        for line in expected { sink.publish(message(line)) }
        for client in clients {
            assertLines(client.readLines(expected.count), expected, "client \(client.fd)")
            client.close()
        }
    }

    func testLateClientGetsLatestStatusAndOpenEventsFirstButNotClosedOnes() throws {
        let sink = try makeSink()
        defer { sink.close() }
        let early = try connect(1, to: sink)[0]
        let messages = [
            message("status unavailable", status: true),
            message("start dog", opens: 1),
            message("start siren", opens: 2),
            message("stats"),
            message("stop dog", closes: 1),
            message("start speech", opens: 3),
            message("status capturing", status: true),
        ]
        for message in messages { sink.publish(message) }
        let late = try connect(1, to: sink)[0]
        sink.publish(message("stop speech", closes: 3))
        sink.publish(message("later"))

        XCTAssertEqual(late.readLines(5), ["status capturing", "start siren", "start speech", "stop speech", "later"])
        XCTAssertEqual(early.readLines(9), messages.map(\.line) + ["stop speech", "later"])

        // After the stop, a third client sees the status and only the event still open.
        let third = try connect(1, to: sink)[0]
        sink.publish(message("end"))
        XCTAssertEqual(third.readLines(3), ["status capturing", "start siren", "end"])
    }

    func testStalledClientIsDroppedWhileOthersKeepReceivingAndPublishStaysFast() throws {
        let backlog = 64 * 1024
        let sink = try makeSink(maxClientBacklog: backlog)
        defer { sink.close() }
        let stalled = try connect(1, to: sink)[0]  // connected, never reads until the end
        let reader = try connect(1, to: sink)[0]

        // The reader runs on its own thread; batches stay well under the backlog so only the stalled client overflows.
        let batch = 16
        let line = { (i: Int) in eventLine(i, padding: 1000) }
        let received = LockedLines()
        let readerDone = expectation(description: "reader finished")
        let readerThread = Thread {
            while let text = reader.readLine() {
                received.append(text)
                if text == "done" { break }
            }
            readerDone.fulfill()
        }
        readerThread.start()

        var published = 0
        var slowest: TimeInterval = 0
        var droppedAt: Int?
        let start = Date()
        while published < 20_000 {
            for _ in 0..<batch {
                let t0 = Date()
                sink.publish(message(line(published)))
                slowest = max(slowest, Date().timeIntervalSince(t0))
                published += 1
            }
            guard waitUntil({ received.count == published }) else {
                XCTFail("reader fell behind at line \(published)")
                break
            }
            if droppedAt == nil && sink.clientCount == 1 { droppedAt = published }
            if let at = droppedAt, published >= at + 20 * batch { break }
        }
        let elapsed = Date().timeIntervalSince(start)
        sink.publish(message("done"))
        wait(for: [readerDone], timeout: 10)

        XCTAssertNotNil(droppedAt, "stalled client was never dropped after \(published) lines")
        assertLines(received.lines, (0..<published).map(line) + ["done"], "reading client")
        XCTAssertLessThan(slowest, 0.25, "a single publish took \(slowest) s")
        XCTAssertLessThan(elapsed, 10, "publishing \(published) lines took \(elapsed) s")

        // The stalled client got an in-order prefix and then EOF; the drop was logged with its pid.
        let prefix = stalled.readToEnd()
        XCTAssertTrue(stalled.sawEOF)
        XCTAssertGreaterThan(prefix.count, 0)
        XCTAssertLessThan(prefix.count, published)
        assertLines(prefix, (0..<prefix.count).map(line), "stalled client")
        let drops = logs.records.filter { $0.level == .warning && $0.message.contains("dropping") }
        XCTAssertEqual(drops.count, 1)
        XCTAssertEqual(drops.first?.metadata["pid"]?.description, "\(getpid())")
        XCTAssertEqual(drops.first?.metadata["fd"] != nil, true)
        stalled.close()
        reader.close()
        print("stalled client dropped after \(droppedAt ?? -1) lines of ~1 KB; \(published) lines in \(elapsed) s; slowest publish \(slowest * 1e6) µs")
    }

    func testDisconnectedClientsAreCleanedUp() throws {
        let sink = try makeSink()
        defer { sink.close() }
        let clients = try connect(3, to: sink)
        clients[0].close()
        XCTAssertTrue(waitUntil { sink.clientCount == 2 }, "closed client not cleaned up")

        // A client that sends data and then shuts down its write side still receives lines.
        let chatty = clients[1]
        XCTAssertEqual(send(chatty.fd, "hello\n", 6, 0), 6)
        XCTAssertEqual(shutdown(chatty.fd, Int32(SHUT_WR)), 0)
        sink.publish(message("one"))
        XCTAssertEqual(chatty.readLine(), "one")
        XCTAssertEqual(sink.clientCount, 2)

        // Closing with unread data pending is cleaned up too.
        sink.publish(message("two"))
        clients[2].close()
        chatty.close()
        XCTAssertTrue(waitUntil { sink.clientCount == 0 }, "hung-up clients not cleaned up")
        sink.publish(message("nobody listening"))
        let fresh = try connect(1, to: sink)[0]
        sink.publish(message("three"))
        XCTAssertEqual(fresh.readLine(), "three")
    }

    func testSocketModeIsApplied() throws {
        for mode: mode_t in [0o600, 0o660] {
            let sink = try makeSink(mode: mode)
            var st = stat()
            XCTAssertEqual(lstat(socketPath, &st), 0)
            XCTAssertEqual(st.st_mode & S_IFMT, S_IFSOCK)
            XCTAssertEqual(st.st_mode & 0o7777, mode)
            sink.close()
        }
    }

    func testSocketGroupIsApplied() throws {
        guard getuid() == 0 else { throw XCTSkip("changing a file's group to another group needs root here") }
        guard let audio = getgrnam("audio")?.pointee.gr_gid else { throw XCTSkip("no 'audio' group on this system") }
        let sink = try UnixSocketSink(path: socketPath, mode: 0o660, group: audio, logger: logs.logger())
        defer { sink.close() }
        var st = stat()
        XCTAssertEqual(lstat(socketPath, &st), 0)
        XCTAssertEqual(st.st_gid, audio)
        XCTAssertEqual(st.st_mode & 0o7777, 0o660)
    }

    func testCloseRemovesSocketFileAndDisconnectsClients() throws {
        let sink = try makeSink()
        let client = try connect(1, to: sink)[0]
        sink.publish(message("last"))
        sink.close()
        XCTAssertNotEqual(access(socketPath, F_OK), 0, "socket file still present after close")
        XCTAssertEqual(client.readToEnd(), ["last"])
        XCTAssertTrue(client.sawEOF)
        sink.close()  // idempotent
        sink.publish(message("ignored"))
        XCTAssertThrowsError(try LineClient(path: socketPath))
        client.close()
    }

    /// The final burst before shutdown (stop lines of every open event) outgrows the socket buffers: close() keeps
    /// writing until a reader that is still reading has it all, and only then disconnects it.
    func testCloseSendsTheLastBurstToAClientStillReading() throws {
        let sink = try makeSink(maxClientBacklog: 4 << 20)
        let client = try connect(1, to: sink)[0]
        // About 2 MB: far more than a Unix socket's buffers, so most of it is still queued when close() begins.
        let expected = (0..<2000).map { eventLine($0, padding: 1000) }
        for line in expected { sink.publish(message(line)) }
        let closed = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { sink.close(); closed.signal() }
        usleep(300_000)  // the client reads only once close() is under way
        assertLines(client.readLines(expected.count), expected, "reader during close")
        XCTAssertEqual(closed.wait(timeout: .now() + 5), .success, "close() did not return after the backlog was sent")
        XCTAssertEqual(client.readToEnd(), [])
        XCTAssertTrue(client.sawEOF)
        XCTAssertFalse(logs.records.contains { $0.message.contains("unsent") }, "\(logs.records.map(\.message))")
        client.close()
    }

    /// A client that stopped reading holds close() for closeDrainSeconds at most, and the lines it never got are logged.
    func testCloseGivesUpOnAStalledClientAfterItsBound() throws {
        let sink = try UnixSocketSink(path: socketPath, maxClientBacklog: 4 << 20, closeDrainSeconds: 0.5,
                                      logger: logs.logger())
        let stalled = try connect(1, to: sink)[0]
        for i in 0..<2000 { sink.publish(message(eventLine(i, padding: 1000))) }
        let start = Date()
        sink.close()
        let took = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(took, 0.45, "close() gave up before its bound")
        XCTAssertLessThan(took, 2, "close() took \(took) s with a 0.5-s bound")
        let warning = logs.records.first { $0.level == .warning && $0.message.contains("unsent") }
        XCTAssertEqual(warning?.metadata["clients"]?.description, "1", "\(logs.records.map(\.message))")
        let got = stalled.readToEnd()
        XCTAssertTrue(stalled.sawEOF)
        XCTAssertLessThan(got.count, 2000)
        assertLines(got, (0..<got.count).map { eventLine($0, padding: 1000) }, "stalled client's prefix")
        stalled.close()
    }

    func testStaleSocketIsReplaced() throws {
        // A bound socket nobody listens on: what a crashed daemon leaves behind.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: Array(socketPath.utf8) + [0])
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        Glibc.close(stale)
        XCTAssertThrowsError(try LineClient(path: socketPath))  // really stale: ECONNREFUSED

        let sink = try makeSink()
        defer { sink.close() }
        let client = try connect(1, to: sink)[0]
        sink.publish(message("fresh"))
        XCTAssertEqual(client.readLine(), "fresh")
    }

    func testLiveSocketIsRefused() throws {
        let first = try makeSink()
        defer { first.close() }
        XCTAssertThrowsError(try makeSink()) { error in
            XCTAssertEqual(error as? SinkError, .alreadyServing(path: socketPath))
            XCTAssertTrue("\(error)".contains("another htsatd is serving \(socketPath)"), "\(error)")
        }
        // The refused attempt must leave the live socket working. Its probe connection comes and goes on the
        // server's own schedule, so wait for the count to settle on just the new client before publishing.
        let client = try LineClient(path: socketPath)
        XCTAssertTrue(waitUntil {
            guard first.clientCount == 1 else { return false }
            usleep(100_000)
            return first.clientCount == 1
        }, "probe connection not cleaned up")
        first.publish(message("still here"))
        XCTAssertEqual(client.readLine(), "still here")
    }

    func testBadPathsGiveClearErrors() throws {
        let regular = dir + "/plain"
        XCTAssertTrue(FileManager.default.createFile(atPath: regular, contents: Data("x".utf8)))
        XCTAssertThrowsError(try UnixSocketSink(path: regular, logger: logs.logger())) { error in
            XCTAssertEqual(error as? SinkError, .notASocket(path: regular))
            XCTAssertTrue("\(error)".contains(regular))
        }
        XCTAssertEqual(try String(contentsOfFile: regular, encoding: .utf8), "x", "regular file must be left alone")

        let missing = dir + "/no/such/dir/events.sock"
        XCTAssertThrowsError(try UnixSocketSink(path: missing, logger: logs.logger())) { error in
            XCTAssertEqual(error as? SinkError, .socketDirectoryMissing(path: missing))
            XCTAssertTrue("\(error)".contains(dir + "/no/such/dir does not exist"), "\(error)")
        }

        let long = dir + "/" + String(repeating: "a", count: 120) + ".sock"
        XCTAssertThrowsError(try UnixSocketSink(path: long, logger: logs.logger())) { error in
            XCTAssertEqual(error as? SinkError, .socketPathTooLong(path: long, limit: 108))
            XCTAssertTrue("\(error)".contains(long))
        }
        XCTAssertThrowsError(try UnixSocketSink(path: "", logger: logs.logger())) { error in
            XCTAssertEqual(error as? SinkError, .invalidSocketPath(path: ""))
        }
    }
}

/// Lines received on another thread.
final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []

    func append(_ line: String) {
        lock.lock()
        stored.append(line)
        lock.unlock()
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return stored.count
    }

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
