import AudioCapture
import Foundation
import HTSAT
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end tests of the `htsatd` binary: file mode, live ALSA capture, the socket, signals and the tools.
final class CLITests: DaemonTestCase {
    // MARK: - File mode

    /// The issue's acceptance bar, through the real command line: every annotated event found, start within 1.5 s,
    /// end within 2.0 s, at most one spurious event (> 1 s) per stream. The 48 kHz stereo stream comes through stdin.
    func testFileModeFindsAnnotatedEventsOnBothStreams() throws {
        try assertFindsAnnotatedEvents(stream: "dog_siren_32k", viaStdin: false)
        try assertFindsAnnotatedEvents(stream: "alarm_speech_48k_stereo", viaStdin: true)
    }

    /// SIGTERM in file mode stops reading, closes open events with their stop lines and exits 0.
    func testFileModeSigtermClosesOpenEvents() throws {
        let wav = try Fixtures.require("detector/streams/alarm_speech_48k_stereo.wav")
        let p = try DaemonProcess(try detectorArguments() + ["--input", wav.path, "--events", "smoke_alarm,speech,siren",
                                                             "--threshold", "0.6", "--off-threshold", "0.4"], in: dir)
        XCTAssertTrue(eventually(timeout: 60) { p.stdout.contains("\"type\":\"start\"") }, p.stderr)
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 30), 0, p.stderr)
        XCTAssertEqual(p.process.terminationReason, .exit)
        let lines = jsonLines(p.stdout)
        let starts = Set(lines.filter { $0["type"] as? String == "start" }.map { $0["id"] as! Int })
        let stops = Set(lines.filter { $0["type"] as? String == "stop" }.map { $0["id"] as! Int })
        XCTAssertFalse(starts.isEmpty)
        XCTAssertEqual(starts, stops, "every started event got its stop: \(p.stdout)")
    }

    /// SIGTERM while file mode waits on a silent stdin pipe: the read wakes up, open events get their stop, exit 0.
    func testStdinPipeSigtermDoesNotHang() throws {
        let wav = try Data(contentsOf: try Fixtures.require("detector/streams/dog_siren_32k.wav"))
        let pipe = Pipe()
        let p = try DaemonProcess(try detectorArguments() + ["--input", "-", "--events", "dog_bark",
                                                             "--threshold", "0.6", "--off-threshold", "0.4"],
                                  in: dir, stdin: pipe.fileHandleForReading)
        // 44-byte header + 12 s of 16-bit mono at 32 kHz: the bark at 8 s starts, and the pipe then stays open and silent.
        pipe.fileHandleForWriting.write(wav.prefix(44 + 12 * 32000 * 2))
        XCTAssertTrue(eventually(timeout: 60) { p.stdout.contains("\"type\":\"start\"") }, p.stderr)
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 20), 0, p.stderr)
        let lines = jsonLines(p.stdout)
        XCTAssertEqual(lines.map { $0["type"] as! String }, ["start", "stop"], p.stdout)
        try? pipe.fileHandleForWriting.close()
    }

    /// The opt-in bfloat16 path still meets the same bar.
    func testBFloat16FileModeFindsAnnotatedEvents() throws {
        guard HTSATModel.supportsBFloat16 else { throw XCTSkip("this CPU has no AVX512-BF16; --bf16 is unavailable") }
        try assertFindsAnnotatedEvents(stream: "dog_siren_32k", viaStdin: false, extra: ["--bf16"])
    }

    private func assertFindsAnnotatedEvents(stream name: String, viaStdin: Bool, extra: [String] = [],
                                            file: StaticString = #filePath, line: UInt = #line) throws {
        let wav = try Fixtures.require("detector/streams/\(name).wav")
        let annotations = try JSONSerialization.jsonObject(
            with: Data(contentsOf: try Fixtures.require("detector/streams/\(name).events.json"))) as! [String: Any]
        let expected = annotations["events"] as! [[String: Any]]
        let log = dir.appendingPathComponent("\(name).log")
        let stdin = viaStdin ? try FileHandle(forReadingFrom: wav) : nil
        let p = try DaemonProcess(try detectorArguments() + [
            "--input", viaStdin ? "-" : wav.path, "--events", "dog_bark,siren,smoke_alarm,speech",
            "--threshold", "0.6", "--off-threshold", "0.4", "--log-file", log.path,
        ] + extra, in: dir, stdin: stdin)
        XCTAssertEqual(p.wait(timeout: 240), 0, p.stderr, file: file, line: line)
        let lines = jsonLines(p.stdout)
        XCTAssertEqual(try String(contentsOf: log, encoding: .utf8), p.stdout, "the log file holds the same lines as stdout",
                       file: file, line: line)
        let stops = lines.filter { $0["type"] as? String == "stop" }
        XCTAssertEqual(lines.count, 2 * stops.count, "every start has its stop: \(p.stdout)", file: file, line: line)
        var matched = Set<Int>()
        for truth in expected {
            let event = truth["event"] as! String
            let start = truth["start"] as! Double, end = truth["end"] as! Double
            let hit = stops.first {
                $0["event"] as? String == event && abs(($0["start"] as! Double) - start) <= 1.5
                    && abs(($0["end"] as! Double) - end) <= 2.0
            }
            XCTAssertNotNil(hit, "\(name): \(event) \(start)–\(end) not found in \(stops)", file: file, line: line)
            if let id = hit?["id"] as? Int { matched.insert(id) }
        }
        let spurious = stops.filter { !matched.contains($0["id"] as! Int) && ($0["duration"] as! Double) > 1 }
        XCTAssertLessThanOrEqual(spurious.count, 1, "\(name): spurious events \(spurious)", file: file, line: line)
    }

    // MARK: - Live mode through real alsa-lib

    /// A PCM that is absent at start (the daemon retries), then appears and feeds 20 s of the dog stream through the
    /// alsa-lib `file` plugin. Checks socket clients (including a late one that gets the open event), systemd
    /// notifications, SIGHUP log reopening and SIGTERM during an open event (its stop is written everywhere).
    func testLiveCaptureSocketSignalsAndSystemd() throws {
        let raw = dir.appendingPathComponent("stream.f32")
        var samples = try AudioFileReader.readAll(path: try Fixtures.require("detector/streams/dog_siren_32k.wav").path,
                                                  targetRate: 32000)
        samples.removeSubrange((20 * 32000)...)
        try samples.withUnsafeBytes { try Data($0).write(to: raw) }
        let conf = dir.appendingPathComponent("asound.conf")
        let base = "</usr/share/alsa/alsa.conf>\n"
        try base.write(to: conf, atomically: true, encoding: .utf8)

        let notify = try DatagramListener(path: dir.appendingPathComponent("notify").path)
        let sock = dir.appendingPathComponent("events.sock").path
        let log = dir.appendingPathComponent("events.log")
        let p = try DaemonProcess(try detectorArguments() + [
            "--device", "testin", "--pace-realtime", "--events", "dog_bark", "--threshold", "0.6",
            "--off-threshold", "0.4", "--settle", "3", "--socket", sock, "--log-file", log.path, "--stats-interval", "2",
        ], in: dir, environment: ["ALSA_CONFIG_PATH": conf.path, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "4000000"])

        XCTAssertTrue(eventually(timeout: 30) { FileManager.default.fileExists(atPath: sock) }, p.stderr)
        let client = try SocketClient(path: sock)
        XCTAssertTrue(eventually(timeout: 15) { p.stderr.contains("unavailable") }, "absent device is logged: \(p.stderr)")
        XCTAssertTrue(p.process.isRunning, "an absent device is retried, not fatal")

        // The device appears: a new config file (new inode, so alsa-lib re-reads it).
        let pcm = "pcm.testin { type file; slave.pcm \"null\"; file \"/dev/null\"; infile \"\(raw.path)\"; format \"raw\" }\n"
        let next = dir.appendingPathComponent("asound.conf.new")
        try (base + pcm).write(to: next, atomically: true, encoding: .utf8)
        XCTAssertEqual(rename(next.path, conf.path), 0)

        let seen = client.readLines(timeout: 45) { $0["type"] as? String == "start" }
        XCTAssertTrue(seen.contains { $0["type"] as? String == "status" && $0["state"] as? String == "device_unavailable" }, "\(seen)")
        XCTAssertTrue(seen.contains { $0["type"] as? String == "status" && $0["state"] as? String == "capturing" }, "\(seen)")
        guard let start = seen.last, start["type"] as? String == "start" else {
            return XCTFail("no start event on the socket: \(seen)\n\(p.stderr)")
        }
        XCTAssertEqual(start["event"] as? String, "dog_bark")
        XCTAssertEqual(start["start"] as! Double, 8.08, accuracy: 1.5)
        // Announced from the early read-out: ~2 s lag + min duration + up to a hop after the onset's wall-clock time.
        let onset = try XCTUnwrap(ISO8601DateFormatter.milliseconds.date(from: start["time"] as! String))
        XCTAssertLessThan(Date().timeIntervalSince(onset), 6.0, "start line latency")
        XCTAssertGreaterThan(Date().timeIntervalSince(onset), 0.0)

        // A late client first receives the event that is still open.
        let late = try SocketClient(path: sock)
        let replay = late.readLines(timeout: 5) { $0["type"] as? String == "start" }
        XCTAssertEqual(replay.last?["id"] as? Int, start["id"] as? Int)

        // logrotate: move the file away, SIGHUP, and the next lines go to a new file at the path.
        let rotated = dir.appendingPathComponent("events.log.1")
        XCTAssertEqual(rename(log.path, rotated.path), 0)
        p.signal(SIGHUP)
        XCTAssertTrue(eventually(timeout: 5) { p.stderr.contains("reopened log file") }, p.stderr)

        // SIGTERM while the event is open: its stop is written, the socket file removed, exit 0.
        p.signal(SIGTERM)
        let tail = client.readLines(timeout: 15) { $0["type"] as? String == "stop" }
        let status = p.wait(timeout: 20)
        XCTAssertEqual(status, 0, p.stderr)
        XCTAssertEqual(p.process.terminationReason, .exit, "exited, not killed by a signal")
        let stop = tail.last { $0["type"] as? String == "stop" }
        XCTAssertEqual(stop?["id"] as? Int, start["id"] as? Int, "stop for the open event on the socket: \(tail)")
        XCTAssertNotNil(stop?["end"] as? Double)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sock), "socket file removed on exit")
        let out = jsonLines(p.stdout)
        XCTAssertEqual(out.map { $0["type"] as! String }, ["start", "stop"], p.stdout)
        XCTAssertTrue(try String(contentsOf: rotated, encoding: .utf8).contains("\"type\":\"start\""))
        XCTAssertTrue(try String(contentsOf: log, encoding: .utf8).contains("\"type\":\"stop\""), "stop went to the reopened file")
        XCTAssertTrue(p.stderr.contains("real_time_factor"), "periodic stats on stderr: \(p.stderr)")

        let messages = notify.messages()
        XCTAssertTrue(messages.contains { $0.contains("READY=1") }, "\(messages)")
        XCTAssertTrue(messages.contains { $0.contains("WATCHDOG=1") }, "\(messages)")
        XCTAssertTrue(messages.contains { $0.contains("STOPPING=1") }, "\(messages)")
        let ready = messages.firstIndex { $0.contains("READY=1") } ?? 0
        XCTAssertTrue(messages[..<ready].contains { $0.contains("STATUS=waiting for audio device") },
                      "READY only after audio flows: \(messages)")
    }

    /// The watchdog really fires: once analysis hangs (a test hook blocks inference), WATCHDOG=1 pings stop within
    /// the bound (3 hops, at least 15 s), while READY and earlier pings were sent.
    func testWatchdogPingsStopWhenAnalysisStalls() throws {
        let conf = try alsaFileDevice("testin", samples: AudioFileReader.readAll(
            path: try Fixtures.require("detector/streams/dog_siren_32k.wav").path, targetRate: 32000))
        let notify = try DatagramListener(path: dir.appendingPathComponent("notify").path)
        let p = try DaemonProcess(try detectorArguments() + ["--device", "testin", "--pace-realtime", "--events", "siren",
                                                             "--hop", "0.5", "--stats-interval", "0"],
                                  in: dir, environment: ["ALSA_CONFIG_PATH": conf.path, "NOTIFY_SOCKET": notify.path,
                                                         "WATCHDOG_USEC": "1000000", "HTSATD_TEST_STALL_AFTER_WINDOWS": "4"])
        XCTAssertTrue(eventually(timeout: 30) { p.stderr.contains("analysis stalls now") }, p.stderr)
        let stalled = Date()
        let pings = { notify.messages().filter { $0.contains("WATCHDOG=1") }.count }
        XCTAssertGreaterThan(pings(), 0, "pinged while windows completed: \(notify.messages())")
        XCTAssertTrue(notify.messages().contains { $0.contains("READY=1") })
        // Pings go on for at most the bound (15 s) after the last window, then stop for good.
        XCTAssertTrue(eventually(timeout: 25) {
            let before = pings()
            Thread.sleep(forTimeInterval: 1.5)  // longer than a ping interval (0.25 s): a live watchdog would ping
            return pings() == before
        }, "pings never stopped: \(notify.messages().count) messages")
        let quiet = Date().timeIntervalSince(stalled)
        print("watchdog pings stopped \(String(format: "%.1f", quiet)) s after analysis stalled")
        XCTAssertLessThan(quiet, 15 + 5, "the bound is 15 s; detection here takes up to two 1.5-s looks")
        p.signal(SIGKILL)
        p.wait(timeout: 10)
    }

    /// A device that fails mid-stream (the `file` plugin's copy to /dev/full makes reads fail with EIO once its buffer
    /// fills): clients hear it, capture reopens it, and the daemon keeps running.
    func testFailingDeviceIsReportedToClientsAndReopened() throws {
        let raw = dir.appendingPathComponent("tone.f32")
        let tone = (0..<(32000 * 4)).map { Float(0.3 * sin(Double($0) * 2 * .pi * 440 / 32000)) }
        try tone.withUnsafeBytes { try Data($0).write(to: raw) }
        let conf = dir.appendingPathComponent("asound.conf")
        try ("</usr/share/alsa/alsa.conf>\npcm.flaky { type file; slave.pcm \"null\"; file \"/dev/full\"; infile \"\(raw.path)\"; format \"raw\" }\n")
            .write(to: conf, atomically: true, encoding: .utf8)
        let sock = dir.appendingPathComponent("events.sock").path
        let p = try DaemonProcess(try detectorArguments() + ["--device", "flaky", "--pace-realtime", "--events", "siren",
                                                             "--socket", sock, "--no-stdout"],
                                  in: dir, environment: ["ALSA_CONFIG_PATH": conf.path])
        XCTAssertTrue(eventually(timeout: 30) { FileManager.default.fileExists(atPath: sock) }, p.stderr)
        let client = try SocketClient(path: sock)
        var states: [String] = []
        _ = client.readLines(timeout: 30) { line in
            if let state = line["state"] as? String, state != states.last { states.append(state) }
            return states.count >= 4
        }
        XCTAssertTrue(states.starts(with: ["capturing", "device_unavailable", "capturing"])
                      || states.starts(with: ["device_unavailable", "capturing", "device_unavailable"]), "\(states)")
        XCTAssertTrue(p.process.isRunning, "a failing device is retried, not fatal")
        XCTAssertTrue(p.stderr.contains("Input/output error"), p.stderr)
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 20), 0, p.stderr)
    }

    /// Live capture through ALSA and file mode over the same audio give the same event lines (but for `time`).
    func testLiveAndFileModeEmitTheSameEvents() throws {
        let wav = try Fixtures.require("detector/streams/dog_siren_32k.wav")
        var samples = try AudioFileReader.readAll(path: wav.path, targetRate: 32000)
        samples.removeSubrange((20 * 32000)...)
        let conf = try alsaFileDevice("testin", samples: samples)
        // Settle 3 s: the bark at 8–10.5 s is started and stopped by about 15 s of stream.
        let common = try detectorArguments() + ["--events", "dog_bark", "--threshold", "0.6", "--off-threshold", "0.4", "--settle", "3"]
        let live = try DaemonProcess(common + ["--device", "testin", "--pace-realtime"], in: dir,
                                     environment: ["ALSA_CONFIG_PATH": conf.path])
        XCTAssertTrue(eventually(timeout: 40) { live.stdout.contains("\"type\":\"stop\"") }, live.stderr)
        live.signal(SIGTERM)
        XCTAssertEqual(live.wait(timeout: 20), 0, live.stderr)

        let wavPrefix = dir.appendingPathComponent("prefix.wav")
        let header = try Data(contentsOf: wav).prefix(44)
        try (header + Data(contentsOf: wav).dropFirst(44).prefix(20 * 32000 * 2)).write(to: wavPrefix)
        let file = try DaemonProcess(common + ["--input", wavPrefix.path], in: dir)
        XCTAssertEqual(file.wait(timeout: 60), 0, file.stderr)

        func firstEvent(_ text: String) -> [[String: Any]] {
            Array(jsonLines(text).prefix(2)).map { $0.filter { $0.key != "time" } }
        }
        let a = firstEvent(live.stdout), b = firstEvent(file.stdout)
        XCTAssertEqual(a.map { $0["type"] as? String }, ["start", "stop"], live.stdout)
        XCTAssertEqual(a.map { NSDictionary(dictionary: $0) }, b.map { NSDictionary(dictionary: $0) },
                       "live:\n\(live.stdout)\nfile:\n\(file.stdout)")
    }

    func testExitOnDeviceErrorNamesTheDevice() throws {
        let conf = dir.appendingPathComponent("asound.conf")
        try "</usr/share/alsa/alsa.conf>\n".write(to: conf, atomically: true, encoding: .utf8)
        let p = try DaemonProcess(try detectorArguments() + ["--device", "nosuchpcm", "--events", "siren", "--exit-on-device-error"],
                                  in: dir, environment: ["ALSA_CONFIG_PATH": conf.path])
        XCTAssertNotEqual(p.wait(timeout: 60), 0)
        XCTAssertTrue(p.stderr.contains("nosuchpcm"), p.stderr)
        XCTAssertTrue(p.stderr.contains("--exit-on-device-error"), p.stderr)
    }

    // MARK: - Bad input

    func testUnknownEventSuggestsNames() throws {
        let p = try DaemonProcess(try detectorArguments() + ["--input", "-", "--events", "dog_bork"], in: dir)
        XCTAssertEqual(p.wait(timeout: 30), 1)
        XCTAssertTrue(p.stderr.contains("dog_bork") && p.stderr.contains("dog_bark"), p.stderr)
        XCTAssertTrue(p.stdout.isEmpty)
    }

    func testBadConfigNamesTheKey() throws {
        let config = dir.appendingPathComponent("bad.json")
        try #"{"events": ["siren"], "outputs": {"sockt": "/tmp/x.sock"}}"#.write(to: config, atomically: true, encoding: .utf8)
        let p = try DaemonProcess(try detectorArguments() + ["--config", config.path, "--input", "-"], in: dir)
        XCTAssertEqual(p.wait(timeout: 30), 1)
        XCTAssertTrue(p.stderr.contains("outputs.sockt"), p.stderr)
    }

    func testBadFlagValuesNameTheFlag() throws {
        let p = try DaemonProcess(try detectorArguments() + ["--events", "siren", "--threshold", "2", "--input", "-"], in: dir)
        XCTAssertEqual(p.wait(timeout: 30), 1)
        XCTAssertTrue(p.stderr.contains("--threshold 2.0") && p.stderr.contains("between 0 and 1"), p.stderr)
        let q = try DaemonProcess(try detectorArguments() + ["--events", "siren", "--threshold", "0.5",
                                                             "--off-threshold", "0.6", "--input", "-"], in: dir)
        XCTAssertEqual(q.wait(timeout: 30), 1)
        XCTAssertTrue(q.stderr.contains("off_threshold") && q.stderr.contains("at most on_threshold"), q.stderr)
    }

    func testCorruptModelIsAClearError() throws {
        let model = dir.appendingPathComponent("broken.ckpt")
        let original = try Data(contentsOf: try Fixtures.require("detector/detector.ckpt"))
        try original.prefix(original.count / 2).write(to: model)
        let p = try DaemonProcess(["--model", model.path, "--labels", try Fixtures.require("audioset/class_labels_indices.csv").path,
                                   "--events", "siren", "--input", "-"], in: dir)
        XCTAssertEqual(p.wait(timeout: 30), 1)
        XCTAssertTrue(p.stderr.contains("broken.ckpt"), p.stderr)
    }

    // MARK: - Tools

    /// `htsatd scores` prints the official model's outputs for the clip.
    func testScoresMatchesTheOfficialOutputs() throws {
        let golden = try StateDict.load(contentsOf: try Fixtures.require("htsat-tiny/golden/speech.safetensors").path)
        let p = try DaemonProcess(["scores", "--model", try Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path,
                                   "--input", try Fixtures.require("htsat-tiny/clips/speech.wav").path], in: dir)
        XCTAssertEqual(p.wait(timeout: 60), 0, p.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as! [String: Any]
        let clipwise = (json["clipwise"] as! [NSNumber]).map(\.floatValue)
        let framewise = json["framewise"] as! [[NSNumber]]
        let expected = try golden.floats("clipwise")
        XCTAssertEqual(clipwise.count, expected.count)
        XCTAssertEqual(framewise.count, 1024)
        XCTAssertEqual(framewise[0].count, expected.count)
        for (a, b) in zip(clipwise, expected) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        let expectedFrames = try golden.floats("framewise")
        for f in stride(from: 0, to: 1024, by: 97) {
            for c in stride(from: 0, to: expected.count, by: 31) {
                XCTAssertEqual(framewise[f][c].floatValue, expectedFrames[f * expected.count + c], accuracy: 1e-4)
            }
        }
    }

    func testTagAndEventsListing() throws {
        let events = try DaemonProcess(["events", "--labels", try Fixtures.require("audioset/class_labels_indices.csv").path], in: dir)
        XCTAssertEqual(events.wait(timeout: 30), 0, events.stderr)
        for name in ["dog_bark", "siren", "smoke_alarm", "speech", "glass_break", "baby_cry", "doorbell", "knock",
                     "car_alarm", "gunshot", "alarm", "music", "scream", "cat", "Civil defense siren"] {
            XCTAssertTrue(events.stdout.contains(name), "missing \(name) in\n\(events.stdout)")
        }
        let wav = try Fixtures.require("detector/streams/dog_siren_32k.wav")
        let tag = try DaemonProcess(["tag"] + (try detectorArguments()) + ["--top", "3", wav.path], in: dir)
        XCTAssertEqual(tag.wait(timeout: 120), 0, tag.stderr)
        let lines = tag.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 6, "one line per 10-s window of the 60-s stream: \(tag.stdout)")
        XCTAssertTrue(lines.first?.contains("Bark") ?? false, "the bark at 8 s is tagged: \(tag.stdout)")
        XCTAssertTrue(lines.count > 2 && lines[2].contains("Siren"), "the siren at 24–30 s is tagged: \(tag.stdout)")
    }
}

/// A bound Unix datagram socket standing in for systemd's NOTIFY_SOCKET, drained by its own thread as systemd would.
final class DatagramListener {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var done = false
    private let finished = DispatchSemaphore(value: 0)

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard withUnixAddress(path, { bind(fd, $0, $1) }) == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                lock.lock(); let stop = done; lock.unlock()
                if stop { finished.signal(); return }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if n > 0 {
                    lock.lock(); received.append(String(decoding: buffer[0..<n], as: UTF8.self)); lock.unlock()
                }
            }
        }
        thread.start()
    }

    deinit {
        lock.lock(); done = true; lock.unlock()
        finished.wait()  // the reader thread has seen `done` and left; only then may its fd close
        close(fd)
    }

    /// Every datagram received so far.
    func messages() -> [String] {
        lock.lock(); defer { lock.unlock() }
        return received
    }
}

extension ISO8601DateFormatter {
    /// Parses event lines' `time` (UTC with milliseconds).
    static let milliseconds: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
}
