import AudioCapture
import Clips
import CSndfile
import Daemon
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Event clips through the real binary on the fixture streams: spans and samples, live = file, retention, bad disks,
/// and `htsatd plot`.
final class ClipTests: DaemonTestCase {

    private func stream(_ name: String) throws -> URL { try Fixtures.require("detector/streams/\(name).wav") }

    /// A file-mode run with a `clips` object in a config file; returns its event lines.
    private func run(_ stream: URL, events: String, clips: [String: Any]?, extra: [String] = []) throws -> (lines: [[String: Any]], stderr: String) {
        var args = try detectorArguments() + ["--input", stream.path, "--events", events, "--threshold", "0.6", "--off-threshold", "0.4"] + extra
        if let clips {
            let config = dir.appendingPathComponent("config-\(UUID().uuidString.prefix(6)).json")
            try JSONSerialization.data(withJSONObject: ["clips": clips]).write(to: config)
            args += ["--config", config.path]
        }
        let p = try DaemonProcess(args, in: dir)
        XCTAssertEqual(p.wait(timeout: 60), 0, p.stderr)
        return (jsonLines(p.stdout), p.stderr)
    }

    /// Every sample at the model rate, as the daemon reads it (same decoder, downmix and resampler).
    private func streamSamples(_ url: URL) throws -> [Float] { try AudioFileReader.readAll(path: url.path, targetRate: 32000) }

    private func files(under root: URL) -> [String] {
        (FileManager.default.enumerator(atPath: root.path)?.allObjects as? [String] ?? []).filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: root.appendingPathComponent($0).path, isDirectory: &isDir) && !isDir.boolValue
        }.sorted()
    }

    // MARK: - Spans and samples

    /// Each stop line names a clip covering [start - pre_roll, end + post_roll] clamped to the stream, whose samples
    /// are the stream's over that span: 16-bit FLAC within quantisation, float WAV exactly; the 48 kHz stereo stream
    /// is compared after the same downmix and resampling. The spectrogram PNG sits beside each clip.
    func testClipSpansAndSamplesMatchTheStream() throws {
        for (name, events, format) in [("dog_siren_32k", "dog_bark,siren", "flac"), ("alarm_speech_48k_stereo", "smoke_alarm,speech,siren", "wav")] {
            let wav = try stream(name)
            let clipDir = dir.appendingPathComponent("clips-\(name)")
            let (lines, stderr) = try run(wav, events: events, clips: ["dir": clipDir.path, "format": format, "spectrogram": true,
                                                                          "pre_roll": 2, "post_roll": 1])
            let samples = try streamSamples(wav)
            let stops = lines.filter { $0["type"] as? String == "stop" }
            XCTAssertGreaterThanOrEqual(stops.count, 3, "\(name): \(lines)")
            for stop in stops {
                let path = try XCTUnwrap(stop["clip"] as? String, "\(stop)")
                XCTAssertTrue(path.hasPrefix(clipDir.path + "/"), path)
                XCTAssertNotNil(ClipName(file: (path as NSString).lastPathComponent), path)
                XCTAssertTrue(path.hasSuffix("-\(stop["id"] as! Int).\(format)"), path)
                let clip = try XCTUnwrap(readSound(path), "\(path) unreadable; \(stderr)")
                XCTAssertEqual(clip.rate, 32000)
                XCTAssertEqual(clip.channels, 1)
                let start = stop["start"] as! Double, end = stop["end"] as! Double
                let a = max(0, Int(((start - 2) * 32000).rounded())), b = min(samples.count, Int(((end + 1) * 32000).rounded()))
                let expectedSeconds = min(end + 1, Double(samples.count) / 32000) - max(0, start - 2)
                XCTAssertEqual(Double(clip.samples.count) / 32000, expectedSeconds, accuracy: 0.05, "\(path)")
                XCTAssertEqual(clip.samples.count, b - a, "\(path)")
                let reference = samples[a..<min(b, a + clip.samples.count)].map { min(max($0, -1), 1) }
                let worst = zip(clip.samples, reference).map { abs($0 - $1) }.max() ?? 0
                if format == "wav" {
                    XCTAssertEqual(worst, 0, "\(path): float WAV is bit-exact")
                } else {
                    XCTAssertLessThanOrEqual(worst, 2.0 / 32768, "\(path): 16-bit FLAC within quantisation")
                }
                let png = try Data(contentsOf: URL(fileURLWithPath: (path as NSString).deletingPathExtension + ".png"))
                XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "\(path): PNG beside the clip")
            }
            // Nothing half-written is left behind: exactly one clip and one picture per stop line.
            XCTAssertEqual(files(under: clipDir).count, 2 * stops.count, "\(files(under: clipDir))")
        }
    }

    /// An event longer than max_seconds gets a clip of its first max_seconds, and the stop line says so.
    func testClipOfALongEventIsTruncatedAtMaxSeconds() throws {
        let clipDir = dir.appendingPathComponent("clips")
        let (lines, _) = try run(try stream("dog_siren_32k"), events: "siren", clips: ["dir": clipDir.path, "max_seconds": 4])
        let stop = try XCTUnwrap(lines.first { $0["type"] as? String == "stop" })
        XCTAssertGreaterThan(stop["duration"] as! Double, 4)
        XCTAssertEqual(stop["clip_truncated"] as? Bool, true, "\(stop)")
        let clip = try XCTUnwrap(readSound(try XCTUnwrap(stop["clip"] as? String)))
        XCTAssertEqual(clip.samples.count, 4 * 32000)
    }

    // MARK: - Live = file

    /// 20 s of a stream through ALSA's file plugin, paced to real time, and the same audio as a file give the same
    /// clip, sample for sample (float WAV).
    func testClipsAreIdenticalLiveAndFromAFile() throws {
        let wav = try stream("dog_siren_32k")
        var samples = try streamSamples(wav)
        samples.removeSubrange((20 * 32000)...)
        let conf = try alsaFileDevice("testin", samples: samples)
        let prefix = dir.appendingPathComponent("prefix.wav")
        try floatWAV(samples, rate: 32000).write(to: prefix)
        // Settle 3 s: the bark at 8–10.5 s is stopped by about 15 s of stream.
        let common = try detectorArguments() + ["--events", "dog_bark", "--threshold", "0.6", "--off-threshold", "0.4", "--settle", "3"]
        let config = dir.appendingPathComponent("wav.json")
        try #"{"clips": {"format": "wav"}}"#.write(to: config, atomically: true, encoding: .utf8)

        let liveDir = dir.appendingPathComponent("live"), fileDir = dir.appendingPathComponent("file")
        let live = try DaemonProcess(common + ["--config", config.path, "--clips", liveDir.path, "--device", "testin", "--pace-realtime"],
                                     in: dir, environment: ["ALSA_CONFIG_PATH": conf.path])
        XCTAssertTrue(eventually(timeout: 40) { live.stdout.contains("\"type\":\"stop\"") }, live.stderr)
        live.signal(SIGTERM)
        XCTAssertEqual(live.wait(timeout: 20), 0, live.stderr)
        let file = try DaemonProcess(common + ["--config", config.path, "--clips", fileDir.path, "--input", prefix.path], in: dir)
        XCTAssertEqual(file.wait(timeout: 60), 0, file.stderr)

        func firstClip(_ text: String) throws -> (line: [String: Any], samples: [Float]) {
            let stop = try XCTUnwrap(jsonLines(text).first { $0["type"] as? String == "stop" }, text)
            return (stop, try XCTUnwrap(readSound(try XCTUnwrap(stop["clip"] as? String, "\(stop)"))).samples)
        }
        let a = try firstClip(live.stdout), b = try firstClip(file.stdout)
        XCTAssertEqual(a.line["start"] as? Double, b.line["start"] as? Double)
        XCTAssertEqual(a.line["end"] as? Double, b.line["end"] as? Double)
        XCTAssertGreaterThan(a.samples.count, 5 * 32000)
        XCTAssertTrue(a.samples == b.samples, "live clip (\(a.samples.count) samples) differs from the file's (\(b.samples.count))")
    }

    // MARK: - Retention

    /// Over a tiny budget, retention deletes htsatd's own clips oldest first, with their pictures, and leaves every
    /// other file alone (foreign names, our names outside date directories, temporary-looking files of others).
    func testClipRetentionDeletesItsOwnOldestFilesOnly() throws {
        let root = dir.appendingPathComponent("clips")
        let fm = FileManager.default
        func put(_ path: String, bytes: Int) throws {
            let url = root.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(repeating: 7, count: bytes).write(to: url)
        }
        let ours = ["2026-01-01/dog_bark-20260101T080000Z-1.flac", "2026-01-01/dog_bark-20260101T080000Z-1.png",
                    "2026-01-02/siren-20260102T090000Z-4.wav", "2026-01-03/smoke_alarm-20260103T100000Z-2.flac"]
        let foreign = ["notes.txt", "2026-01-01/holiday.flac", "2026-01-01/Dog-20260101T080000Z-1.flac",
                       "2026-01-01/dog_bark-20260101T080000-1.flac", "keep/dog_bark-20250101T080000Z-1.flac",
                       "2026-01-01/dog_bark-20260101T080000Z-1.flac.bak"]
        for path in ours + foreign { try put(path, bytes: 1000) }

        // Ours hold 4000 bytes: to get within 2500, the two oldest (a clip, then its picture) go.
        let deleted = ClipRetention(dir: root.path, budget: ClipBudget(maxBytes: 2500)).enforce().deleted
        XCTAssertEqual(deleted.map { String($0.dropFirst(root.path.count + 1)) }, Array(ours.prefix(2)))
        for path in ours.dropFirst(2) + foreign { XCTAssertTrue(fm.fileExists(atPath: root.appendingPathComponent(path).path), path) }

        // Age: everything of ours older than a day goes (these are from January 2026), nothing else.
        let aged = ClipRetention(dir: root.path, budget: ClipBudget(maxAgeDays: 1)).enforce(now: Date(timeIntervalSince1970: 1_767_600_000))  // 2026-01-05
        XCTAssertEqual(aged.deleted.count, 2)
        XCTAssertEqual(aged.bytes, 0)
        for path in foreign { XCTAssertTrue(fm.fileExists(atPath: root.appendingPathComponent(path).path), path) }
        // An emptied date directory goes too; one holding someone else's files stays.
        XCTAssertFalse(fm.fileExists(atPath: root.appendingPathComponent("2026-01-03").path))
        XCTAssertTrue(fm.fileExists(atPath: root.appendingPathComponent("2026-01-01").path))
    }

    /// The daemon enforces the budget at start-up: an old clip of ours is gone before the run writes new ones.
    func testClipRetentionRunsAtStartUp() throws {
        let root = dir.appendingPathComponent("clips")
        let old = root.appendingPathComponent("2020-01-01/dog_bark-20200101T000000Z-1.flac")
        let other = root.appendingPathComponent("2020-01-01/mine.flac")
        try FileManager.default.createDirectory(at: old.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(repeating: 1, count: 100).write(to: old)
        try Data(repeating: 1, count: 100).write(to: other)
        let (lines, _) = try run(try stream("dog_siren_32k"), events: "dog_bark", clips: ["dir": root.path, "max_age_days": 30])
        XCTAssertFalse(FileManager.default.fileExists(atPath: old.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: other.path))
        XCTAssertFalse(lines.filter { $0["type"] as? String == "stop" }.compactMap { $0["clip"] as? String }.isEmpty)
    }

    // MARK: - Bad disks

    /// A clip directory that cannot be created fails start-up with one clear line naming it.
    func testUnwritableClipDirectoryFailsStartUp() throws {
        let blocker = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: blocker)
        let clips = blocker.appendingPathComponent("clips").path
        let p = try DaemonProcess(try detectorArguments() + ["--input", try stream("dog_siren_32k").path, "--events", "dog_bark", "--clips", clips], in: dir)
        XCTAssertEqual(p.wait(timeout: 30), 1)
        XCTAssertTrue(p.stderr.contains("clip directory \(clips) is not usable"), p.stderr)
        XCTAssertTrue(p.stdout.isEmpty, p.stdout)
    }

    /// A max_bytes smaller than one clip, and a full 256 KiB tmpfs (when the tests may mount one): every event line
    /// is still written, the same as without clips; lost clips are counted and logged, and leave no file behind.
    func testClipDiskFullLosesNoEventLine() throws {
        let wav = try stream("dog_siren_32k")
        func strip(_ lines: [[String: Any]]) -> [NSDictionary] {
            lines.map { NSDictionary(dictionary: $0.filter { !["time", "clip", "clip_truncated"].contains($0.key) }) }
        }
        let baseline = try run(wav, events: "dog_bark,siren", clips: nil).lines
        XCTAssertEqual(baseline.count, 6)

        let small = dir.appendingPathComponent("small")
        let budget = try run(wav, events: "dog_bark,siren", clips: ["dir": small.path, "max_bytes": 20000])
        XCTAssertEqual(strip(budget.lines), strip(baseline))
        XCTAssertTrue(budget.stderr.contains("abandoned") && budget.stderr.contains("max_bytes"), budget.stderr)
        XCTAssertTrue(budget.stderr.contains("clips: 0 written, 3 abandoned"), budget.stderr)
        XCTAssertEqual(files(under: small), [])

        let tmpfs = dir.appendingPathComponent("tmpfs")
        try FileManager.default.createDirectory(at: tmpfs, withIntermediateDirectories: true)
        guard "size=256k".withCString({ mount("tmpfs", tmpfs.path, "tmpfs", 0, $0) }) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (\(String(cString: strerror(errno)))); the max_bytes case passed")
        }
        defer { umount(tmpfs.path) }
        let full = try run(wav, events: "dog_bark,siren", clips: ["dir": tmpfs.path])
        XCTAssertEqual(strip(full.lines), strip(baseline))
        XCTAssertTrue(full.stderr.contains("abandoned"), full.stderr)
        // Whatever was written is whole: every file left is a clip a stop line names and libsndfile reads in full.
        let named = Set(full.lines.compactMap { $0["clip"] as? String })
        for file in files(under: tmpfs) {
            let path = tmpfs.appendingPathComponent(file).path
            XCTAssertTrue(named.contains(path), "\(file) is not a clip a stop line names")
            XCTAssertNotNil(readSound(path), path)
        }
    }

    // MARK: - Configuration

    func testClipConfigErrorsNameTheKey() throws {
        for (text, key) in [(#"{"clips": {"pre_roll": -1}}"#, "clips.pre_roll"), (#"{"clips": {"format": "mp3"}}"#, "clips.format"),
                            (#"{"clips": {"max_bytes": 0}}"#, "clips.max_bytes"), (#"{"clips": {"dirr": "/tmp"}}"#, "clips.dirr"),
                            (#"{"clips": {"min_free_percent": 100}}"#, "clips.min_free_percent")] {
            XCTAssertThrowsError(try DaemonConfig.parse(data: Data(text.utf8))) { error in
                XCTAssertTrue("\(error)".contains(key), "\(text): \(error)")
            }
        }
        let config = try DaemonConfig.parse(data: Data(#"{"clips": {"dir": "/var/lib/htsatd/clips", "max_bytes": 1000000}}"#.utf8))
        XCTAssertEqual(config.clips.settings?.budget.maxBytes, 1_000_000)
        XCTAssertEqual(config.clips.settings?.format, .flac)
        XCTAssertNil(DaemonConfig().clips.settings)
    }

    // MARK: - Plot

    /// `htsatd plot` writes an SVG that XMLParser reads, with a lane per event and every detected event and truth
    /// span named.
    func testPlotClipOfAStreamIsAnSVGNamingEveryEvent() throws {
        let wav = try stream("dog_siren_32k")
        let truth = try Fixtures.require("detector/streams/dog_siren_32k.events.json")
        let events = try run(wav, events: "dog_bark,siren", clips: nil).lines.filter { $0["type"] as? String == "stop" }
        let out = dir.appendingPathComponent("plot.svg")
        let p = try DaemonProcess(["plot"] + (try detectorArguments()) + ["--input", wav.path, "--events", "dog_bark,siren",
                                                                         "--threshold", "0.6", "--off-threshold", "0.4",
                                                                         "--truth", truth.path, "--output", out.path], in: dir)
        XCTAssertEqual(p.wait(timeout: 60), 0, p.stderr)
        let reader = SVGText()
        let parser = XMLParser(data: try Data(contentsOf: out))
        parser.delegate = reader
        XCTAssertTrue(parser.parse(), "\(String(describing: parser.parserError))")
        XCTAssertEqual(reader.root, "svg")
        XCTAssertGreaterThanOrEqual(reader.elements["polyline", default: 0], 2, "one score track per event")
        XCTAssertGreaterThanOrEqual(reader.elements["image", default: 0], 1, "the spectrogram")
        for event in events {
            XCTAssertTrue(reader.texts.contains("\(event["event"] as! String) #\(event["id"] as! Int)"), "\(event) not named in \(reader.texts)")
        }
        let annotated = try JSONSerialization.jsonObject(with: Data(contentsOf: truth)) as! [String: Any]
        XCTAssertEqual(reader.texts.filter { $0 == "truth" }.count, (annotated["events"] as! [Any]).count, "every annotated span")
    }
}

/// Collects an SVG's root, element counts and text.
private final class SVGText: NSObject, XMLParserDelegate {
    var root: String?
    var elements: [String: Int] = [:]
    var texts: [String] = []
    private var current = ""

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        if root == nil { root = name }
        elements[name, default: 0] += 1
        current = ""
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { current += string }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "text" { texts.append(current.trimmingCharacters(in: .whitespacesAndNewlines)) }
        current = ""
    }
}

/// A sound file read back with libsndfile: rate, channels and every sample as float (channels interleaved).
func readSound(_ path: String) -> (rate: Int, channels: Int, samples: [Float])? {
    var info = SF_INFO()
    guard let h = sf_open(path, Int32(SFM_READ), &info) else { return nil }
    defer { sf_close(h) }
    var out = [Float](repeating: 0, count: Int(info.frames) * Int(info.channels))
    let n = out.withUnsafeMutableBufferPointer { sf_readf_float(h, $0.baseAddress, info.frames) }
    guard n == info.frames else { return nil }
    return (Int(info.samplerate), Int(info.channels), out)
}
