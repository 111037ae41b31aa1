import ArgumentParser
import AudioCapture
import Detection
import Foundation
import HTSAT
import Sinks

/// Options shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model checkpoint: the official .ckpt, a weight-averaged or torch.save state_dict, or .safetensors.")
    var model: String = DaemonConfig.defaultModelPath
    @Option(help: "Check the checkpoint against this preset: audioset, esc50 or scv2 (default: read from the checkpoint).")
    var preset: String?
    @Option(help: "Inference threads.") var threads: Int = 1

    func load() throws -> HTSATModel {
        try loadModel(path: model, preset: preset.map(modelPreset), threads: threads)
    }
}

/// The `--short-input` flag: how a clip shorter than the window becomes the model input.
struct ShortInputOption: ParsableArguments {
    @Option(name: .customLong("short-input"),
            help: "Clips shorter than the window: dataset (as the preset's official dataset code: ESC-50 and SCV2 repeat the clip, AudioSet pads), pad (zeros) or raw (unchanged).")
    var shortInput: String = ShortClipPolicy.dataset.rawValue

    func policy() throws -> ShortClipPolicy {
        guard let policy = ShortClipPolicy(rawValue: shortInput) else {
            throw DaemonError("--short-input \(shortInput): expected one of \(ShortClipPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return policy
    }
}

/// `htsatd scores`: the model's raw outputs for the first clip of a file, as one JSON object.
public struct Scores: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Print clipwise and framewise scores for the first window (10 s) of an audio file as JSON.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var shortInput: ShortInputOption
    @Option(help: "Audio file (WAV/FLAC/OGG, any rate and channel count; - reads stdin).") var input: String

    public init() {}

    public func run() throws {
        try runReportingErrors {
            let policy = try shortInput.policy()
            let model = try modelOptions.load()
            let signal = model.config.signal
            // Decode only the first clip: a long recording is never held in memory whole.
            let reader = try AudioFileReader(path: input, targetRate: signal.sampleRate)
            var samples = [Float](repeating: 0, count: signal.clipSamples)
            var filled = 0
            while filled < samples.count {
                let n = try samples.withUnsafeMutableBufferPointer {
                    try reader.read(into: UnsafeMutableBufferPointer(rebasing: $0[filled...]))
                }
                if n == 0 { break }
                filled += n
            }
            samples.removeSubrange(filled...)
            let out = model.infer(model.config.modelInput(samples, policy: policy))
            let c = model.config.classes
            let report = ScoresReport(
                preset: model.config.preset?.rawValue, activation: model.config.activation.rawValue,
                clipwise: out.clipwise.map(finite),
                probabilities: out.probabilities.isEmpty ? nil : out.probabilities.map(finite),
                framewise: (0..<model.config.framewiseFrames).map { f in out.framewise[f * c..<(f + 1) * c].map(finite) },
                latent: out.latent.map(finite), sample_rate: signal.sampleRate, samples: samples.count,
                short_input: samples.count < signal.clipSamples ? policy.rawValue : nil)
            FileHandle.standardOutput.write(Data((LineEncoder.encode(report) + "\n").utf8))
        }
    }
}

/// `scores` output: the model's outputs as the official forward gives them (non-finite values as null), and the
/// configuration read from the checkpoint. `clipwise` is the raw mean logit for ESC-50 (`clip_ce`), whose softmax is
/// `probabilities`; a sigmoid otherwise.
private struct ScoresReport: Encodable {
    let preset: String?, activation: String
    let clipwise: [Float?], probabilities: [Float?]?, framewise: [[Float?]], latent: [Float?]
    let sample_rate: Int, samples: Int, short_input: String?
}

private func finite(_ v: Float) -> Float? { v.isFinite ? v : nil }

/// `htsatd tag`: the top labels of every 10-s window of one or more files.
public struct Tag: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Print the top AudioSet labels with scores for each 10-s window of audio files.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var shortInput: ShortInputOption
    @Option(help: "Labels CSV (index,mid,display_name); default: the built-in set for the model's class count.") var labels: String?
    @Option(help: "Labels to show per window.") var top: Int = 5
    @Flag(help: "One JSON object per window instead of text.") var json = false
    @Argument(help: "Audio files (WAV/FLAC/OGG, any rate and channel count).") var files: [String]

    public init() {}

    public func run() throws {
        try runReportingErrors {
            let policy = try shortInput.policy()
            let model = try modelOptions.load()
            let names = try AudioSetLabels.forModel(classes: model.config.classes, labelsFile: labels)
            let clip = model.config.signal.clipSamples
            let rate = Double(model.config.signal.sampleRate)
            var output = HTSATOutput(config: model.config)
            for file in files {
                let samples = try AudioFileReader.readAll(path: file, targetRate: model.config.signal.sampleRate)
                var start = 0
                repeat {
                    let end = min(start + clip, samples.count)
                    model.config.modelInput(samples[start..<end], policy: policy).withUnsafeBufferPointer { model.infer($0, into: &output, tap: nil) }
                    // Probabilities for a softmax model (ESC-50), sigmoid scores otherwise.
                    let scores = output.clipScores
                    let best = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(max(1, top))
                    let from = Double(start) / rate, to = Double(end) / rate
                    if json {
                        print(LineEncoder.encode(TagWindow(
                            file: file, start: from, end: to,
                            labels: best.map { TagWindow.Label(label: names.names[$0], score: Double(scores[$0])) })))
                    } else {
                        let text = best.map { "\(names.names[$0]) \(String(format: "%.3f", scores[$0]))" }
                        print("\(file) [\(String(format: "%.1f", from))-\(String(format: "%.1f", to)) s]  \(text.joined(separator: ", "))")
                    }
                    start = end
                } while start < samples.count
            }
        }
    }
}

/// One `tag --json` line: a window of a file and its top labels.
private struct TagWindow: Encodable {
    struct Label: Encodable { let label: String; let score: Double }
    let file: String, start: Double, end: Double, labels: [Label]
}

/// `htsatd events`: every event name the daemon accepts, with its labels.
public struct Events: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "List the event names: the built-in groups and sets with their AudioSet labels, or a model's own labels.")

    @Option(help: "Labels CSV (index,mid,display_name); default: the built-in AudioSet labels, or the set matching --model.")
    var labels: String?
    @Option(help: "List the events of this checkpoint (its class count chooses the label set).") var model: String?
    @Option(name: .customLong("custom-events"), help: "Comma-separated custom event files from 'htsatd enroll' to list too.")
    var customEvents: [String] = []

    public init() {}

    public func run() throws {
        try runReportingErrors {
            let classes = try model.map { try ModelProfile.infer(from: StateDict.load(contentsOf: $0)).classes }
            let set = try classes.map { try AudioSetLabels.forModel(classes: $0, labelsFile: labels) }
                ?? (try labels.map { try AudioSetLabels(contentsOf: URL(fileURLWithPath: $0)) } ?? .audioSet)
            let custom = try customEvents.flatMap { $0.split(separator: ",") }.map { try CustomEvent.load(contentsOf: String($0)) }
            print(try EventCatalog(labels: set, custom: custom).listing())
        }
    }
}
