import AudioCapture
import Clips
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `--metrics-file`: Prometheus text format that the reference parser (python3-prometheus-client) reads, with counters
/// that agree with the run.
final class MetricsTests: DaemonTestCase {
    /// One file-mode run with clips and MQTT (a real mosquitto) on: windows, events, clips and MQTT messages as counted
    /// against what the run did, retention's deletions against what the clip directory held at start-up.
    func testMetricsFileParsesAndAgreesWithTheRun() throws {
        let metrics = dir.appendingPathComponent("htsatd.prom")
        let wav = try Fixtures.require("detector/streams/dog_siren_32k.wav").path
        let broker = try Broker(in: dir)
        try broker.start()
        let sub = try Subscriber(port: broker.port, topics: ["htsatd/#", "probe/#"], in: dir)
        sub.waitUntilSubscribed(port: broker.port, probeTopic: "probe/metrics")
        // At start-up retention deletes a clip for its age and, to get within max_bytes, a big (sparse) recent one.
        let clips = dir.appendingPathComponent("clips")
        let old = clips.appendingPathComponent("2020-01-01/dog_bark-20200101T000000Z-1.flac")
        let big = clips.appendingPathComponent(ClipName(event: "siren", start: Date(), id: 99, ext: "flac").relativePath)
        for (url, bytes) in [(old, 100), (big, 6_000_000)] {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: nil))
            XCTAssertEqual(truncate(url.path, off_t(bytes)), 0)
        }
        let config = dir.appendingPathComponent("config.json")
        try JSONSerialization.data(withJSONObject: ["clips": ["dir": clips.path, "max_age_days": 30, "max_bytes": 5_000_000]]).write(to: config)
        let p = try DaemonProcess(try detectorArguments() + ["--input", wav, "--config", config.path,
                                   "--events", "dog_bark,siren,speech", "--threshold", "0.6", "--off-threshold", "0.4",
                                   "--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", "metrics",
                                   "--metrics-file", metrics.path], in: dir)
        XCTAssertEqual(p.wait(timeout: 120), 0, p.stderr)
        XCTAssertTrue(eventually(timeout: 10) { sub.payloads("htsatd/metrics/status").last == "offline" }, "\(sub.messages)")
        let received = sub.messages.filter { $0.topic.hasPrefix("htsatd/") }.count
        let clipFiles = (FileManager.default.enumerator(atPath: clips.path)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".flac") }
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
        XCTAssertEqual(samples["htsatd_capture_suspends_total{}"], 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: metrics.path + ".tmp"))

        // The final write comes after the outputs stopped: every message the subscriber got, `offline` included.
        XCTAssertEqual(samples["htsatd_mqtt_messages_published_total{}"], Double(received), "\(sub.messages)")
        XCTAssertGreaterThan(received, 10)
        XCTAssertEqual(samples["htsatd_mqtt_messages_dropped_total{}"], 0)
        XCTAssertEqual(samples["htsatd_mqtt_reconnects_total{}"], 0)
        XCTAssertEqual(samples["htsatd_mqtt_queued_messages{}"], 0)
        XCTAssertEqual(samples["htsatd_mqtt_connected{}"], 0, "disconnected at exit")

        XCTAssertEqual(samples["htsatd_clips_written_total{}"], Double(clipFiles.count), "\(clipFiles)")
        XCTAssertEqual(clipFiles.count, lines.filter { $0["clip"] != nil }.count)
        XCTAssertGreaterThan(clipFiles.count, 0)
        XCTAssertEqual(samples["htsatd_clips_failed_total{}"], 0)
        XCTAssertEqual(samples["htsatd_clip_files_deleted_total{}"], 2)
        XCTAssertEqual(samples["htsatd_clip_bytes_deleted_total{}"], 6_000_100)
        XCTAssertEqual(samples["htsatd_clip_budget_evictions_total{}"], 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: big.path))
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
            XCTAssertFalse(ok.body.contains("htsatd_mqtt_") || ok.body.contains("htsatd_clip"), "MQTT and clip metrics only when on")
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
