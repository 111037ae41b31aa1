import AudioCapture
import Detection
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `htsatd enroll` and custom events, end to end through the binary, on material made from Debian-package sounds
/// and espeak-ng by scripts/enroll-material.py: a target (a paper crumple) the fixture detector's trained outputs do
/// not fire on, near misses and speech as distractors, and two held-out annotated 60-s streams (other gains, one in a
/// reverberant room).
final class EnrollTests: DaemonTestCase {
    /// The material, made once for the class (about 8 s).
    private static var materialDirectory: URL?

    private func material() throws -> URL {
        if let made = Self.materialDirectory { return made }
        _ = try Fixtures.require("detector/detector.ckpt")
        for need in ["/usr/bin/espeak-ng", "/usr/share/sounds/freedesktop/stereo/trash-empty.oga"] where !FileManager.default.fileExists(atPath: need) {
            throw XCTSkip("\(need) is missing: run scripts/install-deps.sh (espeak-ng, sound-theme-freedesktop)")
        }
        let out = try Fixtures.temporaryDirectory("htsatd-enroll-material")
        let script = Fixtures.packageRoot.appendingPathComponent("scripts/enroll-material.py").path
        let made = try runTool("/usr/bin/python3", [script, out.path])
        XCTAssertEqual(made.status, 0, made.output)
        Self.materialDirectory = out
        return out
    }

    override class func tearDown() {
        if let made = materialDirectory { try? FileManager.default.removeItem(at: made) }
        super.tearDown()
    }

    private var positives: [String] { get throws { try (1...5).map { try material().appendingPathComponent("positive-\($0).wav").path } } }

    /// Runs `htsatd ARGS` to completion: status, stdout, stderr.
    private func htsatd(_ arguments: [String], timeout: Double = 240) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = try DaemonProcess(arguments, in: dir)
        let status = p.wait(timeout: timeout)
        return (status, p.stdout, p.stderr)
    }

    /// Enrols `crumple` from the five positives and the room negative; returns the event file.
    private func enroll(name: String = "crumple", extra: [String] = []) throws -> (file: URL, report: String) {
        let file = dir.appendingPathComponent("\(name).json")
        let negative = try material().appendingPathComponent("negative-room.wav").path
        let run = try htsatd(["enroll", "--model", try Fixtures.require("detector/detector.ckpt").path, "--name", name,
                              "--negative", negative, "--output", file.path] + extra + (try positives))
        XCTAssertEqual(run.status, 0, run.stderr)
        return (file, run.stdout)
    }

    private func annotations(_ stream: Int) throws -> [[String: Any]] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: try material().appendingPathComponent("stream-\(stream).events.json"))) as! [[String: Any]]
    }

    // MARK: - The material is new to the model

    /// The trained outputs (speech, dog, siren, alarm) stay silent on every annotated occurrence of the target, so
    /// whatever finds it is the enrolled event.
    func testTrainedOutputsDoNotFireOnTheTarget() throws {
        for stream in 1...2 {
            let wav = try material().appendingPathComponent("stream-\(stream).wav").path
            let run = try htsatd(try detectorArguments() + ["--input", wav, "--events", "dog_bark,siren,smoke_alarm,speech",
                                                           "--threshold", "0.6", "--off-threshold", "0.4"])
            XCTAssertEqual(run.status, 0, run.stderr)
            let stops = jsonLines(run.stdout).filter { $0["type"] as? String == "stop" && $0["confirmed"] == nil }
            for truth in try annotations(stream) {
                let (a, b) = (truth["start"] as! Double, truth["end"] as! Double)
                let overlapping = stops.filter { ($0["start"] as! Double) < b && ($0["end"] as! Double) > a }
                XCTAssertTrue(overlapping.isEmpty, "stream \(stream): trained outputs fire on the target at \(a)-\(b): \(overlapping)")
            }
        }
    }

    // MARK: - Detection

    /// The issue's bar on the held-out streams: every occurrence found with start within 1.5 s and end within 2.0 s,
    /// at most one spurious event longer than 1 s per stream; the lines keep the event-line contract (checked
    /// against the settled-only run), the log file holds the stdout lines, and a built-in event runs alongside.
    func testEnrolledEventIsFoundInHeldOutStreams() throws {
        let (file, report) = try enroll()
        XCTAssertTrue(report.contains("separation: good"), report)
        var found = 0, total = 0, spuriousCount = 0
        var startErrors: [Double] = [], endErrors: [Double] = []
        for stream in 1...2 {
            let wav = try material().appendingPathComponent("stream-\(stream).wav").path
            let log = dir.appendingPathComponent("stream-\(stream).log")
            let common = try detectorArguments() + ["--input", wav, "--custom-events", file.path, "--events", "crumple,speech"]
            let run = try htsatd(common + ["--log-file", log.path])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(try String(contentsOf: log, encoding: .utf8), run.stdout, "the log file holds the stdout lines")
            let lines = jsonLines(run.stdout)
            for line in lines where line["event"] as? String == "crumple" {
                XCTAssertEqual((line["labels"] as? [[String: Any]])?.map { $0["label"] as? String }, ["crumple"], "\(line)")
            }
            let stops = lines.filter { $0["type"] as? String == "stop" && $0["event"] as? String == "crumple" && $0["confirmed"] == nil }
            var matched = Set<Int>()
            for truth in try annotations(stream) {
                total += 1
                let (start, end) = (truth["start"] as! Double, truth["end"] as! Double)
                guard let hit = stops.first(where: { abs(($0["start"] as! Double) - start) <= 1.5 && abs(($0["end"] as! Double) - end) <= 2.0 }) else {
                    XCTFail("stream \(stream): crumple \(start)-\(end) not found in \(stops)")
                    continue
                }
                found += 1
                matched.insert(hit["id"] as! Int)
                startErrors.append(abs((hit["start"] as! Double) - start))
                endErrors.append(abs((hit["end"] as! Double) - end))
            }
            let spurious = stops.filter { !matched.contains($0["id"] as! Int) && ($0["duration"] as! Double) > 1 }
            spuriousCount += spurious.count
            XCTAssertLessThanOrEqual(spurious.count, 1, "stream \(stream): spurious \(spurious)")

            let reference = try htsatd(common + ["--onset-settle", "9"])
            XCTAssertEqual(reference.status, 0, reference.stderr)
            let contract = EventContract(minDuration: ["crumple": 0.3, "speech": 0.3], tolerance: ["crumple": 1, "speech": 1], cell: 0.01)
            let result = contract.check(try detectionEvents(run.stdout), reference: try detectionEvents(reference.stdout))
            XCTAssertEqual(result.violations, [], "stream \(stream)")
        }
        print(String(format: "enroll: found %d/%d, spurious > 1 s: %d, start error mean %.2f max %.2f s, end error mean %.2f max %.2f s",
                     found, total, spuriousCount, startErrors.reduce(0, +) / Double(max(startErrors.count, 1)), startErrors.max() ?? 0,
                     endErrors.reduce(0, +) / Double(max(endErrors.count, 1)), endErrors.max() ?? 0))
    }

    /// Live capture (real alsa-lib, the `file` plugin paced to real time) gives the same crumple events as file mode
    /// on the same 30 s, and the socket carries them too.
    func testLiveModeAgreesWithFileMode() throws {
        let (file, _) = try enroll()
        var samples = try AudioFileReader.readAll(path: try material().appendingPathComponent("stream-1.wav").path, targetRate: 32000)
        samples.removeSubrange((30 * 32000)...)
        let wav = dir.appendingPathComponent("first30.wav")
        try floatWAV(samples, rate: 32000).write(to: wav)
        let args = try detectorArguments() + ["--custom-events", file.path, "--events", "crumple"]
        let offline = try htsatd(args + ["--input", wav.path])
        XCTAssertEqual(offline.status, 0, offline.stderr)
        let expected = jsonLines(offline.stdout).filter { $0["type"] as? String == "stop" && $0["confirmed"] == nil }
        XCTAssertEqual(expected.count, 2, offline.stdout)

        // 30 s of audio, then 12 s of the plugin's silence after its end, so the second event settles.
        let conf = try alsaFileDevice("crumplein", samples: samples + [Float](repeating: 0, count: 12 * 32000))
        let sock = dir.appendingPathComponent("events.sock").path
        let p = try DaemonProcess(args + ["--device", "crumplein", "--pace-realtime", "--socket", sock], in: dir,
                                  environment: ["ALSA_CONFIG_PATH": conf.path])
        XCTAssertTrue(eventually(timeout: 30) { FileManager.default.fileExists(atPath: sock) }, p.stderr)
        let client = try SocketClient(path: sock)
        var seen = 0
        let socketLines = client.readLines(timeout: 60) { line in
            if line["type"] as? String == "stop" && line["confirmed"] == nil { seen += 1 }
            return seen == expected.count
        }
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 20), 0, p.stderr)
        let live = jsonLines(p.stdout).filter { $0["type"] as? String == "stop" && $0["confirmed"] == nil }
        XCTAssertEqual(live.count, expected.count, "live: \(p.stdout)\nfile: \(offline.stdout)")
        for (l, f) in zip(live, expected) {
            // Live windows fall at other instants of the stream than file mode's, so the grid may differ by a hop.
            XCTAssertEqual(l["start"] as! Double, f["start"] as! Double, accuracy: 1.0, "live \(l) file \(f)")
            XCTAssertEqual(l["end"] as! Double, f["end"] as! Double, accuracy: 1.0, "live \(l) file \(f)")
        }
        XCTAssertEqual(socketLines.filter { $0["event"] as? String == "crumple" && $0["type"] as? String == "stop" }.count,
                       expected.count, "the socket carried the custom events: \(socketLines)")
    }

    // MARK: - Using it

    /// `htsatd events` lists custom events, `event_settings` overrides their thresholds like any other event's, and a
    /// mistyped name suggests the custom one.
    func testListingSettingsAndSuggestions() throws {
        let (file, _) = try enroll()
        let listing = try htsatd(["events", "--custom-events", file.path])
        XCTAssertEqual(listing.status, 0, listing.stderr)
        XCTAssertTrue(listing.stdout.contains("Custom events"), listing.stdout)
        XCTAssertTrue(listing.stdout.contains("crumple"), listing.stdout)

        let wav = try material().appendingPathComponent("stream-1.wav").path
        // Longer than any occurrence (~2.6 s): no crumple event survives.
        let config = dir.appendingPathComponent("config.json")
        try """
        { "custom_events": ["\(file.lastPathComponent)"], "events": ["crumple"],
          "event_settings": { "crumple": { "min_duration": 4.0 } } }
        """.write(to: config, atomically: true, encoding: .utf8)
        let strict = try htsatd(try detectorArguments() + ["--config", config.path, "--input", wav])
        XCTAssertEqual(strict.status, 0, strict.stderr)
        XCTAssertFalse(strict.stdout.contains("\"crumple\""), "min_duration 4 s removes every crumple: \(strict.stdout)")

        let typo = try htsatd(try detectorArguments() + ["--custom-events", file.path, "--events", "crumpel", "--input", wav])
        XCTAssertNotEqual(typo.status, 0)
        XCTAssertTrue(typo.stderr.contains("unknown event \"crumpel\"") && typo.stderr.contains("crumple"), typo.stderr)
    }

    /// Custom events reach every output like built-in ones: MQTT (event payloads = stdout, ON/OFF states, a Home
    /// Assistant discovery config) and event clips (one per confirmed event, named after it).
    func testCustomEventReachesMQTTAndClips() throws {
        let (file, _) = try enroll()
        let broker = try Broker(in: dir)
        try broker.start()
        let sub = try Subscriber(port: broker.port, topics: ["htsatd/#", "homeassistant/#"], in: dir)
        sub.waitUntilSubscribed(port: broker.port, probeTopic: "htsatd/probe")
        let clips = dir.appendingPathComponent("clips")
        let wav = try material().appendingPathComponent("stream-1.wav").path
        let run = try htsatd(try detectorArguments() + [
            "--input", wav, "--custom-events", file.path, "--events", "crumple", "--clips", clips.path,
            "--mqtt", "mqtt://127.0.0.1:\(broker.port)", "--mqtt-node", "enrol", "--ha-discovery"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(eventually(timeout: 10) { sub.payloads("htsatd/enrol/status").last == "offline" }, "\(sub.messages)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(sub.payloads("htsatd/enrol/events"), lines, "MQTT event payloads are stdout's lines")
        let starts = jsonLines(run.stdout).filter { $0["type"] as? String == "start" }.count
        XCTAssertGreaterThanOrEqual(starts, 4)
        XCTAssertEqual(sub.payloads("htsatd/enrol/audio/crumple").filter { $0 == "ON" }.count, starts)
        XCTAssertTrue(sub.messages.contains { $0.topic.hasPrefix("homeassistant/") && $0.topic.contains("crumple") }, "\(sub.messages.map(\.topic))")
        let confirmed = jsonLines(run.stdout).filter { $0["type"] as? String == "stop" && $0["confirmed"] == nil }.count
        let written = FileManager.default.enumerator(atPath: clips.path)?.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".flac") && $0.contains("crumple-") } ?? []
        XCTAssertEqual(written.count, confirmed, "one clip per confirmed event: \(written)")
    }

    // MARK: - Robustness

    /// Bad input to `enroll`: each gets one clear error line and a non-zero exit, and writes no file.
    func testEnrollRejectsBadInputClearly() throws {
        let model = try Fixtures.require("detector/detector.ckpt").path
        let positives = try self.positives
        let silent = dir.appendingPathComponent("silent.wav"), short = dir.appendingPathComponent("short.wav")
        let long = dir.appendingPathComponent("long.wav")
        try floatWAV([Float](repeating: 0, count: 3 * 32000), rate: 32000).write(to: silent)
        try floatWAV((0..<16000).map { sinf(Float($0) * 0.3) * 0.3 }, rate: 32000).write(to: short)
        try floatWAV((0..<(15 * 16000)).map { sinf(Float($0) * 0.3) * 0.3 }, rate: 16000).write(to: long)
        let output = dir.appendingPathComponent("out.json")
        let cases: [(args: [String], expect: String)] = [
            ([], "no positive examples"),
            (Array(positives.prefix(2)), "give at least 3 recordings"),
            (positives.prefix(3) + [silent.path], "silent.wav is silent"),
            (positives.prefix(3) + [short.path], "short.wav is 0.50 s long"),
            (positives.prefix(3) + [long.path], "long.wav is 15.0 s long"),
            (positives.prefix(3) + [dir.appendingPathComponent("absent.wav").path], "absent.wav"),
        ]
        for (extra, expect) in cases {
            let run = try htsatd(["enroll", "--model", model, "--name", "crumple", "--output", output.path] + extra)
            XCTAssertEqual(run.status, 1, "\(expect): \(run.stdout)")
            XCTAssertTrue(run.stderr.contains(expect), "expected \"\(expect)\" in: \(run.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        }
        for (name, expect) in [("dog_bark", "the built-in event \"dog_bark\""), ("bark", "the AudioSet label \"Bark\""),
                               ("desed", "the built-in event set"), ("Crumple", "lowercase letters, digits and _ (e.g. \"crumple\")"),
                               ("my-sound", "(e.g. \"my_sound\")")] {
            let run = try htsatd(["enroll", "--model", model, "--name", name, "--output", output.path] + positives)
            XCTAssertEqual(run.status, 1)
            XCTAssertTrue(run.stderr.contains(expect), "\(name): expected \"\(expect)\" in: \(run.stderr)")
        }
        // Another rate and channel count is resampled and downmixed, not refused.
        let samples = try AudioFileReader.readAll(path: positives[0], targetRate: 48000)
        let resampled = dir.appendingPathComponent("positive-48k.wav")
        try floatWAV(samples, rate: 48000).write(to: resampled)
        let run = try htsatd(["enroll", "--model", model, "--name", "crumple", "--output", output.path, resampled.path] + positives.dropFirst())
        XCTAssertEqual(run.status, 0, run.stderr)
    }

    /// An event file round-trips exactly; a damaged file, a newer version and another model's file are refused with
    /// errors that say what to do.
    func testEventFileRoundTripsAndBadFilesAreRefused() throws {
        let (file, _) = try enroll()
        let event = try CustomEvent.load(contentsOf: file.path)
        let copy = dir.appendingPathComponent("copy.json")
        try event.write(to: copy.path)
        XCTAssertEqual(try CustomEvent.load(contentsOf: copy.path), event)
        XCTAssertEqual(event.name, "crumple")
        XCTAssertEqual(event.version, CustomEvent.currentVersion)

        let wav = try material().appendingPathComponent("stream-1.wav").path
        func refused(_ text: String, _ expect: String, model: [String]? = nil, line: UInt = #line) throws {
            let bad = dir.appendingPathComponent("bad.json")
            try text.write(to: bad, atomically: true, encoding: .utf8)
            let run = try htsatd((try model ?? detectorArguments()) + ["--custom-events", bad.path, "--events", "crumple", "--input", wav])
            XCTAssertEqual(run.status, 1, line: line)
            XCTAssertTrue(run.stderr.contains(expect), "expected \"\(expect)\" in: \(run.stderr)", line: line)
        }
        let good = try String(contentsOf: file, encoding: .utf8)
        try refused(String(good.prefix(good.count / 2)), "is damaged or not a custom event file")
        try refused("{\"format\": \"something-else\"}", "is not \"htsatd-custom-event\"")
        try refused(good.replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 99"), "has version 99")
        try refused(good.replacingOccurrences(of: "\"float32_base64\" : \"", with: "\"float32_base64\" : \"!!"), "float32_base64")
        let tiny = try Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path
        try refused(good, "was enrolled with another model", model: ["--model", tiny])
        let missing = try htsatd(try detectorArguments() + ["--custom-events", dir.appendingPathComponent("none.json").path,
                                                           "--events", "crumple", "--input", wav])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("none.json cannot be read"), missing.stderr)
    }

    /// A stdout JSON line as the tracker's typed event (for the contract checker).
    private func detectionEvents(_ text: String) throws -> [DetectionEvent] {
        jsonLines(text).compactMap { line in
            guard let type = line["type"] as? String, let kind = DetectionEvent.Kind(rawValue: type) else { return nil }
            let score = (line["score"] ?? line["peak_score"]) as? Double ?? 0
            var event = DetectionEvent(kind: kind, event: line["event"] as! String, id: line["id"] as! Int, start: line["start"] as! Double,
                                       end: line["end"] as? Double, score: Float(score), labels: [])
            event.confirmed = line["confirmed"] as? Bool ?? true
            return event
        }
    }
}
