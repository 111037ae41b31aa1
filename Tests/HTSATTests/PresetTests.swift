import AudioCapture
import Foundation
import HTSAT
import TestSupport
import XCTest

/// The ESC-50 and Speech Commands V2 checkpoints (fixtures/presets): configuration read from the checkpoint alone,
/// outputs as the official forward defines them, and short clips built as the official dataset code builds them.
final class PresetTests: XCTestCase {
    static let clips = ["chirp", "noise", "speech"]

    func testESC50FromTheCheckpointAlone() throws {
        let model = try load("esc50")
        XCTAssertEqual(model.profile.preset, .esc50)
        XCTAssertEqual(model.profile.description, "esc50: 50 classes and a mel filterbank for 32 kHz")
        XCTAssertNil(model.profile.note)
        XCTAssertEqual(model.config.preset, .esc50)
        XCTAssertEqual(model.config.activation, .softmax)
        XCTAssertEqual(model.config.signal, .esc50)
        try checkParity(model, "esc50")
    }

    func testSCV2FromTheCheckpointAlone() throws {
        let model = try load("scv2")
        XCTAssertEqual(model.profile.preset, .scv2)
        XCTAssertEqual(model.profile.description, "scv2: 35 classes and a mel filterbank for 16 kHz")
        XCTAssertEqual(model.config.activation, .sigmoid)
        XCTAssertEqual(model.config.signal, .scv2)
        try checkParity(model, "scv2")
    }

    func testTheAudioSetFixtureIsAudioSet() throws {
        let sd = try StateDict.load(contentsOf: Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path)
        let profile = try ModelProfile.infer(from: sd)
        XCTAssertEqual(profile.preset, .audioset)
        XCTAssertEqual(profile.signal, .audioSet)
        XCTAssertEqual(profile.activation, .sigmoid)
        XCTAssertEqual(try ModelProfile.infer(from: sd, preset: .audioset), profile)
    }

    func testAWrongPresetIsRejectedNamingBoth() throws {
        let scv2 = try StateDict.load(contentsOf: Fixtures.require("presets/scv2-tiny.ckpt").path)
        XCTAssertThrowsError(try HTSATModel(stateDict: scv2, preset: .audioset)) { error in
            guard case .presetMismatch(.audioset, let found, _)? = error as? ModelError else { return XCTFail("\(error)") }
            XCTAssertEqual(found, "scv2: 35 classes and a mel filterbank for 16 kHz")
            XCTAssertTrue("\(error)".hasPrefix("preset audioset was asked for, but the checkpoint "), "\(error)")
            XCTAssertTrue("\(error)".hasSuffix("scv2-tiny.ckpt is scv2: 35 classes and a mel filterbank for 16 kHz"), "\(error)")
        }
        // Same rate, other class count (ESC-50 vs AudioSet, both 32 kHz).
        let esc = try StateDict.load(contentsOf: Fixtures.require("presets/esc50-tiny.ckpt").path)
        XCTAssertThrowsError(try ModelProfile.infer(from: esc, preset: .audioset)) { error in
            XCTAssertEqual("\(error)".components(separatedBy: " is ").last, "esc50: 50 classes and a mel filterbank for 32 kHz")
        }
        XCTAssertThrowsError(try ModelProfile.infer(from: esc, preset: .scv2))
        XCTAssertEqual(try ModelProfile.infer(from: esc, preset: .esc50).preset, .esc50)
    }

    /// The short-clip policies, exactly: the dataset's repetition, zeros, or the clip itself.
    func testShortClipInputs() throws {
        let scv2 = try load("scv2").config, esc = try load("esc50").config
        let clip: [Float] = (0..<7747).map { Float($0 % 101) / 101 }
        let repeated = scv2.modelInput(clip, policy: .dataset)
        XCTAssertEqual(repeated.count, 160_000)
        XCTAssertTrue(repeated.indices.allSatisfy { repeated[$0] == clip[$0 % clip.count] })
        let padded = scv2.modelInput(clip, policy: .pad)
        XCTAssertEqual(padded.count, 160_000)
        XCTAssertEqual(Array(padded.prefix(clip.count)), clip)
        XCTAssertTrue(padded.dropFirst(clip.count).allSatisfy { $0 == 0 })
        XCTAssertEqual(scv2.modelInput(clip, policy: .raw), clip)
        // ESC-50's 5-s clips are concatenated with themselves.
        let five = (0..<160_000).map { Float($0 % 977) }
        XCTAssertEqual(esc.modelInput(five, policy: .dataset), five + five)
        // AudioSet's dataset pads; longer clips give their first window under every policy.
        let audioset = try HTSATModel(stateDict: StateDict.load(contentsOf: Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path)).config
        XCTAssertEqual(audioset.modelInput(clip, policy: .dataset), audioset.modelInput(clip, policy: .pad))
        let long = [Float](repeating: 1, count: 400_000)
        for policy in ShortClipPolicy.allCases { XCTAssertEqual(audioset.modelInput(long, policy: policy).count, 320_000) }
        XCTAssertEqual(scv2.modelInput([], policy: .dataset), [Float](repeating: 0, count: 160_000))
    }

    /// A class count of no preset: the filterbank's signal, sigmoid outputs, and a note saying so.
    func testUnknownClassCountFallsBackToTheFilterbank() throws {
        let scv2 = try StateDict.load(contentsOf: Fixtures.require("presets/scv2-tiny.ckpt").path)
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        for key in scv2.keys where scv2.dtype(of: key) == "float32" {
            let shape = scv2.shape(of: key)!
            tensors[key] = (shape, Array(try scv2.floats(key)))
        }
        // Keep the first 10 classes of the head.
        let conv = tensors["tscam_conv.weight"]!
        let perClass = conv.values.count / conv.shape[0]
        tensors["tscam_conv.weight"] = ([10] + conv.shape.dropFirst(), Array(conv.values.prefix(10 * perClass)))
        tensors["tscam_conv.bias"] = ([10], Array(tensors["tscam_conv.bias"]!.values.prefix(10)))
        tensors["head.weight"] = ([10, 10], [Float](repeating: 0, count: 100))
        tensors["head.bias"] = ([10], [Float](repeating: 0, count: 10))
        let sd = StateDict(tensors: tensors, source: "ten.ckpt")
        let profile = try ModelProfile.infer(from: sd)
        XCTAssertNil(profile.preset)
        XCTAssertEqual(profile.signal.sampleRate, 16000)
        XCTAssertEqual(profile.signal.hopSize, 160)
        XCTAssertEqual(profile.signal.clipSamples, 160_000)
        XCTAssertEqual(profile.activation, .sigmoid)
        XCTAssertEqual(profile.description, "an unknown model: 10 classes and a mel filterbank for 16 kHz")
        XCTAssertEqual(profile.note, "10 classes match no official preset (audioset 527, esc50 50, scv2 35): running it at the filterbank's 16 kHz (hop 160, 160000 samples per window) with sigmoid outputs")
        let model = try HTSATModel(stateDict: sd)
        XCTAssertEqual(model.infer([Float](repeating: 0.01, count: 16000)).clipwise.count, 10)
        // An explicit preset of the same rate is accepted, with a note about the labels.
        XCTAssertEqual(try ModelProfile.infer(from: sd, preset: .scv2).note,
                       "preset scv2 (35 classes) runs a checkpoint with 10 classes: its labels must come from a labels file")
        XCTAssertThrowsError(try ModelProfile.infer(from: sd, preset: .esc50))

        // A filterbank that fits no official rate.
        var odd = tensors
        var mel = odd["logmel_extractor.melW"]!
        for k in 0..<513 { mel.values[k * 64 + 60] = 0.5; mel.values[k * 64 + 10] = 0 }
        odd["logmel_extractor.melW"] = mel
        XCTAssertThrowsError(try ModelProfile.infer(from: StateDict(tensors: odd, source: "odd"))) { error in
            XCTAssertTrue("\(error)".contains("has 9 all-zero mel filters [10, 55, 56, 57, 58, 59, 61, 62, 63]"), "\(error)")
            XCTAssertTrue("\(error)".contains("has 0 at 32 kHz, 9 at 16 kHz"), "\(error)")
        }
    }

    // MARK: - helpers

    private func load(_ preset: String) throws -> HTSATModel {
        try HTSATModel(stateDict: StateDict.load(contentsOf: Fixtures.require("presets/\(preset)-tiny.ckpt").path))
    }

    /// Every clip, from the dataset pipeline's input (repeated) and from the raw clip, against the goldens.
    private func checkParity(_ model: HTSATModel, _ preset: String) throws {
        let golden = try StateDict.load(contentsOf: Fixtures.require("presets/\(preset)-golden.safetensors").path)
        let c = model.config
        var output = HTSATOutput(config: c)
        var worst: [String: Float] = [:]
        func check(_ got: [Float], _ key: String, _ label: String) throws {
            let expected = try golden.floats(key)
            XCTAssertEqual(got.count, expected.count, key)
            var err: Float = 0
            for i in 0..<min(got.count, expected.count) { err = max(err, abs(got[i] - expected[i])) }
            worst[label] = max(worst[label] ?? 0, err)
            XCTAssertLessThanOrEqual(err, 1e-4, "\(preset) \(key)")
        }
        for clip in PresetTests.clips {
            let path = try Fixtures.require("presets/\(preset)_\(clip).wav").path
            XCTAssertEqual(try AudioFileReader(path: path, targetRate: c.signal.sampleRate).sourceRate, c.signal.sampleRate)
            let samples = try AudioFileReader.readAll(path: path, targetRate: c.signal.sampleRate)
            XCTAssertLessThan(samples.count, c.signal.clipSamples)

            c.modelInput(samples, policy: .dataset).withUnsafeBufferPointer { model.infer($0, into: &output) }
            try check(output.clipwise, "\(clip)/clipwise", "clipwise")
            try check(output.framewise, "\(clip)/framewise", "framewise")
            try check(output.latent, "\(clip)/latent", "latent")
            if c.activation == .softmax {
                // clip_ce: the raw mean logit, its softmax as probabilities, and per-frame softmax for events.
                let logits = try golden.floats("\(clip)/clipwise").map(Double.init)
                let total = logits.map { exp($0) }.reduce(0, +)
                let probabilities = logits.map { Float(exp($0) / total) }
                var err: Float = 0
                for k in probabilities.indices { err = max(err, abs(output.probabilities[k] - probabilities[k])) }
                XCTAssertLessThanOrEqual(err, 1e-5, "\(preset) \(clip) probabilities")
                XCTAssertEqual(output.clipScores, output.probabilities)
                XCTAssertEqual(output.frameScores, output.frameProbabilities)
                XCTAssertEqual(output.frameProbabilities.count, output.framewise.count)
                try checkFrameSoftmax(output, classes: c.classes, clip: clip)
            } else {
                XCTAssertTrue(output.probabilities.isEmpty && output.frameProbabilities.isEmpty)
                XCTAssertEqual(output.clipScores, output.clipwise)
                XCTAssertEqual(output.frameScores, output.framewise)
            }

            c.modelInput(samples, policy: .raw).withUnsafeBufferPointer { model.infer($0, into: &output) }
            try check(output.clipwise, "\(clip)/raw_clipwise", "raw_clipwise")
            try check(output.framewise, "\(clip)/raw_framewise", "raw_framewise")
        }
        print("parity \(preset) (no preset given) max abs errors: \(worst.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }

    /// Each frame's probabilities: the softmax over classes of the logits behind `framewise` (its sigmoid).
    private func checkFrameSoftmax(_ output: HTSATOutput, classes: Int, clip: String) throws {
        for frame in stride(from: 0, to: output.framewise.count / classes, by: 97) {
            let row = frame * classes
            let logits = (0..<classes).map { k -> Double in
                let p = Double(output.framewise[row + k])
                return log(p / (1 - p))
            }
            let peak = logits.max()!
            let total = logits.map { exp($0 - peak) }.reduce(0, +)
            var sum: Float = 0
            for k in 0..<classes {
                sum += output.frameProbabilities[row + k]
                XCTAssertEqual(Double(output.frameProbabilities[row + k]), exp(logits[k] - peak) / total, accuracy: 1e-5, "\(clip) frame \(frame)")
            }
            XCTAssertEqual(sum, 1, accuracy: 1e-5)
        }
    }
}
