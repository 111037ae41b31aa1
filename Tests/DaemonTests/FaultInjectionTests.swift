import AudioCapture
import Foundation
import TestSupport
import XCTest

/// The daemon on a capture device that fails for real: the fault-injecting ALSA plugin (Tests/ALSAFaultPlugin) plays
/// the dog-and-siren fixture stream in real time and, between its annotated events, overruns three times, is
/// suspended, gives short reads, is unplugged, and stalls twice (3 s: it carries on by itself; 6 s: capture gives up
/// on it after 5 s and reopens it).
final class FaultInjectionTests: DaemonTestCase {
    func testDaemonRecoversFromDeviceFaultsCountsThemAndStillFindsTheEvents() throws {
        let stream = "dog_siren_32k"
        let samples = try AudioFileReader.readAll(path: try Fixtures.require("detector/streams/\(stream).wav").path, targetRate: 32000)
        let annotations = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.require(
            "detector/streams/\(stream).events.json"))) as? [String: Any])?["events"] as? [[String: Any]])
        // Annotated: bark 8.1-10.5 s, siren 24-30 s, bark 44-46.1 s.
        let faults = "xrun@12:0.3,xrun@12.8:0.3,xrun@13.6:0.3,suspend@15:1,short@18:2,unplug@33:1.5,stall@38:3,stall@50:6"
        let pcm = try FaultPCM("faulty", samples: samples, faults: faults, in: dir)
        let metrics = dir.appendingPathComponent("htsatd.prom")
        let p = try DaemonProcess(try detectorArguments() + [
            "--device", "faulty", "--events", "dog_bark,siren,speech", "--threshold", "0.6", "--off-threshold", "0.4",
            "--stats-interval", "2", "--metrics-file", metrics.path,
        ], in: dir, environment: ["ALSA_CONFIG_PATH": pcm.config.path])
        // The last bark's stop line comes about the settle time (9 s) after its end, and after the long stall's reopen.
        XCTAssertTrue(eventually(timeout: 90) {
            !p.process.isRunning || (pcm.counters["opens"] ?? 0) >= 3
                && jsonLines(p.stdout).contains { $0["type"] as? String == "stop" && ($0["end"] as? Double ?? 0) > 44 }
        }, "stdout:\n\(p.stdout)\nstderr:\n\(p.stderr)")
        XCTAssertTrue(p.process.isRunning, "the daemon survives every fault: \(p.stderr)")
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 20), 0, p.stderr)
        let plugin = pcm.counters

        // Every fault was applied (the schedule ran), and the daemon counted what it saw.
        for (kind, count) in ["xrun": 3.0, "suspend": 1, "short": 1, "unplug": 1, "stall": 2] {
            XCTAssertEqual(plugin[kind], count, "\(kind): \(plugin)")
        }
        XCTAssertGreaterThan(plugin["short_reads"] ?? 0, 10, "reads returned fewer frames than asked")
        let m = try prometheusSamples(metrics)
        let overruns = (plugin["xrun"] ?? 0) + (plugin["natural_xruns"] ?? 0)
        XCTAssertEqual(m["htsatd_capture_overruns_total{}"], overruns, "\(m)")
        XCTAssertEqual(m["htsatd_device_reconnects_total{}"], 2, "the unplug and the long stall: \(m)")
        XCTAssertEqual(plugin["opens"], 3)
        XCTAssertEqual(m["htsatd_windows_skipped_total{}"], 0, "windows over filled-in silence are not inference falling behind")
        let gap = m["htsatd_capture_gap_seconds_total{}"] ?? 0
        XCTAssertEqual(gap, plugin["lost_seconds"] ?? 0, accuracy: 0.3, "the audio the device lost was filled")
        func lastStat(_ key: String) -> Double? {
            p.stderr.components(separatedBy: " \(key)=").last.flatMap { Double($0.prefix { $0.isNumber }) }
        }
        XCTAssertEqual(lastStat("overruns_total"), overruns, "the stats line")
        XCTAssertEqual(lastStat("reconnects"), 2, "the stats line")
        // Three overruns within 1.6 s make one warning; the suspend has its own.
        let stderrLines = p.stderr.split(separator: "\n")
        XCTAssertEqual(stderrLines.filter { $0.contains("overrun on 'faulty'") }.count, 1, p.stderr)
        XCTAssertEqual(stderrLines.filter { $0.contains("'faulty' was suspended") }.count, 1, p.stderr)
        XCTAssertFalse(p.stderr.contains("fell behind"), p.stderr)

        // The events are found where they are annotated (the tolerances of EndToEndTests), and after the filled gaps
        // stream seconds are still wall-clock seconds since the device's first sample.
        let lines = jsonLines(p.stdout)
        func number(_ line: [String: Any], _ key: String) -> Double { line[key] as? Double ?? .nan }
        let stops = lines.filter { $0["type"] as? String == "stop" }
        var matched: Set<Int> = []
        for annotation in annotations {
            let event = annotation["event"] as? String ?? "", start = number(annotation, "start"), end = number(annotation, "end")
            let candidates = stops.filter {
                $0["event"] as? String == event && number($0, "start") <= end + 1.5 && number($0, "end") >= start - 1.5
            }
            guard let found = candidates.min(by: { abs(number($0, "start") - start) < abs(number($1, "start") - start) }) else {
                XCTFail("missed \(event) at \(start)-\(end); detected \(stops)")
                continue
            }
            matched.insert(found["id"] as? Int ?? -1)
            let startError = number(found, "start") - start, endError = number(found, "end") - end
            print(String(format: "after faults: %@ %.3f-%.3f detected %.2f-%.2f, start error %+.2f s, end error %+.2f s",
                         event, start, end, number(found, "start"), number(found, "end"), startError, endError))
            XCTAssertLessThanOrEqual(abs(startError), 1.5, "\(event) start")
            XCTAssertLessThanOrEqual(abs(endError), 2.0, "\(event) end")
        }
        XCTAssertLessThanOrEqual(stops.filter { !matched.contains($0["id"] as? Int ?? -1) && number($0, "duration") > 1 }.count, 1,
                                 "spurious: \(stops)")
        let epoch = try XCTUnwrap(plugin["epoch_real"]) / 1e9
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var worst = 0.0
        for line in lines {
            let seconds = number(line, line["type"] as? String == "start" ? "start" : "end")
            let time = try XCTUnwrap(iso.date(from: line["time"] as? String ?? ""), "\(line)")
            let offset = time.timeIntervalSince1970 - epoch - seconds
            worst = max(worst, abs(offset))
            XCTAssertEqual(offset, 0, accuracy: 0.3, "time \(line["time"]!) is not the device's wall clock at \(seconds) s")
        }
        print(String(format: "after faults: gap filled %.2f s (the device lost %.2f s), overruns %.0f, reconnects %.0f, "
                     + "worst event time vs wall clock %.3f s", gap, plugin["lost_seconds"] ?? -1, overruns,
                     m["htsatd_device_reconnects_total{}"] ?? -1, worst))
    }
}
