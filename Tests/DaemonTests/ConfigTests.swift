import Daemon
import Detection
import Foundation
import HTSAT
import TestSupport
import XCTest

final class ConfigTests: XCTestCase {
    private func parse(_ json: String) throws -> DaemonConfig {
        try DaemonConfig.parse(data: Data(json.utf8), source: "test.json")
    }

    /// Parses `json` expecting a ConfigError, and returns it.
    private func parseError(_ json: String, file: StaticString = #filePath, line: UInt = #line) -> ConfigError? {
        do {
            let config = try parse(json)
            XCTFail("expected an error, parsed \(config)", file: file, line: line)
        } catch let error as ConfigError {
            XCTAssertEqual(error.source, "test.json", file: file, line: line)
            return error
        } catch {
            XCTFail("expected ConfigError, got \(error)", file: file, line: line)
        }
        return nil
    }

    private func assertMentions(_ error: ConfigError?, _ parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        guard let error else { return }
        for part in parts {
            XCTAssertTrue(error.description.contains(part), "\"\(error)\" should mention \(part)", file: file, line: line)
        }
    }

    func testDefaults() throws {
        let config = try parse("{}")
        XCTAssertEqual(config, DaemonConfig())
        XCTAssertEqual(config.model, "/var/lib/htsatd/HTSAT_AudioSet_Saved_1.ckpt")
        XCTAssertEqual(config.labelsPath, "/var/lib/htsatd/class_labels_indices.csv")
        XCTAssertEqual(config.signal, SignalConfig(sampleRate: 32000, hopSize: 320, clipSamples: 320_000, fmin: 50, fmax: 14000))
        XCTAssertNil(config.preset, "read from the checkpoint unless given")
        XCTAssertEqual(config.signal.clipSeconds, 10)
        XCTAssertEqual(config.device, "default")
        XCTAssertEqual(config.periodMs, 32)
        XCTAssertEqual(config.hopSeconds, 1.0)
        XCTAssertEqual(config.threads, 1)
        XCTAssertNil(config.settleSeconds)
        XCTAssertEqual(config.defaults, EventSettings(onThreshold: 0.5, offThreshold: 0.3, minDuration: 0.3, mergeGap: 1.0, maxDuration: nil))
        XCTAssertTrue(config.outputs.stdout)
        XCTAssertNil(config.outputs.socket)
        XCTAssertEqual(config.outputs.socketMode, 0o660)
        XCTAssertNil(config.outputs.logFile)
        XCTAssertEqual(config.statsInterval, 60)
        XCTAssertEqual(config.logLevel, .info)
        XCTAssertFalse(config.exitOnDeviceError)
        // Parsing does not demand events (--events may supply them); validate() does.
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "events")
        }
    }

    func testEveryKeyIsRead() throws {
        let config = try parse("""
        {
          "model": "/m/model.ckpt", "labels": "/m/labels.csv", "preset": "scv2",
          "sample_rate": 22050, "hop_size": 220, "clip_samples": 110250,
          "device": "plughw:CARD=Mic", "period_ms": 20, "exit_on_device_error": true,
          "hop_seconds": 0.5, "threads": 4, "precision": "bfloat16", "settle_seconds": 2.5,
          "events": ["dog_bark", "Smoke detector, smoke alarm"],
          "event_settings": {"dog_bark": {"on_threshold": 0.7, "max_duration": null},
                             "Smoke detector, smoke alarm": {"merge_gap": 3}},
          "defaults": {"on_threshold": 0.6, "off_threshold": 0.4, "min_duration": 0.5, "merge_gap": 2, "max_duration": 60},
          "outputs": {"stdout": false, "socket": "/run/x.sock", "socket_mode": "0666", "log_file": "/var/log/x.jsonl",
                      "max_client_backlog": 65536},
          "stats_interval": 0, "log_level": "debug"
        }
        """)
        var expected = DaemonConfig()
        expected.model = "/m/model.ckpt"
        expected.labels = "/m/labels.csv"
        expected.preset = .scv2
        expected.sampleRate = 22050
        expected.hopSize = 220
        expected.clipSamples = 110_250
        expected.device = "plughw:CARD=Mic"
        expected.periodMs = 20
        expected.exitOnDeviceError = true
        expected.hopSeconds = 0.5
        expected.threads = 4
        expected.settleSeconds = 2.5
        expected.precision = .bfloat16
        expected.events = ["dog_bark", "Smoke detector, smoke alarm"]
        expected.eventSettings = [
            "dog_bark": .init(onThreshold: 0.7, maxDuration: .some(nil)),
            "Smoke detector, smoke alarm": .init(mergeGap: 3),
        ]
        expected.defaults = EventSettings(onThreshold: 0.6, offThreshold: 0.4, minDuration: 0.5, mergeGap: 2, maxDuration: 60)
        expected.outputs.stdout = false
        expected.outputs.socket = "/run/x.sock"
        expected.outputs.socketMode = 0o666
        expected.outputs.logFile = "/var/log/x.jsonl"
        expected.outputs.maxClientBacklog = 65536
        expected.statsInterval = 0
        expected.logLevel = .debug
        XCTAssertEqual(config, expected)
        XCTAssertNoThrow(try config.validate())
        XCTAssertEqual(config.labelsPath, "/m/labels.csv")
        XCTAssertEqual(config.signal, SignalConfig(sampleRate: 22050, hopSize: 220, clipSamples: 110_250, fmin: 50, fmax: 14000))
        XCTAssertEqual(config.signal.clipSeconds, 5)
    }

    func testPresets() throws {
        XCTAssertEqual(try parse(#"{"preset": "esc50"}"#).signal, .init(sampleRate: 32000, hopSize: 320, clipSamples: 320_000, fmin: 50, fmax: 14000))
        XCTAssertEqual(try parse(#"{"preset": "scv2"}"#).signal, .init(sampleRate: 16000, hopSize: 160, clipSamples: 160_000, fmin: 50, fmax: 14000))
        XCTAssertNil(try parse(#"{"preset": null}"#).preset)
        XCTAssertEqual(try parse(#"{"preset": "scv2", "hop_size": null}"#).signal.hopSize, 160)
        assertMentions(parseError(#"{"preset": "AudioSet2"}"#), ["preset", "\"AudioSet2\"", "audioset, esc50, scv2"])
    }

    /// Per-event settings inherit every field they do not set, also after the defaults change later (a CLI flag).
    func testEventSettingsInheritDefaults() throws {
        var config = try parse("""
        {"events": ["siren", "speech"], "defaults": {"max_duration": 30},
         "event_settings": {"siren": {"on_threshold": 0.8, "max_duration": null}, "typo_event": {"merge_gap": 0}}}
        """)
        XCTAssertEqual(config.settings(for: "siren"), EventSettings(onThreshold: 0.8, offThreshold: 0.3, minDuration: 0.3, mergeGap: 1, maxDuration: nil))
        XCTAssertEqual(config.settings(for: "speech"), EventSettings(onThreshold: 0.5, offThreshold: 0.3, minDuration: 0.3, mergeGap: 1, maxDuration: 30))
        XCTAssertEqual(config.unusedEventSettings, ["typo_event"])
        config.defaults.offThreshold = 0.45  // as --off-threshold would
        XCTAssertEqual(config.settings(for: "siren").offThreshold, 0.45)
        XCTAssertEqual(config.settings(for: "speech").offThreshold, 0.45)
        XCTAssertNoThrow(try config.validate())
        // ...and a new default that conflicts with an event's own on_threshold is caught, naming the event.
        config.eventSettings["speech", default: .init()].onThreshold = 0.4
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "event_settings.speech.off_threshold")
        }
    }

    func testUnknownKeysNameTheKeyWhereAndWhatIsAllowed() {
        let nested = parseError("""
        {
          "outputs": {
            "stdout": true,
            "sockt": "/run/x.sock"
          }
        }
        """)
        XCTAssertEqual(nested?.key, "outputs.sockt")
        XCTAssertEqual(nested?.line, 4)
        XCTAssertEqual(nested?.column, 5)
        assertMentions(nested, ["test.json:4:5", "outputs.sockt", "unknown key", "stdout, socket, socket_mode, socket_group, log_file, max_client_backlog"])

        let top = parseError(#"{"thread": 2}"#)
        XCTAssertEqual(top?.key, "thread")
        assertMentions(top, ["unknown key", "threads", "hop_seconds", "event_settings"])

        let event = parseError(#"{"event_settings": {"dog_bark": {"on": 0.5}}}"#)
        XCTAssertEqual(event?.key, "event_settings.dog_bark.on")
        assertMentions(event, ["on_threshold, off_threshold, min_duration, merge_gap, max_duration"])

        let quoted = parseError(#"{"event_settings": {"Smoke detector, smoke alarm": {"x": 1}}}"#)
        XCTAssertEqual(quoted?.key, #"event_settings."Smoke detector, smoke alarm".x"#)
    }

    func testDocumentationKeysAreIgnoredAtEveryLevel() throws {
        let config = try parse("""
        {"_comment": "hi", "_threads": ["anything", 1],
         "outputs": {"_socket": {"nested": true}, "socket": "/s"},
         "defaults": {"_x": null, "on_threshold": 0.7},
         "event_settings": {"_about": "names starting with _ are documentation", "siren": {"_why": 1, "merge_gap": 2}}}
        """)
        XCTAssertEqual(config.outputs.socket, "/s")
        XCTAssertEqual(config.defaults.onThreshold, 0.7)
        XCTAssertEqual(Array(config.eventSettings.keys), ["siren"])
    }

    func testWrongTypesNameKeyValueAndExpectedType() {
        assertMentions(parseError(#"{"threads": "4"}"#), ["threads", "expected an integer", "\"4\" (a string)"])
        assertMentions(parseError(#"{"threads": 2.5}"#), ["threads", "expected an integer", "2.5"])
        assertMentions(parseError(#"{"hop_seconds": true}"#), ["hop_seconds", "expected a number", "true"])
        assertMentions(parseError(#"{"outputs": {"stdout": 1}}"#), ["outputs.stdout", "expected true or false", "got 1"])
        assertMentions(parseError(#"{"outputs": {"socket_mode": 660}}"#), ["outputs.socket_mode", "octal string", "got 660"])
        assertMentions(parseError(#"{"outputs": {"socket_mode": "0689"}}"#), ["outputs.socket_mode", "\"0689\"", "three octal digits"])
        assertMentions(parseError(#"{"precision": "float16"}"#), ["precision", "float16", "float32, bfloat16"])
        assertMentions(parseError(#"{"outputs": {"socket_group": "no-such-group-x"}}"#), ["outputs.socket_group", "no-such-group-x", "existing group"])
        assertMentions(parseError(#"{"outputs": {"socket": ""}}"#), ["outputs.socket", "file path"])
        assertMentions(parseError(#"{"outputs": []}"#), ["outputs", "expected an object", "an array"])
        assertMentions(parseError(#"{"events": "dog_bark"}"#), ["events", "expected an array"])
        assertMentions(parseError(#"{"events": ["dog_bark", 3]}"#), ["events[1]", "expected a string", "got 3"])
        assertMentions(parseError(#"{"model": null}"#), ["model", "file path", "null"])
        assertMentions(parseError(#"{"log_level": "verbose"}"#), ["log_level", "\"verbose\"", "trace, debug, info, notice, warning, error, critical"])
        assertMentions(parseError(#"["not", "an", "object"]"#), ["expected an object", "an array"])
    }

    func testOutOfRangeValuesNameKeyValueAndWhatIsAllowed() {
        assertMentions(parseError(#"{"threads": 0}"#), ["threads", "0 is not allowed", "1 to 64"])
        assertMentions(parseError(#"{"threads": 65}"#), ["threads", "65", "1 to 64"])
        assertMentions(parseError(#"{"period_ms": 4}"#), ["period_ms", "4", "5 to 200 ms"])
        assertMentions(parseError(#"{"period_ms": 201}"#), ["period_ms", "201", "5 to 200 ms"])
        assertMentions(parseError(#"{"hop_seconds": 0}"#), ["hop_seconds", "0 is not allowed", "more than 0"])
        assertMentions(parseError(#"{"hop_seconds": 10.5}"#), ["hop_seconds", "10.5", "at most the window length, 10 s"])
        assertMentions(parseError(#"{"preset": "scv2", "clip_samples": 16000, "hop_seconds": 2}"#), ["hop_seconds", "at most the window length, 1 s"])
        assertMentions(parseError(#"{"settle_seconds": -1}"#), ["settle_seconds", "-1", "0 to the window length"])
        assertMentions(parseError(#"{"sample_rate": 100}"#), ["sample_rate", "100", "8000 to 192000"])
        assertMentions(parseError(#"{"hop_size": 0}"#), ["hop_size", "0"])
        assertMentions(parseError(#"{"clip_samples": 10}"#), ["clip_samples", "10", "320 (one hop)"])
        assertMentions(parseError(#"{"stats_interval": -5}"#), ["stats_interval", "-5", "0 disables"])
        assertMentions(parseError(#"{"outputs": {"max_client_backlog": 10}}"#), ["outputs.max_client_backlog", "10", "4096 to 1073741824 bytes"])
        assertMentions(parseError(#"{"device": ""}"#), ["device", "ALSA PCM name"])
        assertMentions(parseError(#"{"defaults": {"on_threshold": 1.5}}"#), ["defaults.on_threshold", "1.5", "between 0 and 1"])
        assertMentions(parseError(#"{"defaults": {"min_duration": -0.1}}"#), ["defaults.min_duration", "-0.1"])
        assertMentions(parseError(#"{"defaults": {"max_duration": 0.1}}"#), ["defaults.max_duration", "0.1", "at least min_duration (0.3)"])
        assertMentions(parseError(#"{"events": ["siren", "siren"]}"#), ["events[1]", "\"siren\"", "twice"])
        assertMentions(parseError(#"{"events": [" "]}"#), ["events[0]", "event name"])
    }

    func testSocketModeParsing() {
        XCTAssertEqual(DaemonConfig.parseSocketMode("0660"), 0o660)
        XCTAssertEqual(DaemonConfig.parseSocketMode("666"), 0o666)
        XCTAssertEqual(DaemonConfig.parseSocketMode("0600"), 0o600)
        for bad in ["", "66", "06600", "1660", "0o660", "+660", "068", "rw-rw----", "६६०"] {
            XCTAssertNil(DaemonConfig.parseSocketMode(bad), bad)
        }
    }

    func testOffThresholdAboveOnThresholdIsAnError() {
        assertMentions(parseError(#"{"defaults": {"on_threshold": 0.4, "off_threshold": 0.6}}"#),
                       ["defaults.off_threshold", "0.6", "at most on_threshold (0.4)"])
        // Only the combination of defaults and an override is inconsistent.
        assertMentions(parseError(#"{"defaults": {"off_threshold": 0.45}, "event_settings": {"siren": {"on_threshold": 0.4}}}"#),
                       ["event_settings.siren.off_threshold", "0.45", "at most on_threshold (0.4)"])
    }

    func testSyntaxErrorsReportLineAndColumn() {
        let missingComma = parseError("{\n  \"threads\": 2,\n  \"device\": \"hw:0\"\n  \"model\": \"/m\"\n}")
        XCTAssertEqual(missingComma?.line, 4)
        XCTAssertEqual(missingComma?.column, 3)
        assertMentions(missingComma, ["test.json:4:3", "invalid JSON", "expected ',' or '}'", "\"device\""])

        let trailing = parseError("{\n  \"threads\": 2,\n}")
        XCTAssertEqual(trailing?.line, 3)
        XCTAssertEqual(trailing?.column, 1)
        assertMentions(trailing, ["trailing comma"])

        let word = parseError("{\"exit_on_device_error\": yes}")
        XCTAssertEqual(word?.line, 1)
        XCTAssertEqual(word?.column, 26)

        // Columns count characters, not bytes.
        let unicode = parseError("{\"device\": \"é\" x}")
        XCTAssertEqual(unicode?.column, 16)

        assertMentions(parseError(""), ["empty"])
        assertMentions(parseError("  \n "), ["empty"])
        assertMentions(parseError("{\"device\": \"unterminated}"), ["unterminated string"])
        assertMentions(parseError("{\"device\": \"a\nb\"}"), ["line break"])
        assertMentions(parseError("{\"threads\": 01}"), ["expected ',' or '}'"])
        assertMentions(parseError("{\"threads\": 1e999}"), ["out of range"])
        assertMentions(parseError("{} {}"), ["after the end"])
        assertMentions(parseError("{\"device\": \"\\x\"}"), ["invalid escape"])
        assertMentions(parseError("{\"device\": \"\\ud800\"}"), ["surrogate"])
    }

    func testStringEscapesAndByteOrderMark() throws {
        let json = "\u{FEFF}{\"device\": \"a\\\"b\\\\c\\/d\\u00e9\\ud83d\\ude00\\n\"}"
        XCTAssertEqual(try parse(json).device, "a\"b\\c/dé😀\n")
    }

    func testEveryJSONNumberFormIsRead() throws {
        // JSONDecoder rejects 0e1 ... 0e9 (valid JSON); that gave an error without line or key (a fuzz find).
        for text in ["0e3", "0E9", "-0e3", "0e+3", "0.0e3", "0e12"] {
            XCTAssertEqual(try parse("{\"stats_interval\": \(text)}").statsInterval, 0, text)
        }
        XCTAssertEqual(try parse("{\"stats_interval\": 5e1}").statsInterval, 50)
    }

    func testBadBytesNeverCrashOrHang() throws {
        // Deep nesting is refused, not a stack overflow.
        assertMentions(parseError(String(repeating: "[", count: 100_000)), ["nested more than"])
        assertMentions(parseError("{\"a\": " + String(repeating: "{\"a\": ", count: 100) + "1" + String(repeating: "}", count: 101)), ["nested"])
        // Invalid UTF-8 inside a string.
        XCTAssertThrowsError(try DaemonConfig.parse(data: Data([0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D]), source: "x"))
        // Every prefix of a valid file is either valid or a ConfigError.
        let example = try Data(contentsOf: exampleURL)
        for length in stride(from: 0, to: example.count, by: 7) {
            do {
                _ = try DaemonConfig.parse(data: example.prefix(length), source: "x")
            } catch is ConfigError {
            } catch {
                XCTFail("prefix \(length): unexpected \(error)")
            }
        }
    }

    func testLoadResolvesRelativePathsAgainstTheFile() throws {
        let dir = try Fixtures.temporaryDirectory("htsatd-config")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("config.json")
        try Data(#"{"model": "models/m.ckpt", "outputs": {"socket": "run/e.sock", "log_file": "/abs/e.log"}}"#.utf8).write(to: file)
        let config = try DaemonConfig.load(path: file.path)
        XCTAssertEqual(config.model, dir.appendingPathComponent("models/m.ckpt").path)
        XCTAssertEqual(config.labelsPath, dir.appendingPathComponent("models/class_labels_indices.csv").path)
        XCTAssertEqual(config.outputs.socket, dir.appendingPathComponent("run/e.sock").path)
        XCTAssertEqual(config.outputs.logFile, "/abs/e.log")

        let missing = dir.appendingPathComponent("nope.json").path
        XCTAssertThrowsError(try DaemonConfig.load(path: missing)) { error in
            XCTAssertEqual((error as? ConfigError)?.source, missing)
            XCTAssertTrue("\(error)".contains("cannot read"), "\(error)")
        }
        try Data("{\n\"threads\": -1}".utf8).write(to: file)
        XCTAssertThrowsError(try DaemonConfig.load(path: file.path)) { error in
            XCTAssertTrue("\(error)".hasPrefix(file.path + ": threads: -1"), "\(error)")
        }
    }

    // MARK: - config.example.json

    private var exampleURL: URL { Fixtures.packageRoot.appendingPathComponent("config.example.json") }

    func testExampleParsesAndValidates() throws {
        let config = try DaemonConfig.load(path: exampleURL.path)
        XCTAssertNoThrow(try config.validate())
        XCTAssertEqual(config.model, DaemonConfig.defaultModelPath)
        XCTAssertEqual(config.events, ["dog_bark", "siren", "smoke_alarm"])
        XCTAssertEqual(config.unusedEventSettings, [])
        // It shows the defaults, so an edited copy differs from the built-in only where a user changes it.
        XCTAssertEqual(config.defaults, DaemonConfig().defaults)
        XCTAssertEqual(config.outputs, DaemonConfig().outputs)
        var withoutEvents = config
        withoutEvents.events = []
        withoutEvents.eventSettings = [:]
        XCTAssertEqual(withoutEvents, DaemonConfig())
    }

    /// Every key the loader knows appears in the example, each with a comment documenting it, and no comment or
    /// `_key` entry documents a key that is not there. The keys are read with Foundation's JSON5 parser, the
    /// documentation with the loader's own.
    func testExampleDocumentsEveryKey() throws {
        let data = try Data(contentsOf: exampleURL)
        let json5 = JSONDecoder()
        json5.allowsJSON5 = true
        let root = try json5.decode(KeyTree.self, from: data)
        let docs = try DaemonConfig.documentation(data: data)
        func check(_ object: KeyTree?, keys: [String], at path: String) {
            for key in keys {
                XCTAssertNotNil(object?.members[key], "config.example.json lacks \(path)\(key)")
                XCTAssertFalse(docs[path + key]?.isEmpty ?? true, "config.example.json lacks a comment documenting \(path)\(key)")
            }
        }
        check(root, keys: DaemonConfig.topLevelKeys, at: "")
        check(root.members["outputs"], keys: DaemonConfig.outputKeys, at: "outputs.")
        check(root.members["defaults"], keys: DaemonConfig.eventSettingKeys, at: "defaults.")
        check(root.members["mqtt"], keys: DaemonConfig.mqttKeys, at: "mqtt.")
        check(root.members["clips"], keys: DaemonConfig.clipKeys, at: "clips.")
        // No stray documentation for keys that do not exist.
        let present = Set(root.paths(""))
        XCTAssertTrue(present.contains("event_settings.siren.on_threshold"), "\(present)")
        for path in docs.keys where !path.isEmpty {
            XCTAssertTrue(present.contains(path), "config.example.json documents an unknown key \(path)")
        }
        XCTAssertFalse(docs[""]?.isEmpty ?? true, "config.example.json starts with a comment about the file")
    }

    /// The key structure of a JSON document (names only).
    private struct KeyTree: Decodable {
        var members: [String: KeyTree] = [:]

        private struct Key: CodingKey {
            var stringValue: String
            init(stringValue: String) { self.stringValue = stringValue }
            var intValue: Int? { nil }
            init?(intValue: Int) { nil }
        }

        init(from decoder: Decoder) throws {
            guard let object = try? decoder.container(keyedBy: Key.self) else { return }
            for key in object.allKeys { members[key.stringValue] = try object.decode(KeyTree.self, forKey: key) }
        }

        func paths(_ prefix: String) -> [String] {
            members.flatMap { key, value in [prefix + key] + value.paths(prefix + key + ".") }
        }
    }

    // MARK: - Comments and documentation

    func testLineAndBlockCommentsAreAllowedAnywhereBetweenTokens() throws {
        let config = try parse("""
        // A line comment before the object.
        /* A block comment
           over two lines, holding " and } and { and // */
        {
          "threads" /* between a key and its colon */ : /* before a value */ 2, // after a value: " }
          // The next key, after a comment holding a quote: "
          "device": "hw://not-a-comment/* either */",
          "events": [ /* in an array */ "siren" // after an item
          ],
          "outputs": {/**/"socket": "/s"/**/}
        } // after the document
        """)
        XCTAssertEqual(config.threads, 2)
        XCTAssertEqual(config.device, "hw://not-a-comment/* either */")
        XCTAssertEqual(config.events, ["siren"])
        XCTAssertEqual(config.outputs.socket, "/s")
        XCTAssertEqual(try parse("{} // no line break at the end").threads, 1)
    }

    /// Comments are blanked, not removed: positions after them, also after multi-byte characters in them, stay exact.
    func testPositionsAfterCommentsAreExact() {
        let unknown = parseError("{\n  /* é\n  */ /* é */ \"sockt\": 1\n}")
        XCTAssertEqual(unknown?.key, "sockt")
        XCTAssertEqual(unknown?.line, 3)
        XCTAssertEqual(unknown?.column, 14)
        let item = parseError("{\"events\": [\n  \"siren\", // é\n  3]}")
        assertMentions(item, ["test.json:3:3", "events[1]", "expected a string, got 3"])
        let syntax = parseError("{\"threads\": 2 // é\n /* é */ \"device\": \"x\"}")
        XCTAssertEqual(syntax?.line, 2)
        XCTAssertEqual(syntax?.column, 10)
        assertMentions(syntax, ["expected ',' or '}'"])
    }

    func testBadCommentsAreClearErrors() {
        let unterminated = parseError("{\n  \"threads\": 2, /* forgot to close\n  \"device\": \"x\"\n}")
        XCTAssertEqual(unterminated?.line, 2)
        XCTAssertEqual(unterminated?.column, 17)
        assertMentions(unterminated, ["test.json:2:17", "unterminated /* comment", "*/"])
        assertMentions(parseError("{\"threads\": 2 / 3}"), ["expected ',' or '}'", "'/'"])
        assertMentions(parseError("# not a comment\n{}"), ["expected a value", "'#'"])
        assertMentions(parseError("// only a comment"), ["empty"])
        // Comments do not make JSON5 of it: trailing commas stay errors.
        assertMentions(parseError("{\"events\": [\"siren\", /* */]}"), ["trailing comma"])
    }

    /// Files documented with `_key` entries keep working, and their entries count as documentation.
    func testUnderscoreEntriesStillDocumentKeys() throws {
        let json = """
        {"_comment": "first", "_comment": "repeated header entries are fine",
         "_threads": "Inference threads.", "threads": 3,
         "outputs": {"_stdout": "Write events to stdout.", "stdout": false},
         // A comment documents the next key just as well.
         "device": "hw:1"}
        """
        let config = try parse(json)
        XCTAssertEqual(config.threads, 3)
        XCTAssertFalse(config.outputs.stdout)
        let docs = try DaemonConfig.documentation(data: Data(json.utf8))
        XCTAssertEqual(docs["threads"], "Inference threads.")
        XCTAssertEqual(docs["outputs.stdout"], "Write events to stdout.")
        XCTAssertEqual(docs["device"], "A comment documents the next key just as well.")
        XCTAssertNil(docs["outputs"])
        XCTAssertEqual(docs["comment"], "repeated header entries are fine")
    }

    func testDuplicateKeysAreRejectedWhereTheyRepeat() {
        let duplicate = parseError("{\"threads\": 1,\n \"outputs\": {\"stdout\": true, \"stdout\": false}}")
        XCTAssertEqual(duplicate?.key, "outputs.stdout")
        assertMentions(duplicate, ["test.json:2:30", "duplicate key"])
        assertMentions(parseError(#"{"threads": 1, "threads": 1}"#), ["threads", "duplicate key"])
    }

    /// The config's messages for event settings come from `EventSettings.validate`, the only copy of the rules,
    /// whether the value came from the file or from a flag applied afterwards.
    func testEventSettingRulesAreEventSettingsOwn() throws {
        XCTAssertThrowsError(try EventSettings(onThreshold: 0.4, offThreshold: 0.6).validate(event: "siren")) { error in
            let e = error as? EventSettingsError
            XCTAssertEqual(e?.field, "off_threshold")
            XCTAssertEqual(e?.value, "0.6")
            XCTAssertTrue(e?.expected.hasPrefix("at most on_threshold (0.4)") ?? false, "\(String(describing: e))")
        }
        var config = try parse(#"{"events": ["siren"], "event_settings": {"siren": {"max_duration": 5}}}"#)
        config.defaults.minDuration = 6  // as a flag would
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "event_settings.siren.max_duration")
            XCTAssertTrue("\(error)".contains("5.0 is not allowed; expected seconds, at least min_duration (6.0)"), "\(error)")
        }
        config.defaults.minDuration = 0.3
        config.defaults.mergeGap = -1
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "defaults.merge_gap")
        }
    }

    /// The fuzz corpus (Fuzz/corpus/config: seeds and past finds) runs through the fuzz target without a crash.
    func testFuzzCorpus() throws { try assertFuzzCorpusPasses("FuzzConfig") }
}
