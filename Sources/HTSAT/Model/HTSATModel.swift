import CHTSATKernels
import Foundation
import FrontEnd

/// One window's outputs, as the official forward defines them for the checkpoint's loss.
public struct HTSATOutput {
    /// Clip-level outputs, one per class: the sigmoid of the time-mean of the token-semantic logits, or for a
    /// softmax (`clip_ce`, ESC-50) model that time-mean itself, unactivated, as the official forward returns it.
    public var clipwise: [Float]
    /// Frame-level outputs, `framewiseFrames x classes`, frame-major: the sigmoid of the token-semantic logits
    /// (every preset, ESC-50 included), each token step repeated `framewiseRepeat` times.
    public var framewise: [Float]
    /// The mean of the final tokens (`latent_output`), `numFeatures` values.
    public var latent: [Float]
    /// Frame embeddings, `tokenSteps x numFeatures`, step-major: the final tokens after `norm` (what `tscam_conv`
    /// reads), averaged over the head's frequency rows, one vector per time step of `framewise`. Computed only when
    /// asked for (`init(config:embeddings: true)`, or a non-empty array); empty otherwise.
    public var embeddings: [Float]
    /// Softmax models only: the softmax over classes of `clipwise` (the class probabilities); empty otherwise.
    public var probabilities: [Float]
    /// Softmax models only: per frame, the softmax over classes of the token-semantic logits,
    /// `framewiseFrames x classes`; empty otherwise.
    public var frameProbabilities: [Float]

    /// Clip scores in [0, 1] to rank and report (`tag`): `probabilities` for a softmax model, else `clipwise`.
    public var clipScores: [Float] { probabilities.isEmpty ? clipwise : probabilities }

    /// Frame scores in [0, 1] for the event detector: `frameProbabilities` for a softmax model, else `framewise`.
    ///
    /// A `clip_ce` model learns only differences between its logits (the softmax ignores a shift shared by all
    /// classes), so the sigmoid of one logit has no calibrated meaning and a fixed threshold on it would depend on
    /// an arbitrary offset. The per-frame softmax is what that loss trained: a distribution over the classes, whose
    /// mass spreads thin when no class is present. The detector therefore thresholds `frameProbabilities`.
    public var frameScores: [Float] { frameProbabilities.isEmpty ? framewise : frameProbabilities }

    /// Empty arrays; `infer` sizes them on first use.
    public init() {
        clipwise = []
        framewise = []
        latent = []
        embeddings = []
        probabilities = []
        frameProbabilities = []
    }

    /// Arrays already sized for `config`, so that `infer` never allocates; `embeddings` only if asked for.
    public init(config: HTSATConfig, embeddings withEmbeddings: Bool = false) {
        let softmax = config.activation == .softmax
        clipwise = [Float](repeating: 0, count: config.classes)
        framewise = [Float](repeating: 0, count: config.framewiseFrames * config.classes)
        latent = [Float](repeating: 0, count: config.numFeatures)
        embeddings = [Float](repeating: 0, count: withEmbeddings ? config.tokenSteps * config.numFeatures : 0)
        probabilities = [Float](repeating: 0, count: softmax ? config.classes : 0)
        frameProbabilities = [Float](repeating: 0, count: softmax ? config.framewiseFrames * config.classes : 0)
    }
}

/// The arithmetic of the linear layers.
public enum HTSATPrecision: Sendable, Equatable {
    /// float32 throughout: parity with the official model (the default).
    case float32
    /// Opt-in: weights and activations rounded to bfloat16 for the linear layers, products summed in float32
    /// (AVX512-BF16 only). Faster; scores drift from float32 by about 1e-3 on the trained detector fixture (1e-2
    /// on the random parity fixture); the bfloat16 weight copy adds about 57 MB resident for the full model.
    case bfloat16
}

/// Wall-clock milliseconds of the parts of one inference, filled by `infer(_:into:times:)`.
public struct StageTimes: Sendable, Equatable {
    /// STFT and log-mel.
    public var frontEnd: Double = 0
    /// bn0, the spectrogram image and the patch embedding.
    public var embed: Double = 0
    /// Each Swin stage, with its patch merging.
    public var stages: [Double] = []
    /// Final LayerNorm, token-semantic head and the three outputs.
    public var head: Double = 0

    /// Sum of the parts.
    public var total: Double { frontEnd + embed + stages.reduce(0, +) + head }

    /// All zero.
    public init() {}
}

/// The HTS-AT network with its reusable scratch buffers; one inference at a time per instance.
///
/// log-mel front end -> bn0 -> bicubic stretch and fold to a square image -> patch embedding ->
/// Swin stages (window attention, patch merging) -> LayerNorm -> token-semantic head.
public final class HTSATModel {
    /// The architecture inferred from the checkpoint, with the signal parameters.
    public let config: HTSATConfig
    /// Kept alive because the layers read its weights without copying.
    let stateDict: StateDict
    /// The STFT frames of a clip, shared across the pool (one STFT per thread).
    private let frontEnd: FrontEndJob
    let logMel: LogMel
    private let bn0: BatchNorm0
    private let toImage: SpectrogramImage
    private let patchEmbed: PatchEmbed
    private let layers: [BasicLayer]
    private let norm: LayerNorm
    private let head: TokenSemanticHead
    private let ws: Workspace
    /// The kernels' thread pool (nil for one thread).
    private let pool: OpaquePointer?

    /// The arithmetic of the linear layers.
    public let precision: HTSATPrecision

    /// The instruction set the kernels run with on this CPU ("avx512", "avx2" or "generic").
    public static var kernelISA: String { String(cString: hk_isa()) }

    /// The cache budgets (bytes) the kernels block their loops for: 3/4 of a core's L1 data cache and of its L2.
    public static var kernelCacheShares: (l1: Int, l2: Int) {
        var l1 = 0, l2 = 0
        hk_cache_shares(&l1, &l2)
        return (l1, l2)
    }

    /// Whether this CPU runs `HTSATPrecision.bfloat16` (AVX512-BF16).
    public static var supportsBFloat16: Bool { hk_bf16_supported() != 0 }

    /// What the checkpoint is (preset, signal, activation), as inferred or checked at load.
    public let profile: ModelProfile

    /// Reads the configuration from the checkpoint alone (`preset` nil), or checks `preset` against it (a
    /// contradiction throws `ModelError.presetMismatch`), validates every tensor it uses and allocates all buffers.
    /// `threads` threads (this model's own pool: the calling thread plus threads - 1 workers) run each inference.
    public convenience init(stateDict sd: StateDict, preset: ModelPreset? = nil, threads: Int = 1,
                            precision: HTSATPrecision = .float32) throws {
        try self.init(stateDict: sd, profile: try ModelProfile.infer(from: sd, preset: preset), threads: threads,
                      precision: precision)
    }

    /// With signal parameters set by the caller instead of read from the checkpoint; the preset and activation
    /// still come from the class count when the signal is that preset's.
    public convenience init(stateDict sd: StateDict, signal: SignalConfig, threads: Int = 1,
                            precision: HTSATPrecision = .float32) throws {
        let classes = sd.shape(of: "tscam_conv.weight")?.first ?? 0
        let preset = ModelPreset(classes: classes).flatMap { $0.signal == signal ? $0 : nil }
        let kernels = sd.shape(of: "spectrogram_extractor.stft.conv_real.weight")
        let profile = ModelProfile(preset: preset, classes: classes, filterbankRate: signal.sampleRate,
                                   nFFT: kernels?.last ?? 0, signal: signal, activation: preset?.activation ?? .sigmoid)
        try self.init(stateDict: sd, profile: profile, threads: threads, precision: precision)
    }

    /// Builds the model for an already inferred (or hand-made) profile; `.bfloat16` throws on a CPU without
    /// AVX512-BF16.
    public init(stateDict sd: StateDict, profile: ModelProfile, threads: Int = 1, precision: HTSATPrecision = .float32) throws {
        let signal = profile.signal
        guard threads >= 1, threads <= 256 else {
            throw ModelError.invalidArgument(detail: "threads = \(threads), must be between 1 and 256")
        }
        guard precision == .float32 || HTSATModel.supportsBFloat16 else {
            throw ModelError.invalidArgument(detail: "bfloat16 needs a CPU with AVX512-BF16; use float32")
        }
        self.precision = precision
        var config = try HTSATConfig.infer(from: sd, signal: signal)
        config.preset = profile.preset
        config.activation = profile.activation
        self.config = config
        self.profile = profile
        stateDict = sd

        let bins = config.nFFT / 2 + 1
        for key in ["spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight"]
        where sd.shape(of: key) != nil {
            // Not read (an FFT computes the same product), but a wrong shape means a different front end.
            _ = try sd.floats(key, shape: [bins, 1, config.nFFT])
        }
        let stfts = try (0..<threads).map { _ in try STFT(nFFT: config.nFFT, hopLength: signal.hopSize) }
        logMel = try LogMel(melW: try sd.floats("logmel_extractor.melW", shape: [bins, config.melBins]),
                            bins: bins, mels: config.melBins)
        bn0 = try BatchNorm0(sd, channels: config.melBins)
        toImage = SpectrogramImage(config: config)
        patchEmbed = try PatchEmbed(sd, config: config)
        layers = try (0..<config.stageCount).map { try BasicLayer(sd, stage: $0, config: config, precision: precision) }
        norm = try LayerNorm(sd, "norm", dim: config.numFeatures)
        head = try TokenSemanticHead(sd, config: config, layout: layers[config.stageCount - 1].layout, precision: precision)
        if threads > 1 {
            guard let created = hk_pool_create(Int32(threads)) else {
                throw ModelError.invalidArgument(detail: "cannot start \(threads - 1) worker threads")
            }
            pool = created
        } else {
            pool = nil
        }
        ws = Workspace(config: config, bins: bins, layouts: layers.map(\.layout),
                       hidden: layers.map { $0.blocks.map(\.mlp.hidden).max()! }, pool: pool, precision: precision)
        frontEnd = FrontEndJob(stfts: stfts, power: ws.arena.p)
    }

    deinit { hk_pool_destroy(pool) }

    /// Runs one clip; `samples.count` <= config.signal.clipSamples (longer input: the first clipSamples are used).
    /// A shorter clip runs on its own `count / hop + 1` frames, stretched to the image like the official forward
    /// (`config.modelInput(_:policy:)` repeats or pads it as the preset's dataset code does).
    /// `tap` receives named intermediates (the golden keys: logmel, bn0, image, patch_embed, layer0..3, norm,
    /// tscam_logits, latent, clipwise, framewise) when non-nil; its buffers are valid only during the call.
    public func infer(_ samples: UnsafeBufferPointer<Float>, into output: inout HTSATOutput,
                      tap: ((String, UnsafeBufferPointer<Float>) -> Void)? = nil) {
        run(samples, into: &output, tap: tap, times: nil)
    }

    /// Runs one clip like `infer(_:into:tap:)` and records how long each part took.
    public func infer(_ samples: UnsafeBufferPointer<Float>, into output: inout HTSATOutput, times: inout StageTimes) {
        withUnsafeMutablePointer(to: &times) { run(samples, into: &output, tap: nil, times: $0) }
    }

    private func run(_ samples: UnsafeBufferPointer<Float>, into output: inout HTSATOutput,
                     tap: ((String, UnsafeBufferPointer<Float>) -> Void)?, times: UnsafeMutablePointer<StageTimes>?) {
        let c = config
        let input = UnsafeBufferPointer(rebasing: samples[0..<min(samples.count, c.signal.clipSamples)])
        let frames = frontEnd.stfts[0].frameCount(sampleCount: input.count)
        var lap = Lap(enabled: times != nil)

        // Front end: power spectrogram -> log-mel (dB).
        frontEnd.power(input, frames: frames, pool: pool)
        logMel.apply(power: ws.arena.p, frames: frames, into: ws.spectrogram.p, pool: pool)
        if let times { times.pointee.frontEnd = lap.next() }
        runNetwork(frames: frames, into: &output, tap: tap, times: times, lap: &lap)
    }

    /// Runs the network from a log-mel spectrogram (`frames x melBins` dB values, frame-major, the `logmel` tap),
    /// skipping the STFT; frames beyond `config.signal.clipFrames` are ignored.
    public func infer(logMel: UnsafeBufferPointer<Float>, into output: inout HTSATOutput,
                      tap: ((String, UnsafeBufferPointer<Float>) -> Void)? = nil) {
        let frames = min(logMel.count / config.melBins, config.signal.clipFrames)
        if frames > 0 { ws.spectrogram.p.update(from: logMel.baseAddress!, count: frames * config.melBins) }
        // No frame at all: one silent frame (the floor of the log), as an empty clip gives.
        else { ws.spectrogram.p.update(repeating: 10 * log10f(LogMel.amin), count: config.melBins) }
        var lap = Lap(enabled: false)
        runNetwork(frames: max(frames, 1), into: &output, tap: tap, times: nil, lap: &lap)
    }

    /// The power spectrogram of one clip, its frames split across the pool's threads.
    private final class FrontEndJob {
        let stfts: [STFT]
        let power: UnsafeMutablePointer<Float>
        private var input = UnsafeBufferPointer<Float>(start: nil, count: 0)
        private var frames = 0
        private var step = 1

        init(stfts: [STFT], power: UnsafeMutablePointer<Float>) {
            self.stfts = stfts
            self.power = power
        }

        /// Fills `power` with the clip's `frames` frames.
        func power(_ samples: UnsafeBufferPointer<Float>, frames: Int, pool: OpaquePointer?) {
            input = samples
            self.frames = frames
            let items = stfts.count == 1 ? 1 : 2 * stfts.count
            step = (frames + items - 1) / items
            hk_pool_run(pool, Int32(items), { context, item, thread in
                let job = Unmanaged<FrontEndJob>.fromOpaque(context!).takeUnretainedValue()
                let lo = min(Int(item) * job.step, job.frames), hi = min(lo + job.step, job.frames)
                job.stfts[Int(thread)].power(job.input, frames: lo..<hi, into: job.power)
            }, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    /// Milliseconds between calls to `next`, reading the clock only when enabled.
    private struct Lap {
        var last: UInt64

        init(enabled: Bool) { last = enabled ? DispatchTime.now().uptimeNanoseconds : 0 }

        mutating func next() -> Double {
            let now = DispatchTime.now().uptimeNanoseconds
            defer { last = now }
            return Double(now - last) / 1e6
        }
    }

    /// Copies a panel-layout tensor to row-major grid order and hands it to the tap.
    private func tapTokens(_ tap: (String, UnsafeBufferPointer<Float>) -> Void, _ name: String,
                           _ x: UnsafePointer<Float>, channels: Int, slotOfGrid: [Int32]) {
        Panels.toRows(x, channels: channels, slots: slotOfGrid, into: ws.tapRows.p)
        tap(name, ws.tapRows.prefix(slotOfGrid.count * channels))
    }

    /// bn0 onwards, from the log-mel frames in `ws.spectrogram`.
    private func runNetwork(frames: Int, into output: inout HTSATOutput, tap: ((String, UnsafeBufferPointer<Float>) -> Void)?,
                            times: UnsafeMutablePointer<StageTimes>?, lap: inout Lap) {
        let c = config
        tap?("logmel", ws.spectrogram.prefix(frames * c.melBins))
        bn0(ws.spectrogram.p, frames: frames)
        tap?("bn0", ws.spectrogram.prefix(frames * c.melBins))

        // reshape_wav2img, then patch embedding.
        toImage(ws.spectrogram.p, frames: frames, mels: c.melBins, stretched: ws.stretched.p,
                scratch: ws.stretchScratch.p, image: ws.image.p)
        tap?("image", ws.image.prefix(c.specSize * c.specSize))
        patchEmbed(ws.image.p, patches: ws.arena.p, into: ws.x.p, ws: ws)
        if let tap { tapTokens(tap, "patch_embed", ws.x.p, channels: c.embedDim, slotOfGrid: patchEmbed.layout.slotOfGrid) }
        if let times { times.pointee.embed = lap.next(); times.pointee.stages = [] }

        // Swin stages.
        for (i, layer) in layers.enumerated() {
            layer(ws.x.p, ws: ws)
            if let tap {
                let out = layer.downsample?.next ?? layer.layout
                tapTokens(tap, "layer\(i)", ws.x.p, channels: c.channels(stage: min(i + 1, c.stageCount - 1)),
                          slotOfGrid: out.slotOfGrid)
            }
            if let times { times.pointee.stages.append(lap.next()) }
        }
        let last = layers[c.stageCount - 1].layout
        norm(ws.x.p, chunks: last.chunks, into: ws.x.p, pool: pool)
        if let tap { tapTokens(tap, "norm", ws.x.p, channels: c.numFeatures, slotOfGrid: last.slotOfGrid) }

        // Token-semantic head and the three outputs.
        head(ws.x.p, ws: ws, latent: ws.latent.p, logits: ws.logits.p)
        tap?("tscam_logits", ws.logits.prefix(c.classes * c.tokenSteps))
        tap?("latent", ws.latent.prefix(c.numFeatures))
        let steps = c.tokenSteps, repeatCount = c.framewiseRepeat, classes = c.classes
        let softmax = c.activation == .softmax
        for k in 0..<classes {
            let row = ws.logits.p + k * steps
            var sum: Float = 0
            for t in 0..<steps { sum += row[t] }
            ws.clipwise.p[k] = sum / Float(steps)
        }
        // clip_ce (softmax) models return the mean logit itself; clip_bce ones its sigmoid.
        if !softmax { hk_sigmoid(ws.clipwise.p, ws.clipwise.p, classes) }
        // The head's panel buffer is free again: the frame scores, classes x steps.
        let scores = ws.headLogits.p
        hk_sigmoid(ws.logits.p, scores, classes * steps)
        let frameCount = c.framewiseFrames * classes
        output.clipwise.resize(to: classes)
        output.latent.resize(to: c.numFeatures)
        output.framewise.resize(to: frameCount)
        output.probabilities.resize(to: softmax ? classes : 0)
        output.frameProbabilities.resize(to: softmax ? frameCount : 0)
        output.clipwise.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: ws.clipwise.p, count: classes) }
        output.latent.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: ws.latent.p, count: c.numFeatures) }
        if !output.embeddings.isEmpty {
            output.embeddings.resize(to: steps * c.numFeatures)
            output.embeddings.withUnsafeMutableBufferPointer { head.embeddings(ws.x.p, into: $0.baseAddress!) }
        }
        // Frame-major rows, each token step's row (read from classes x steps with `stride` steps) repeated.
        func fillFrames(_ out: UnsafeMutableBufferPointer<Float>, from values: UnsafePointer<Float>) {
            let f = out.baseAddress!
            for t in 0..<steps {
                let first = f + t * repeatCount * classes
                for k in 0..<classes { first[k] = values[k * steps + t] }
                for r in 1..<max(repeatCount, 1) { (first + r * classes).update(from: first, count: classes) }
            }
        }
        output.framewise.withUnsafeMutableBufferPointer { out in
            fillFrames(out, from: scores)
            tap?("framewise", UnsafeBufferPointer(out))
        }
        if softmax {
            output.probabilities.withUnsafeMutableBufferPointer { Self.softmax(ws.clipwise.p, count: classes, stride: 1, into: $0.baseAddress!) }
            // Per token step, over classes: the scores reuse the sigmoid buffer (already copied out).
            for t in 0..<steps { Self.softmax(ws.logits.p + t, count: classes, stride: steps, into: scores + t, outStride: steps) }
            output.frameProbabilities.withUnsafeMutableBufferPointer { fillFrames($0, from: scores) }
        }
        tap?("clipwise", ws.clipwise.prefix(classes))
        if let times { times.pointee.head = lap.next() }
    }

    /// Softmax of `count` values `stride` apart, written `outStride` apart (max subtracted, so no overflow).
    private static func softmax(_ x: UnsafePointer<Float>, count: Int, stride: Int, into out: UnsafeMutablePointer<Float>,
                                outStride: Int = 1) {
        var peak = -Float.infinity
        for k in 0..<count { peak = max(peak, x[k * stride]) }
        var sum: Double = 0
        for k in 0..<count {
            let e = expf(x[k * stride] - peak)
            out[k * outStride] = e
            sum += Double(e)
        }
        let scale = Float(1 / sum)
        for k in 0..<count { out[k * outStride] *= scale }
    }

    /// Convenience: runs one clip and returns fresh outputs.
    public func infer(_ samples: [Float]) -> HTSATOutput {
        var output = HTSATOutput(config: config)
        samples.withUnsafeBufferPointer { infer($0, into: &output) }
        return output
    }
}

extension Array where Element == Float {
    /// Sets the count, allocating only when it changes (never on the hot path once sized).
    fileprivate mutating func resize(to count: Int) {
        if self.count != count { self = [Float](repeating: 0, count: count) }
    }
}
