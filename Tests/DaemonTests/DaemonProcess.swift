import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The built `htsatd` binary, run as a real subprocess with its output in files (no pipe can fill up and block it).
final class DaemonProcess {
    let process = Process()
    let stdoutURL: URL
    let stderrURL: URL

    /// The `htsatd` beside the test bundle (same build configuration).
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("htsatd")
    }

    init(_ arguments: [String], in directory: URL, environment extra: [String: String] = [:], stdin: FileHandle? = nil) throws {
        stdoutURL = directory.appendingPathComponent("stdout-\(UUID().uuidString.prefix(6)).txt")
        stderrURL = directory.appendingPathComponent("stderr-\(UUID().uuidString.prefix(6)).txt")
        try Data().write(to: stdoutURL)
        try Data().write(to: stderrURL)
        guard FileManager.default.isExecutableFile(atPath: Self.binary.path) else {
            throw XCTSkip("htsatd binary not found at \(Self.binary.path): build it first (swift build --build-tests)")
        }
        process.executableURL = Self.binary
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        for (k, v) in extra { env[k] = v }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        if let stdin { process.standardInput = stdin }
        try process.run()
    }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// Waits for exit; kills and fails after `timeout` seconds so a hang can never stall the suite.
    @discardableResult
    func wait(timeout: Double, file: StaticString = #filePath, line: UInt = #line) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTFail("htsatd did not exit within \(timeout) s; stderr:\n\(stderr)", file: file, line: line)
        }
        return process.terminationStatus
    }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        usleep(50_000)
    }
    return condition()
}

/// JSON objects of the lines in `text` (non-JSON lines are skipped).
func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap {
        (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
    }
}

/// The samples of a Prometheus text file as the reference parser (python3-prometheus-client) reads them, keyed
/// `name{labels as sorted JSON}`, e.g. `htsatd_windows_total{}`; fails the test if the parser rejects the file.
func prometheusSamples(_ file: URL, file testFile: StaticString = #filePath, line: UInt = #line) throws -> [String: Double] {
    let (status, output) = try runTool("/usr/bin/python3", ["-c", """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = {}
        for family in text_string_to_metric_families(open(sys.argv[1]).read()):
            for s in family.samples:
                out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
        print(json.dumps(out))
        """, file.path])
    XCTAssertEqual(status, 0, "the reference parser rejects the file:\n\((try? String(contentsOf: file, encoding: .utf8)) ?? "")\n\(output)",
                   file: testFile, line: line)
    let json = output.split(separator: "\n").last.map { Data($0.utf8) } ?? Data()  // the last line: after any warnings
    return try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: Double], output, file: testFile, line: line)
}

/// A connected Unix stream socket client that reads lines on demand.
final class SocketClient {
    let fd: Int32
    private var buffer = [UInt8]()

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard withUnixAddress(path, { connect(fd, $0, $1) }) == 0 else {
            close(fd)
            throw NSError(domain: "connect", code: Int(errno))
        }
    }

    deinit { close(fd) }

    /// Reads lines until `predicate` matches one or `timeout` passes; returns every line read.
    func readLines(timeout: Double, until predicate: ([String: Any]) -> Bool) -> [[String: Any]] {
        var lines: [[String: Any]] = []
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            buffer += chunk[0..<n]
            while let nl = buffer.firstIndex(of: 10) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                if let obj = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] {
                    lines.append(obj)
                    if predicate(obj) { return lines }
                }
            }
        }
        return lines
    }
}

/// Calls `body` with a `sockaddr_un` for `path` (truncated to fit) and its length.
func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
    }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// A mono float32 WAV file's bytes, for streams the tests assemble from fixture clips.
func floatWAV(_ samples: [Float], rate: Int) -> Data {
    func le<T: FixedWidthInteger>(_ v: T) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
    let bytes = samples.count * 4
    var d = Data("RIFF".utf8) + le(UInt32(36 + bytes)) + Data("WAVEfmt ".utf8)
    d += le(UInt32(16)) + le(UInt16(3)) + le(UInt16(1)) + le(UInt32(rate)) + le(UInt32(rate * 4)) + le(UInt16(4)) + le(UInt16(32))
    d += Data("data".utf8) + le(UInt32(bytes))
    samples.withUnsafeBytes { d += Data($0) }
    return d
}

/// Daemon end-to-end tests: a fresh temporary directory per test, the fixture detector, ALSA `file` devices.
class DaemonTestCase: XCTestCase {
    /// This test's own directory, removed afterwards.
    var dir: URL!

    override func setUpWithError() throws { dir = try Fixtures.temporaryDirectory("htsatd-\(type(of: self))") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// The fixture detector and the AudioSet labels file.
    func detectorArguments() throws -> [String] {
        ["--model", try Fixtures.require("detector/detector.ckpt").path,
         "--labels", try Fixtures.require("audioset/class_labels_indices.csv").path]
    }

    /// An asound.conf in `dir` whose PCM `name` captures `samples` (float32 mono) through the `file` plugin over
    /// `null`, unpaced unless the daemon gets `--pace-realtime`; returns the file for ALSA_CONFIG_PATH.
    func alsaFileDevice(_ name: String, samples: [Float]) throws -> URL {
        let raw = dir.appendingPathComponent("\(name).f32")
        try samples.withUnsafeBytes { try Data($0).write(to: raw) }
        let conf = dir.appendingPathComponent("asound.conf")
        try ("</usr/share/alsa/alsa.conf>\npcm.\(name) { type file; slave.pcm \"null\"; file \"/dev/null\"; infile \"\(raw.path)\"; format \"raw\" }\n")
            .write(to: conf, atomically: true, encoding: .utf8)
        return conf
    }
}
