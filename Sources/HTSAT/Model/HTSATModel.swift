import COpenBLAS
import Foundation
import FrontEnd

/// One window's outputs.
public struct HTSATOutput {
    /// Clip-level scores, one per class (sigmoid of the time-mean of the token-semantic logits).
    public var clipwise: [Float]
    /// Frame-level scores, `framewiseFrames x classes`, frame-major.
    public var framewise: [Float]
    /// The mean of the final tokens (`latent_output`), `numFeatures` values.
    public var latent: [Float]

    /// Empty arrays; `infer` sizes them on first use.
    public init() {
        clipwise = []
        framewise = []
        latent = []
    }

    /// Arrays already sized for `config`, so that `infer` never allocates.
    public init(config: HTSATConfig) {
        clipwise = [Float](repeating: 0, count: config.classes)
        framewise = [Float](repeating: 0, count: config.framewiseFrames * config.classes)
        latent = [Float](repeating: 0, count: config.numFeatures)
    }
}

/// The HTS-AT network with its reusable scratch buffers; one inference at a time per instance.
///
/// log-mel front end -> bn0 -> bicubic stretch and fold to a square image -> patch embedding ->
/// Swin stages (window attention, patch merging) -> LayerNorm -> token-semantic head.
public final class HTSATModel {
    /// The architecture inferred from the checkpoint, with the signal parameters.
    public let config: HTSATConfig
    /// Kept alive because the layers read its weights without copying.
    private let stateDict: StateDict
    private let stft: STFT
    private let logMel: LogMel
    private let bn0: BatchNorm0
    private let toImage: SpectrogramImage
    private let patchEmbed: PatchEmbed
    private let layers: [BasicLayer]
    private let norm: LayerNorm
    private let head: TokenSemanticHead
    private let ws: Workspace

    /// Infers the architecture from `stateDict`, validates every tensor it uses, and allocates all buffers.
    /// `threads` sets OpenBLAS's (process-wide) thread count.
    public init(stateDict sd: StateDict, signal: SignalConfig = .audioSet, threads: Int = 1) throws {
        guard threads >= 1 else { throw ModelError.invalidArgument(detail: "threads = \(threads), must be at least 1") }
        openblas_set_num_threads(Int32(threads))
        let config = try HTSATConfig.infer(from: sd, signal: signal)
        self.config = config
        stateDict = sd

        let bins = config.nFFT / 2 + 1
        for key in ["spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight"]
        where sd.shape(of: key) != nil {
            // Not read (an FFT computes the same product), but a wrong shape means a different front end.
            _ = try sd.floats(key, shape: [bins, 1, config.nFFT])
        }
        stft = try STFT(nFFT: config.nFFT, hopLength: signal.hopSize)
        logMel = try LogMel(melW: try sd.floats("logmel_extractor.melW", shape: [bins, config.melBins]),
                            bins: bins, mels: config.melBins)
        bn0 = try BatchNorm0(sd, channels: config.melBins)
        toImage = SpectrogramImage(config: config)
        patchEmbed = try PatchEmbed(sd, config: config)
        layers = try (0..<config.stageCount).map { try BasicLayer(sd, stage: $0, config: config) }
        norm = try LayerNorm(sd, "norm", dim: config.numFeatures)
        head = try TokenSemanticHead(sd, config: config)
        let hiddenValues = layers.flatMap(\.blocks).map { $0.tokens * $0.mlp.hidden }.max()!
        ws = Workspace(config: config, bins: bins, hiddenValues: hiddenValues)
    }

    /// Runs one clip; `samples.count` <= config.signal.clipSamples (longer input: the first clipSamples are used).
    /// A shorter clip runs on its own `count / hop + 1` frames, stretched to the image like the official forward.
    /// `tap` receives named intermediates (the golden keys: logmel, bn0, image, patch_embed, layer0..3, norm,
    /// tscam_logits, latent, clipwise, framewise) when non-nil; its buffers are valid only during the call.
    public func infer(_ samples: UnsafeBufferPointer<Float>, into output: inout HTSATOutput,
                      tap: ((String, UnsafeBufferPointer<Float>) -> Void)? = nil) {
        let c = config
        let input = UnsafeBufferPointer(rebasing: samples[0..<min(samples.count, c.signal.clipSamples)])
        let frames = stft.frameCount(sampleCount: input.count)

        // Front end: power spectrogram -> log-mel (dB).
        stft.power(input, into: ws.power.p)
        logMel.apply(power: ws.power.p, frames: frames, into: ws.spectrogram.p)
        runNetwork(frames: frames, into: &output, tap: tap)
    }

    /// Runs the network from a log-mel spectrogram (`frames x melBins` dB values, frame-major, the `logmel` tap),
    /// skipping the STFT; frames beyond `config.signal.clipFrames` are ignored.
    public func infer(logMel: UnsafeBufferPointer<Float>, into output: inout HTSATOutput,
                      tap: ((String, UnsafeBufferPointer<Float>) -> Void)? = nil) {
        let frames = min(logMel.count / config.melBins, config.signal.clipFrames)
        if frames > 0 { ws.spectrogram.p.update(from: logMel.baseAddress!, count: frames * config.melBins) }
        // No frame at all: one silent frame (the floor of the log), as an empty clip gives.
        else { ws.spectrogram.p.update(repeating: 10 * log10f(LogMel.amin), count: config.melBins) }
        runNetwork(frames: max(frames, 1), into: &output, tap: tap)
    }

    /// bn0 onwards, from the log-mel frames in `ws.spectrogram`.
    private func runNetwork(frames: Int, into output: inout HTSATOutput, tap: ((String, UnsafeBufferPointer<Float>) -> Void)?) {
        let c = config
        tap?("logmel", ws.spectrogram.prefix(frames * c.melBins))
        bn0(ws.spectrogram.p, frames: frames)
        tap?("bn0", ws.spectrogram.prefix(frames * c.melBins))

        // reshape_wav2img, then patch embedding.
        toImage(ws.spectrogram.p, frames: frames, mels: c.melBins, stretched: ws.stretched.p,
                scratch: ws.stretchScratch.p, image: ws.image.p)
        tap?("image", ws.image.prefix(c.specSize * c.specSize))
        patchEmbed(ws.image.p, patches: ws.patches.p, into: ws.x.p)
        tap?("patch_embed", ws.x.prefix(c.gridSize * c.gridSize * c.embedDim))

        // Swin stages.
        for (i, layer) in layers.enumerated() {
            layer(ws.x.p, ws: ws)
            if let tap {
                let merged = i < c.stageCount - 1 ? 1 : 0
                let res = c.resolution(stage: i + merged)
                tap("layer\(i)", ws.x.prefix(res * res * c.channels(stage: i + merged)))
            }
        }
        let last = c.resolution(stage: c.stageCount - 1)
        norm(ws.x.p, rows: last * last, into: ws.x.p)
        tap?("norm", ws.x.prefix(last * last * c.numFeatures))

        // Token-semantic head and the three outputs.
        head(ws.x.p, ws: ws, latent: ws.latent.p, logits: ws.logits.p)
        tap?("tscam_logits", ws.logits.prefix(c.classes * c.tokenSteps))
        tap?("latent", ws.latent.prefix(c.numFeatures))
        let steps = c.tokenSteps, repeatCount = c.framewiseRepeat, classes = c.classes
        for k in 0..<classes {
            let row = ws.logits.p + k * steps
            var sum: Float = 0
            for t in 0..<steps { sum += row[t] }
            ws.clipwise.p[k] = sigmoid(sum / Float(steps))
        }
        if output.clipwise.count != classes { output.clipwise = [Float](repeating: 0, count: classes) }
        if output.latent.count != c.numFeatures { output.latent = [Float](repeating: 0, count: c.numFeatures) }
        if output.framewise.count != c.framewiseFrames * classes {
            output.framewise = [Float](repeating: 0, count: c.framewiseFrames * classes)
        }
        output.clipwise.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: ws.clipwise.p, count: classes) }
        output.latent.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: ws.latent.p, count: c.numFeatures) }
        output.framewise.withUnsafeMutableBufferPointer { out in
            let f = out.baseAddress!
            for t in 0..<steps {
                let first = f + t * repeatCount * classes
                for k in 0..<classes { first[k] = sigmoid(ws.logits.p[k * steps + t]) }
                for r in 1..<max(repeatCount, 1) { (first + r * classes).update(from: first, count: classes) }
            }
            tap?("framewise", UnsafeBufferPointer(out))
        }
        tap?("clipwise", ws.clipwise.prefix(classes))
    }

    /// Convenience: runs one clip and returns fresh outputs.
    public func infer(_ samples: [Float]) -> HTSATOutput {
        var output = HTSATOutput(config: config)
        samples.withUnsafeBufferPointer { infer($0, into: &output) }
        return output
    }
}
