import AudioCapture
import Foundation
import HTSAT
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The official configurations through the command line, read from the checkpoint alone: `scores` parity for
/// ESC-50 and Speech Commands V2, a contradicting `--preset` refused, `run` with each, and no CSV needed anywhere.
final class PresetCLITests: DaemonTestCase {
    private func scores(_ arguments: [String]) throws -> [String: Any] {
        let p = try DaemonProcess(["scores"] + arguments, in: dir)
        XCTAssertEqual(p.wait(timeout: 60), 0, p.stderr)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any], p.stdout)
    }

    /// Max |a - b| over two number arrays.
    private func maxError(_ got: Any?, _ expected: UnsafeBufferPointer<Float>) -> Float {
        let values = (got as? [NSNumber] ?? []).map(\.floatValue)
        XCTAssertEqual(values.count, expected.count)
        return zip(values, expected).map { abs($0 - $1) }.max() ?? .infinity
    }

    func testScoresMatchBothPresetsFromTheCheckpointAlone() throws {
        for preset in ["esc50", "scv2"] {
            let golden = try StateDict.load(contentsOf: try Fixtures.require("presets/\(preset)-golden.safetensors").path)
            let model = try Fixtures.require("presets/\(preset)-tiny.ckpt").path
            for clip in ["chirp", "speech", "noise"] {
                let input = try Fixtures.require("presets/\(preset)_\(clip).wav").path
                let json = try scores(["--model", model, "--input", input])
                XCTAssertEqual(json["preset"] as? String, preset)
                XCTAssertEqual(json["short_input"] as? String, "dataset")
                let err = maxError(json["clipwise"], try golden.floats("\(clip)/clipwise"))
                print("scores \(preset) \(clip): clipwise max error \(err)")
                XCTAssertLessThanOrEqual(err, 1e-4, "\(preset) \(clip)")
                if preset == "esc50" {
                    XCTAssertEqual(json["activation"] as? String, "softmax")
                    let p = (json["probabilities"] as? [NSNumber] ?? []).map(\.doubleValue)
                    XCTAssertEqual(p.count, 50)
                    XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-4)
                } else {
                    XCTAssertEqual(json["activation"] as? String, "sigmoid")
                    XCTAssertNil(json["probabilities"])
                }
                // --short-input raw is the official forward on the unrepeated clip.
                let raw = try scores(["--model", model, "--input", input, "--short-input", "raw"])
                XCTAssertLessThanOrEqual(maxError(raw["clipwise"], try golden.floats("\(clip)/raw_clipwise")), 1e-4, "\(preset) \(clip) raw")
            }
        }
    }

    func testAContradictingPresetIsRefusedNamingBoth() throws {
        let model = try Fixtures.require("presets/scv2-tiny.ckpt").path
        let input = try Fixtures.require("presets/scv2_speech.wav").path
        let p = try DaemonProcess(["scores", "--model", model, "--input", input, "--preset", "audioset"], in: dir)
        XCTAssertEqual(p.wait(timeout: 60), 1)
        XCTAssertTrue(p.stderr.contains("audioset") && p.stderr.contains("scv2"), p.stderr)
        let bad = try DaemonProcess(["scores", "--model", model, "--input", input, "--preset", "esc51"], in: dir)
        XCTAssertEqual(bad.wait(timeout: 60), 1)
        XCTAssertTrue(bad.stderr.contains("audioset, esc50, scv2"), bad.stderr)
    }

    /// `run` in file mode with each model: its own labels are the events, lines well formed, every start stopped.
    func testRunInFileModeWithEachPreset() throws {
        for (preset, events) in [("scv2", "yes,no,stop"), ("esc50", "dog,rooster,siren")] {
            let model = try Fixtures.require("presets/\(preset)-tiny.ckpt").path
            // A longer stream: the three clips, each repeated, back to back.
            var samples: [Float] = []
            for clip in ["chirp", "speech", "noise"] {
                let wav = try Fixtures.require("presets/\(preset)_\(clip).wav")
                let clipSamples = try AudioFileReader.readAll(path: wav.path, targetRate: preset == "scv2" ? 16000 : 32000)
                for _ in 0..<4 { samples += clipSamples }
            }
            let stream = dir.appendingPathComponent("\(preset).wav")
            try floatWAV(samples, rate: preset == "scv2" ? 16000 : 32000).write(to: stream)
            let p = try DaemonProcess(["--model", model, "--input", stream.path, "--events", events, "--threshold", "0.5",
                                       "--off-threshold", "0.3"], in: dir)
            XCTAssertEqual(p.wait(timeout: 120), 0, p.stderr)
            XCTAssertTrue(p.stderr.contains("\(preset)"), "the model loaded line names the configuration: \(p.stderr)")
            let lines = jsonLines(p.stdout)
            let starts = lines.filter { $0["type"] as? String == "start" }.map { $0["id"] as! Int }
            let stops = lines.filter { $0["type"] as? String == "stop" }.map { $0["id"] as! Int }
            XCTAssertEqual(Set(starts), Set(stops), p.stdout)
            XCTAssertTrue(lines.allSatisfy { events.split(separator: ",").map(String.init).contains($0["event"] as? String ?? "") }, p.stdout)
        }
        // The AudioSet groups are not required of these models, and unknown names still fail with suggestions.
        let model = try Fixtures.require("presets/scv2-tiny.ckpt").path
        let wav = try Fixtures.require("presets/scv2_speech.wav").path
        let p = try DaemonProcess(["--model", model, "--input", wav, "--events", "yess"], in: dir)
        XCTAssertEqual(p.wait(timeout: 60), 1)
        XCTAssertTrue(p.stderr.contains("yes"), p.stderr)
    }

    /// On a machine with no CSV anywhere: `events` lists the groups, and `run` works on a 527-class checkpoint.
    func testNoLabelsFileIsNeeded() throws {
        let events = try DaemonProcess(["events"], in: dir)
        XCTAssertEqual(events.wait(timeout: 30), 0, events.stderr)
        for name in ["dog_bark", "siren", "smoke_alarm", "desed", "desed_dog", "desed_vacuum_cleaner", "Civil defense siren"] {
            XCTAssertTrue(events.stdout.contains(name), "missing \(name) in\n\(events.stdout)")
        }
        let scv2 = try DaemonProcess(["events", "--model", try Fixtures.require("presets/scv2-tiny.ckpt").path], in: dir)
        XCTAssertEqual(scv2.wait(timeout: 30), 0, scv2.stderr)
        XCTAssertTrue(scv2.stdout.contains("marvin") || scv2.stdout.contains("Marvin"), scv2.stdout)
        XCTAssertFalse(scv2.stdout.contains("dog_bark"), scv2.stdout)

        // The detector alone in a directory, no labels beside it.
        let model = dir.appendingPathComponent("detector.ckpt")
        try FileManager.default.copyItem(at: try Fixtures.require("detector/detector.ckpt"), to: model)
        let wav = try Fixtures.require("detector/streams/dog_siren_32k.wav").path
        let p = try DaemonProcess(["--input", wav, "--model", model.path, "--events", "siren", "--threshold", "0.6",
                                   "--off-threshold", "0.4"], in: dir)
        XCTAssertEqual(p.wait(timeout: 120), 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("\"event\":\"siren\""), "the siren is found: \(p.stdout)\n\(p.stderr)")
        let desed = try DaemonProcess(["--input", wav, "--model", model.path, "--events", "desed"], in: dir)
        XCTAssertEqual(desed.wait(timeout: 120), 0, desed.stderr)
    }

    /// `run` live with the 16-kHz Speech Commands model: capture through ALSA at the checkpoint's rate, paced.
    func testRunLiveWithSpeechCommandsModel() throws {
        var samples: [Float] = []
        for clip in ["speech", "chirp", "noise", "speech"] {
            samples += try AudioFileReader.readAll(path: try Fixtures.require("presets/scv2_\(clip).wav").path, targetRate: 16000)
        }
        let conf = try alsaFileDevice("kws", samples: samples)
        let p = try DaemonProcess(["--model", try Fixtures.require("presets/scv2-tiny.ckpt").path, "--device", "kws",
                                   "--pace-realtime", "--events", "yes,no,stop", "--hop", "0.5"],
                                  in: dir, environment: ["ALSA_CONFIG_PATH": conf.path])
        XCTAssertTrue(eventually(timeout: 30) { p.stderr.contains("first window processed") }, p.stderr)
        XCTAssertTrue(p.stderr.contains("16000 Hz"), "captures at the checkpoint's rate: \(p.stderr)")
        p.signal(SIGTERM)
        XCTAssertEqual(p.wait(timeout: 10), 0, p.stderr)
        let lines = jsonLines(p.stdout)
        XCTAssertEqual(Set(lines.filter { $0["type"] as? String == "start" }.map { $0["id"] as! Int }),
                       Set(lines.filter { $0["type"] as? String == "stop" }.map { $0["id"] as! Int }), p.stdout)
    }
}
