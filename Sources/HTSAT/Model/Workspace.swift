import CHTSATKernels

/// Every intermediate buffer of one inference, sized once from the config, and the kernels' thread pool.
/// Buffers whose lifetimes never overlap share memory, which keeps the daemon's resident set small.
final class Workspace {
    let pool: OpaquePointer?
    /// The largest short-lived tensors, one at a time: power spectrogram, patch columns, q/k/v, MLP hidden
    /// activations, patch-merging input, head columns.
    let arena: FloatBuffer
    let spectrogram: FloatBuffer
    let stretched: FloatBuffer
    let stretchScratch: FloatBuffer
    let image: FloatBuffer
    /// The residual stream, channels x tokens in the current stage's layout (panel layout).
    let x: FloatBuffer
    /// Normalized tokens (attention and MLP inputs), and the attention output of shifted blocks.
    let tokens: FloatBuffer
    /// Attention heads' outputs before `proj`.
    let context: FloatBuffer
    /// Per-thread scores of one window and head.
    let attentionScratch: FloatBuffer
    /// The steps of a block's window run.
    let windowRun = WindowRun()
    let headLogits: FloatBuffer
    /// Activations rounded to bfloat16 pairs for the linear layers, when the model runs in bfloat16.
    let bfloat16Pairs: UnsafeMutablePointer<UInt32>?
    let logits: FloatBuffer
    let latent: FloatBuffer
    let clipwise: FloatBuffer
    /// Row-major copies of panel-layout tensors for taps, allocated on the first tap.
    lazy var tapRows = FloatBuffer(tapRowsCount)
    private let tapRowsCount: Int

    init(config: HTSATConfig, bins: Int, layouts: [TokenLayout], hidden hiddenWidths: [Int], pool: OpaquePointer?,
         precision: HTSATPrecision) {
        self.pool = pool
        func most(_ f: (Int) -> Int) -> Int { (0..<config.stageCount).map(f).max()! }
        func activation(_ stage: Int, _ width: Int) -> Int { Panels.count(channels: width, tokens: layouts[stage].slots) }
        arena = FloatBuffer([
            config.signal.clipFrames * bins,
            activation(0, config.patchSize * config.patchSize),
            most { activation($0, 3 * config.channels(stage: $0)) },
            most { activation($0, hiddenWidths[$0]) },
            most { $0 == 0 ? 0 : activation($0, 2 * config.channels(stage: $0)) },
            Panels.count(channels: config.numFeatures * config.headFreqBins * 3, tokens: config.tokenSteps),
        ].max()!)
        spectrogram = FloatBuffer(config.signal.clipFrames * config.melBins)
        stretched = FloatBuffer(config.imageFrames * config.imageBins)
        stretchScratch = FloatBuffer(config.melBins < config.imageBins ? config.imageFrames * config.imageBins : 0)
        image = FloatBuffer(config.specSize * config.specSize)
        x = FloatBuffer(most { activation($0, config.channels(stage: $0)) })
        tokens = FloatBuffer(x.count)
        context = FloatBuffer(x.count)
        let padded = layouts.map(\.padded).max()!
        attentionScratch = FloatBuffer(Int(hk_pool_threads(pool)) * (padded + 1) * padded)
        headLogits = FloatBuffer(Panels.count(channels: config.classes, tokens: config.tokenSteps))
        logits = FloatBuffer(config.classes * config.tokenSteps)
        latent = FloatBuffer(config.numFeatures)
        clipwise = FloatBuffer(config.classes)
        tapRowsCount = most { config.resolution(stage: $0) * config.resolution(stage: $0) * config.channels(stage: $0) }
        // Every linear layer's input lives in the arena, `tokens` or `context` (no larger than the arena); pairs
        // pad an odd depth by one row.
        let pairs = arena.count + Panels.chunks(arena.count) * Panels.width
        bfloat16Pairs = precision == .bfloat16 ? FloatBuffer.allocate(pairs, of: UInt32.self) : nil
    }

    deinit { bfloat16Pairs.map { UnsafeMutableRawPointer($0).deallocate() } }
}
