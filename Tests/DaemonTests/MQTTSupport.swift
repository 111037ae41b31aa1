import TestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A real Debian `mosquitto` broker on a free loopback port, with a generated config; its log goes to a file.
final class Broker {
    let port: Int
    let directory: URL
    let logURL: URL
    private let configURL: URL
    private var process: Process?

    /// `extra` is appended to the config (listeners, password file, …); `port` reuses a port across restarts.
    init(in directory: URL, port: Int? = nil, anonymous: Bool = true, extra: String = "") throws {
        guard let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("mosquitto is not installed (scripts/install-deps.sh installs it)")
        }
        self.binary = URL(fileURLWithPath: binary)
        self.directory = directory
        self.port = port ?? freePort()
        logURL = directory.appendingPathComponent("broker-\(self.port).log")
        configURL = directory.appendingPathComponent("broker-\(self.port).conf")
        var config = """
        listener \(self.port) 127.0.0.1
        allow_anonymous \(anonymous)
        persistence false
        log_dest file \(logURL.path)
        log_type all
        connection_messages true

        """
        // As root mosquitto would switch to its own user, which cannot write the test's log file.
        if getuid() == 0 { config += "user root\n" }
        try (config + extra).write(to: configURL, atomically: true, encoding: .utf8)
    }

    private let binary: URL

    /// Starts the broker and waits until its plain listener accepts connections.
    func start() throws {
        let p = Process()
        p.executableURL = binary
        p.arguments = ["-c", configURL.path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        XCTAssertTrue(eventually(timeout: 10) { canConnect(port: port) }, "mosquitto did not start listening on \(port): \(log)")
    }

    /// Stops it (SIGTERM) and waits for the exit.
    func stop() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGCONT)
        p.terminate()
        p.waitUntilExit()
        process = nil
    }

    func signal(_ sig: Int32) { if let p = process { kill(p.processIdentifier, sig) } }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Lines of the broker log reporting a client connection with `clientID`.
    func connections(of clientID: String) -> Int {
        log.split(separator: "\n").filter { $0.contains("New client connected") && $0.contains(" as \(clientID) ") }.count
    }

    deinit { stop() }
}

/// A `mosquitto_sub` subscriber recording every message as `retained|topic|payload` lines in a file.
final class Subscriber {
    struct Message: Equatable { let retained: Bool; let topic: String; let payload: String }
    private let process = Process()
    private let output: URL

    init(port: Int, topics: [String], in directory: URL, extra: [String] = [], retainedOnlyFor seconds: Int? = nil) throws {
        output = directory.appendingPathComponent("sub-\(UUID().uuidString.prefix(6)).txt")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        guard let binary = ["/usr/bin/mosquitto_sub"].first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("mosquitto_sub is not installed (scripts/install-deps.sh installs mosquitto-clients)")
        }
        process.executableURL = URL(fileURLWithPath: binary)
        var args = ["-h", "127.0.0.1", "-p", "\(port)", "-q", "1", "-F", "%r|%t|%p"] + extra
        for t in topics { args += ["-t", t] }
        if let seconds { args += ["--retained-only", "-W", "\(seconds)"] }
        process.arguments = args
        process.standardOutput = try FileHandle(forWritingTo: output)
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Every message so far.
    var messages: [Message] {
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { return nil }
            return Message(retained: parts[0] == "1", topic: String(parts[1]), payload: String(parts[2]))
        }
    }

    func payloads(_ topic: String) -> [String] { messages.filter { $0.topic == topic }.map(\.payload) }

    /// The retained messages currently held by the broker under `topics` (a short-lived `--retained-only` subscriber).
    static func retained(port: Int, topics: [String], in directory: URL, extra: [String] = []) throws -> [String: String] {
        let s = try Subscriber(port: port, topics: topics, in: directory, extra: extra, retainedOnlyFor: 1)
        s.process.waitUntilExit()
        return Dictionary(s.messages.map { ($0.topic, $0.payload) }, uniquingKeysWith: { _, last in last })
    }

    /// Waits until the subscription is live: publishes probes on `probeTopic` until one arrives.
    func waitUntilSubscribed(port: Int, probeTopic: String, file: StaticString = #filePath, line: UInt = #line) {
        let ok = eventually(timeout: 10) {
            let pub = Process()
            pub.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_pub")
            pub.arguments = ["-h", "127.0.0.1", "-p", "\(port)", "-t", probeTopic, "-m", "probe"]
            try? pub.run()
            pub.waitUntilExit()
            return messages.contains { $0.topic == probeTopic }
        }
        XCTAssertTrue(ok, "the subscriber never received its probe", file: file, line: line)
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
            _ = bind(fd, p, len)
            return getsockname(fd, p, &len)
        }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// Runs a command to completion (openssl, mosquitto_passwd, mosquitto_pub); fails the test on a non-zero exit.
func runChecked(_ path: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
    guard FileManager.default.isExecutableFile(atPath: path) else { throw XCTSkip("\(path) is not installed") }
    let (status, output) = try runTool(path, arguments)
    XCTAssertEqual(status, 0, "\(path) \(arguments.joined(separator: " ")): \(output)", file: file, line: line)
}
