import AudioCapture
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `--metrics-file`: Prometheus text format that the reference parser (python3-prometheus-client) reads, with counters
/// that agree with the run.
final class MetricsTests: DaemonTestCase {
    func testMetricsFileParsesAndAgreesWithTheRun() throws {
        let metrics = dir.appendingPathComponent("htsatd.prom")
        let wav = try Fixtures.require("detector/streams/dog_siren_32k.wav").path
        let p = try DaemonProcess(["--model", try Fixtures.require("detector/detector.ckpt").path, "--input", wav,
                                   "--events", "dog_bark,siren,speech", "--threshold", "0.6", "--off-threshold", "0.4",
                                   "--metrics-file", metrics.path], in: dir)
        XCTAssertEqual(p.wait(timeout: 120), 0, p.stderr)
        let lines = jsonLines(p.stdout)
        var starts: [String: Int] = ["dog_bark": 0, "siren": 0, "speech": 0]
        for line in lines where line["type"] as? String == "start" { starts[line["event"] as! String, default: 0] += 1 }
        let windows = Int(p.stderr.components(separatedBy: "windows=").dropFirst().first?.prefix { $0.isNumber } ?? "") ?? -1

        let samples = try prometheusSamples(metrics)
        XCTAssertEqual(samples["htsatd_windows_total{}"], Double(windows), "windows as the run reported them: \(samples)")
        XCTAssertGreaterThan(windows, 50)
        for (event, count) in starts {
            XCTAssertEqual(samples["htsatd_events_total{\"event\": \"\(event)\"}"], Double(count), "\(event): \(samples)")
        }
        XCTAssertGreaterThan(starts.values.reduce(0, +), 0)
        XCTAssertEqual(samples["htsatd_inference_seconds_count{}"], Double(windows))
        XCTAssertEqual(samples["htsatd_windows_skipped_total{}"], 0)
        XCTAssertGreaterThan(samples["htsatd_resident_memory_bytes{}"] ?? 0, 1_000_000)
        XCTAssertGreaterThan(samples["htsatd_process_cpu_seconds_total{}"] ?? 0, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: metrics.path + ".tmp"))
    }

    func testUnwritableMetricsFileFailsStartUpNamingIt() throws {
        let p = try DaemonProcess(["--model", try Fixtures.require("detector/detector.ckpt").path,
                                   "--input", try Fixtures.require("detector/streams/dog_siren_32k.wav").path,
                                   "--events", "siren", "--metrics-file", "/nonexistent-dir/htsatd.prom"], in: dir)
        XCTAssertEqual(p.wait(timeout: 60), 1)
        XCTAssertTrue(p.stderr.contains("/nonexistent-dir/htsatd.prom"), p.stderr)
    }

    /// `--metrics-listen`: GET /metrics over loopback TCP and over a Unix socket, live; other paths get 404.
    func testMetricsListenServesTheTextFormat() throws {
        let conf = try alsaFileDevice("testin", samples: AudioFileReader.readAll(
            path: try Fixtures.require("detector/streams/dog_siren_32k.wav").path, targetRate: 32000))
        let port = try freeLoopbackPort()
        let sock = dir.appendingPathComponent("metrics.sock").path
        func curl(_ args: [String]) throws -> (status: Int32, body: String) {
            let (status, output) = try runTool("/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "--max-time", "5"] + args)
            return (status, output)
        }
        for listen in ["127.0.0.1:\(port)", "unix:\(sock)"] {
            let p = try DaemonProcess(["--model", try Fixtures.require("detector/detector.ckpt").path, "--device", "testin",
                                       "--pace-realtime", "--events", "siren", "--metrics-listen", listen],
                                      in: dir, environment: ["ALSA_CONFIG_PATH": conf.path])
            XCTAssertTrue(eventually(timeout: 30) { p.stderr.contains("first window processed") }, p.stderr)
            let target = listen.hasPrefix("unix:") ? ["--unix-socket", sock, "http://localhost/metrics"] : ["http://127.0.0.1:\(port)/metrics"]
            let ok = try curl(target)
            XCTAssertEqual(ok.status, 0, listen)
            XCTAssertTrue(ok.body.hasSuffix("\n200"), ok.body)
            XCTAssertTrue(ok.body.contains("htsatd_windows_total") && ok.body.contains("htsatd_inference_seconds_bucket"), ok.body)
            let missing = try curl(listen.hasPrefix("unix:") ? ["--unix-socket", sock, "http://localhost/other"] : ["http://127.0.0.1:\(port)/other"])
            XCTAssertTrue(missing.body.hasSuffix("404"), missing.body)
            p.signal(SIGTERM)
            XCTAssertEqual(p.wait(timeout: 10), 0, p.stderr)
        }
        XCTAssertNotEqual(access(sock, F_OK), 0, "the metrics socket file is removed at exit")
    }

    private func freeLoopbackPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return UInt16(bigEndian: addr.sin_port)
    }
}
