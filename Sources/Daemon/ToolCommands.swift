import ArgumentParser
import AudioCapture
import Detection
import Foundation
import HTSAT
import Sinks

/// Options shared by the commands that load a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model checkpoint: the official .ckpt, a torch.save state_dict or .safetensors.")
    var model: String = DaemonConfig.defaultModelPath
    @Option(help: "Signal preset of the checkpoint: audioset, esc50 or scv2.") var preset: String = "audioset"
    @Option(help: "Inference threads.") var threads: Int = 1

    func load() throws -> HTSATModel {
        var c = DaemonConfig()
        c.preset = try presetFlag(preset)
        return try loadModel(path: model, signal: c.signal.modelSignal, threads: threads)
    }
}

/// `htsatd scores`: the model's raw outputs for the first clip of a file, as one JSON object.
public struct Scores: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Print clipwise and framewise scores for the first window (10 s) of an audio file as JSON.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Audio file (WAV/FLAC/OGG, any rate and channel count; - reads stdin).") var input: String

    public init() {}

    public func run() throws {
        try runReportingErrors {
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
            let out = model.infer(samples)
            let c = model.config.classes
            let report = ScoresReport(
                clipwise: out.clipwise.map(finite),
                framewise: (0..<model.config.framewiseFrames).map { f in out.framewise[f * c..<(f + 1) * c].map(finite) },
                latent: out.latent.map(finite), sample_rate: signal.sampleRate, samples: samples.count)
            FileHandle.standardOutput.write(Data((LineEncoder.encode(report) + "\n").utf8))
        }
    }
}

/// `scores` output: the model's outputs as it gives them (non-finite values as null).
private struct ScoresReport: Encodable {
    let clipwise: [Float?], framewise: [[Float?]], latent: [Float?]
    let sample_rate: Int, samples: Int
}

private func finite(_ v: Float) -> Float? { v.isFinite ? v : nil }

/// `htsatd tag`: the top labels of every 10-s window of one or more files.
public struct Tag: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Print the top AudioSet labels with scores for each 10-s window of audio files.")

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "AudioSet class_labels_indices.csv (default: beside the model).") var labels: String?
    @Option(help: "Labels to show per window.") var top: Int = 5
    @Flag(help: "One JSON object per window instead of text.") var json = false
    @Argument(help: "Audio files (WAV/FLAC/OGG, any rate and channel count).") var files: [String]

    public init() {}

    public func run() throws {
        try runReportingErrors {
            let labelsPath = labels ?? DaemonConfig.labelsPath(besideModel: modelOptions.model)
            let names = try loadLabels(path: labelsPath)
            let model = try modelOptions.load()
            try names.validate(classes: model.config.classes)
            let clip = model.config.signal.clipSamples
            let rate = Double(model.config.signal.sampleRate)
            var output = HTSATOutput(config: model.config)
            for file in files {
                let samples = try AudioFileReader.readAll(path: file, targetRate: model.config.signal.sampleRate)
                var start = 0
                repeat {
                    let end = min(start + clip, samples.count)
                    samples[start..<end].withUnsafeBufferPointer { model.infer($0, into: &output, tap: nil) }
                    let best = output.clipwise.indices.sorted { output.clipwise[$0] > output.clipwise[$1] }.prefix(max(1, top))
                    let from = Double(start) / rate, to = Double(end) / rate
                    if json {
                        print(LineEncoder.encode(TagWindow(
                            file: file, start: from, end: to,
                            labels: best.map { TagWindow.Label(label: names.names[$0], score: Double(output.clipwise[$0])) })))
                    } else {
                        let text = best.map { "\(names.names[$0]) \(String(format: "%.3f", output.clipwise[$0]))" }
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

/// `htsatd events`: every event name the daemon accepts, with its AudioSet labels.
public struct Events: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "List the built-in event names and their AudioSet labels (any exact AudioSet label works too).")

    @Option(help: "AudioSet class_labels_indices.csv.")
    var labels: String = DaemonConfig.labelsPath(besideModel: DaemonConfig.defaultModelPath)

    public init() {}

    public func run() throws {
        try runReportingErrors {
            let catalog = try EventCatalog(labels: try loadLabels(path: labels))
            print(catalog.listing())
        }
    }
}
