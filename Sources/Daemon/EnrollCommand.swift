import ArgumentParser
import AudioCapture
import Detection
import Foundation
import HTSAT

/// `htsatd enroll`: teaches a custom event from a few recordings of it (and, ideally, of what it must not be).
public struct Enroll: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Teach a custom event from 3-10 short recordings of it; writes an event file for --custom-events.",
        discussion: """
        Each positive example holds the sound (2-10 s, any rate or channel count; they are resampled). Negatives are \
        recordings of the room's normal sound and of near misses. The event file is only valid with the model it was \
        enrolled with. The report gives each example's leave-one-out score and the background's scores.
        """)

    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "The event's name (lowercase letters, digits, _), as used in --events and event lines.") var name: String
    @Option(name: .customLong("negative"), help: "A background or near-miss recording (repeatable).") var negatives: [String] = []
    @Option(help: "Where to write the event file (JSON).") var output: String
    @Option(help: "Labels CSV of the model (to check that the name is free); default: the built-in set for its class count.")
    var labels: String?
    @Argument(help: "The positive examples.") var positives: [String] = []

    public init() {}

    /// Gains of the enrolled copies of each positive: the sound heard farther away too. A -20 dB copy as well found
    /// quieter occurrences of sustained sounds but made a short click's prototypes match plain room noise (README).
    static let gainsDB: [Float] = [0, -10]
    /// Shortest positive example accepted, in seconds (a 10-s window holds 32 steps of 0.31 s).
    static let minimumSeconds = 1.0
    /// Negatives longer than this many windows are cut to their first windows.
    static let maximumNegativeWindows = 6

    public func run() throws {
        try runReportingErrors {
            guard !positives.isEmpty else {
                throw DaemonError("no positive examples: give 3 to 10 recordings of the sound (2-10 s each) after the options")
            }
            guard positives.count >= 3 else {
                throw DaemonError("\(positives.count) positive example(s): give at least 3 recordings of the sound (5 to 10 are better), so that each can be checked against the others")
            }
            guard EventCatalog.isValidCustomName(name) else { throw CustomEventError.badName(name: name) }
            let model = try modelOptions.load()
            let catalog = try EventCatalog(labels: AudioSetLabels.forModel(classes: model.config.classes, labelsFile: labels))
            if let taken = catalog.collision(for: name) { throw CustomEventError.nameCollides(name: name, with: taken) }

            let embedder = Embedder(model: model)
            var positiveExamples: [CustomEventEnrollment.Example] = [], background: [CustomEventEnrollment.Example] = []
            for path in positives {
                let (example, context) = try positive(path, embedder: embedder, seed: UInt64(background.count) &+ 7)
                positiveExamples.append(example)
                background.append(context)
            }
            for path in negatives { background.append(try negative(path, embedder: embedder)) }
            background.append(noiseFloors(embedder: embedder))

            let identity = CustomEvent.ModelIdentity(fingerprint: model.fingerprint(), features: model.config.numFeatures,
                                                     file: modelOptions.model)
            let event = CustomEventEnrollment.enroll(name: name, model: identity, positives: positiveExamples, background: background)
            do { try event.write(to: output) } catch {
                throw DaemonError("cannot write \(output): \((error as NSError).localizedDescription)")
            }
            print(event.report.text(name: name, thresholds: event.thresholds), terminator: "")
            print("wrote \(output): use it with --custom-events \(output) --events \(name)")
        }
    }

    /// A positive example's views (its sounding steps at each of `gainsDB`), and its context as background: the
    /// example once, in a window of its own noise floor, whose frames away from the sound carry its context (the
    /// last stage attends over the whole window) but not the sound; without them a custom event would last as long
    /// as any window still holds the sound.
    private func positive(_ path: String, embedder: Embedder, seed: UInt64) throws
        -> (example: CustomEventEnrollment.Example, context: CustomEventEnrollment.Example) {
        let signal = embedder.model.config.signal, steps = embedder.model.config.tokenSteps
        let samples = try AudioFileReader.readAll(path: path, targetRate: signal.sampleRate)
        let seconds = Double(samples.count) / Double(signal.sampleRate)
        guard seconds >= Self.minimumSeconds else {
            throw DaemonError("positive example \(path) is \(String(format: "%.2f", seconds)) s long: each needs at least \(Self.minimumSeconds) s of the sound (2-10 s is best)")
        }
        guard seconds <= signal.clipSeconds + 0.5 else {
            throw DaemonError("positive example \(path) is \(String(format: "%.1f", seconds)) s long: trim it to the sound (2-\(Int(signal.clipSeconds)) s), so that it holds little else")
        }
        // Tiled to a whole window, not zero-padded: real windows are full of sound, and padding would calibrate on
        // frames that never occur live (too high thresholds).
        let window = tile(samples, to: signal.clipSamples)
        guard let sounding = CustomEventEnrollment.soundingSteps(window, steps: steps) else {
            throw DaemonError("positive example \(path) is silent (below -60 dBFS): record the sound closer, or check the input level")
        }
        let views = Self.gainsDB.map { db in
            embedder.embeddings(window, gain: powf(10, db / 20)).enumerated().filter { sounding[$0.offset] }.map(\.element)
        }
        let floor = Self.noiseFloor(samples)
        let context = [0.2, 0.6].map { at -> [[Float]] in
            var window = Self.noise(count: signal.clipSamples, seed: seed)
            for i in window.indices { window[i] *= floor }
            let offset = Int(at * Double(signal.clipSamples))
            for (i, x) in samples.enumerated() where offset + i < window.count { window[offset + i] = x }
            let near = CustomEventEnrollment.soundingSteps(window, steps: steps) ?? []
            let embeddings = embedder.embeddings(window, gain: 1)
            return embeddings.indices.filter { t in !near[max(t - 1, 0)...min(t + 1, near.count - 1)].contains(true) }.map { embeddings[$0] }
        }
        return (.init(file: path, views: views), .init(file: "", views: context))
    }

    /// A negative recording's views: its first `maximumNegativeWindows` windows, each tiled to a full window.
    private func negative(_ path: String, embedder: Embedder) throws -> CustomEventEnrollment.Example {
        let signal = embedder.model.config.signal
        let samples = try AudioFileReader.readAll(path: path, targetRate: signal.sampleRate)
        guard Double(samples.count) >= Self.minimumSeconds * Double(signal.sampleRate) else {
            throw DaemonError("negative example \(path) is shorter than \(Self.minimumSeconds) s: give at least a few seconds of the background")
        }
        var views: [[[Float]]] = []
        var start = 0
        while start < samples.count && views.count < Self.maximumNegativeWindows {
            let end = min(start + signal.clipSamples, samples.count)
            // A last stretch under a second would only repeat itself; the earlier windows cover it.
            if end - start >= signal.sampleRate || views.isEmpty {
                views.append(embedder.embeddings(tile(Array(samples[start..<end]), to: signal.clipSamples), gain: 1))
            }
            start = end
        }
        return .init(file: path, views: views)
    }

    /// Stationary noise floors, always background: white and brown from a quiet to a noisy room, so that a room's
    /// hiss does not score even at a level the examples and negatives do not show.
    private func noiseFloors(embedder: Embedder) -> CustomEventEnrollment.Example {
        let clipSamples = embedder.model.config.signal.clipSamples
        return .init(file: "", views: [-70, -55, -40].flatMap { db in
            [false, true].map { brown in
                embedder.embeddings(Self.noise(count: clipSamples, seed: UInt64(-db), brown: brown), gain: powf(10, db / 20))
            }
        })
    }

    /// `samples` repeated to `count` (cut at `count`).
    private func tile(_ samples: [Float], to count: Int) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(count)
        while out.count < count { out += samples.prefix(count - out.count) }
        return out
    }

    /// RMS of the quietest tenth of 10-ms blocks: the recording's noise floor.
    static func noiseFloor(_ samples: [Float]) -> Float {
        let block = 320
        let levels = stride(from: 0, to: samples.count - block + 1, by: block).map { start -> Float in
            var e: Float = 0
            for x in samples[start..<start + block] { e += x * x }
            return (e / Float(block)).squareRoot()
        }.sorted()
        return levels.isEmpty ? 0 : levels[levels.count / 10]
    }

    /// Deterministic noise of unit RMS: white (SplitMix64 uniforms), or brown (leaky-integrated white).
    static func noise(count: Int, seed: UInt64, brown: Bool = false) -> [Float] {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        var level: Float = 0
        let out = (0..<count).map { _ -> Float in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let white = Float(z >> 40) / Float(1 << 24) * 2 - 1
            level = brown ? 0.98 * level + white : white
            return level
        }
        let rms = (out.reduce(0) { $0 + $1 * $1 } / Float(max(count, 1))).squareRoot()
        return out.map { $0 / max(rms, 1e-12) }
    }
}

/// Runs the model on one window and returns its frame embeddings (one vector per time step).
private final class Embedder {
    let model: HTSATModel
    var output: HTSATOutput
    var scratch: [Float]

    init(model: HTSATModel) {
        self.model = model
        output = HTSATOutput(config: model.config, embeddings: true)
        scratch = [Float](repeating: 0, count: model.config.signal.clipSamples)
    }

    func embeddings(_ window: [Float], gain: Float) -> [[Float]] {
        for i in scratch.indices { scratch[i] = i < window.count ? window[i] * gain : 0 }
        scratch.withUnsafeBufferPointer { model.infer($0, into: &output) }
        let d = model.config.numFeatures
        return (0..<model.config.tokenSteps).map { Array(output.embeddings[$0 * d..<($0 + 1) * d]) }
    }
}
