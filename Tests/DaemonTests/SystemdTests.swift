import Daemon
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// SystemdNotifier against a real notification socket, and the unit file against systemd-analyze.
final class SystemdTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try Fixtures.temporaryDirectory("htsatd-sd")
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { unsetenv(name) }
    }

    override func tearDown() {
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { unsetenv(name) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// A bound Unix datagram socket standing in for systemd's notification socket.
    private final class NotifySocket {
        let fd: Int32
        let path: String

        init(path: String) throws {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            precondition(bytes.count < MemoryLayout.size(ofValue: address.sun_path), "socket path too long: \(path)")
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0 else { close(fd); throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            // A missing datagram fails the test after 2 s instead of hanging it.
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        /// The next datagram, or nil after the timeout.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n >= 0 else { return nil }
            return String(decoding: buffer[..<n], as: UTF8.self)
        }

        /// True if nothing is waiting.
        func isEmpty() -> Bool {
            var buffer = [UInt8](repeating: 0, count: 16)
            return recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) < 0
        }

        deinit { close(fd) }
    }

    func testNoOpWithoutNotifySocket() {
        let notifier = SystemdNotifier()
        XCTAssertFalse(notifier.isEnabled)
        XCTAssertFalse(notifier.ready())
        XCTAssertFalse(notifier.status("loading"))
        XCTAssertFalse(notifier.watchdog())
        XCTAssertFalse(notifier.stopping())
        XCTAssertNil(notifier.watchdogInterval)
    }

    func testNotificationsArriveAsDatagrams() throws {
        let socket = try NotifySocket(path: directory.appendingPathComponent("notify").path)
        setenv("NOTIFY_SOCKET", socket.path, 1)
        let notifier = SystemdNotifier()
        XCTAssertTrue(notifier.isEnabled)

        XCTAssertTrue(notifier.status("loading model"))
        XCTAssertEqual(socket.receive(), "STATUS=loading model")
        XCTAssertTrue(notifier.ready())
        XCTAssertEqual(socket.receive(), "READY=1")
        XCTAssertTrue(notifier.ready(status: "listening on default"))
        XCTAssertEqual(socket.receive(), "READY=1\nSTATUS=listening on default")
        XCTAssertTrue(notifier.watchdog())
        XCTAssertEqual(socket.receive(), "WATCHDOG=1")
        // A newline would smuggle in another assignment (here WATCHDOG=trigger, which kills the service).
        XCTAssertTrue(notifier.status("line one\nWATCHDOG=trigger"))
        XCTAssertEqual(socket.receive(), "STATUS=line one WATCHDOG=trigger")
        XCTAssertTrue(notifier.stopping())
        XCTAssertEqual(socket.receive(), "STOPPING=1")
        XCTAssertTrue(socket.isEmpty())
        // The environment stays set (other threads may notify too).
        XCTAssertNotNil(getenv("NOTIFY_SOCKET"))
    }

    func testSendFailureIsReportedNotFatal() {
        setenv("NOTIFY_SOCKET", directory.appendingPathComponent("nobody-listens").path, 1)
        let notifier = SystemdNotifier()
        XCTAssertTrue(notifier.isEnabled)
        XCTAssertFalse(notifier.ready())
    }

    func testWatchdogInterval() {
        setenv("WATCHDOG_USEC", "30000000", 1)
        XCTAssertEqual(SystemdNotifier().watchdogInterval, 30)
        setenv("WATCHDOG_PID", String(getpid()), 1)
        XCTAssertEqual(SystemdNotifier().watchdogInterval, 30)
        // Meant for another process (e.g. inherited by a child): not ours to feed.
        setenv("WATCHDOG_PID", String(getpid() + 1), 1)
        XCTAssertNil(SystemdNotifier().watchdogInterval)
        unsetenv("WATCHDOG_PID")
        setenv("WATCHDOG_USEC", "not a number", 1)
        XCTAssertNil(SystemdNotifier().watchdogInterval)
    }

    // MARK: - systemd/htsatd.service

    private var unitURL: URL { Fixtures.packageRoot.appendingPathComponent("systemd/htsatd.service") }

    private func unitText() throws -> String { try String(contentsOf: unitURL, encoding: .utf8) }

    /// Runs `systemd-analyze verify` on a copy of `text`; returns exit status and the lines about the unit.
    private func verify(_ text: String) throws -> (status: Int32, complaints: [String]) {
        guard let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first(where: FileManager.default.isExecutableFile)
        else { throw XCTSkip("systemd-analyze is not installed; cannot verify systemd/htsatd.service") }
        // verify insists that ExecStart's binary exists, so point the copy at one that does.
        let binary = try XCTUnwrap(["/bin/true", "/usr/bin/true"].first(where: FileManager.default.isExecutableFile))
        let copy = directory.appendingPathComponent("htsatd.service")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            line.hasPrefix("ExecStart=/usr/local/bin/htsatd ") ? "ExecStart=\(binary) " + line.dropFirst("ExecStart=/usr/local/bin/htsatd ".count) : String(line)
        }
        try lines.joined(separator: "\n").write(to: copy, atomically: true, encoding: .utf8)
        let (status, output) = try runTool(analyze, ["verify", "--man=no", copy.path])
        // Other units on the machine may draw complaints too; only ours count.
        let complaints = output.split(separator: "\n").map(String.init).filter { $0.contains("htsatd.service") }
        return (status, complaints)
    }

    func testUnitFilePassesSystemdAnalyzeVerify() throws {
        let text = try unitText()
        XCTAssertTrue(text.contains("\nExecStart=/usr/local/bin/htsatd "), "the test rewrites this ExecStart line")
        let result = try verify(text)
        XCTAssertEqual(result.status, 0, result.complaints.joined(separator: "\n"))
        XCTAssertEqual(result.complaints, [])
    }

    /// verify exits 0 on unknown keys and bad values, so the complaints are what catch them.
    func testVerifyCatchesMistakes() throws {
        let text = try unitText()
        let typo = try verify(text.replacingOccurrences(of: "\nPrivateTmp=yes", with: "\nPrivateTmpp=yes"))
        XCTAssertTrue(typo.complaints.contains { $0.contains("PrivateTmpp") }, "\(typo)")
        let badValue = try verify(text.replacingOccurrences(of: "\nProtectHome=yes", with: "\nProtectHome=perhaps"))
        XCTAssertTrue(badValue.complaints.contains { $0.contains("perhaps") }, "\(badValue)")
    }

    func testUnitFileSettings() throws {
        let settings = Set(try unitText().split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        for line in [
            "Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure", "RestartSec=5",
            "ExecReload=/bin/kill -HUP $MAINPID", "DynamicUser=yes", "SupplementaryGroups=audio",
            "RuntimeDirectory=htsatd", "RuntimeDirectoryMode=0755", "StateDirectory=htsatd htsatd/clips",
            "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateNetwork=yes",
            "RestrictAddressFamilies=AF_UNIX", "NoNewPrivileges=yes", "DevicePolicy=closed",
            "DeviceAllow=char-alsa rw", "PrivateDevices=no",
        ] {
            XCTAssertTrue(settings.contains(line), "systemd/htsatd.service lacks \(line)")
        }
    }

    /// Every flag ExecStart passes must be one the CLI accepts.
    func testExecStartFlagsExistInTheCLI() throws {
        let execStart = try XCTUnwrap(try unitText().split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
        let flags = execStart.split(separator: " ").filter { $0.hasPrefix("--") }.map(String.init)
        XCTAssertEqual(flags, ["--config", "--socket", "--socket-group", "--no-stdout"])
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("htsatd"),
            Bundle.main.bundleURL.appendingPathComponent("htsatd"),
        ]
        guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw XCTSkip("htsatd binary not found beside the test bundle; cannot check its flags")
        }
        // With a default subcommand the top-level help may not show its options; ask both ways.
        let help = try output(of: binary, ["--help"]) + output(of: binary, execStart.split(separator: " ").dropFirst().map(String.init) + ["--help"])
        guard help.contains("--config") else {
            throw XCTSkip("htsatd --help does not list --config yet (CLI not written?): \(help.prefix(200))")
        }
        for flag in flags {
            XCTAssertTrue(help.contains(flag), "htsatd --help does not list \(flag), which systemd/htsatd.service passes")
        }
    }

    /// Combined stdout and stderr of `binary arguments`, killed after 10 s so a misbehaving binary cannot hang the suite.
    private func output(of binary: URL, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        DispatchQueue.global().async {
            while process.isRunning && Date() < deadline { usleep(50_000) }
            if process.isRunning { process.terminate() }
        }
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text
    }
}
