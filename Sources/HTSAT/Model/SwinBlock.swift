import CHTSATKernels

/// `mlp`: fc1 -> exact GELU -> fc2.
struct Mlp {
    let hidden: Int
    let fc1: Linear
    let fc2: Linear

    init(_ sd: StateDict, _ prefix: String, dim: Int, precision: HTSATPrecision) throws {
        // mlp_ratio is a constructor argument (4 in every official config); read it from the weights.
        let key = "\(prefix).fc1.weight"
        guard let s = sd.shape(of: key) else { throw WeightsError.missingTensor(key: key, file: sd.source) }
        guard s.count == 2, s[0] >= 1 else {
            throw WeightsError.shapeMismatch(key: key, expected: [4 * dim, dim], found: s, file: sd.source)
        }
        hidden = s[0]
        fc1 = try Linear(sd, "\(prefix).fc1", in: dim, out: hidden, precision: precision)
        fc2 = try Linear(sd, "\(prefix).fc2", in: hidden, out: dim, precision: precision)
    }
}

/// `layers.i.blocks.j`: a Swin Transformer block.
/// x = x + W-MSA(LN(x)) over (shifted) windows; x = x + MLP(LN(x)).
struct SwinTransformerBlock {
    let dim: Int
    let layout: TokenLayout
    /// For a shifted block: the gather from the layout into shifted windows, and back.
    let shiftedGather: [Int32]?
    let shiftedScatter: [Int32]?
    let norm1: LayerNorm
    let attn: WindowAttention
    let norm2: LayerNorm
    let mlp: Mlp

    init(_ sd: StateDict, _ prefix: String, dim: Int, heads: Int, layout: TokenLayout, shifted: Bool,
         precision: HTSATPrecision) throws {
        self.dim = dim
        self.layout = layout
        let res = layout.partition.resolution, window = layout.partition.window
        // A window as large as the grid leaves nothing to shift (the official code then sets shift 0).
        let shift = shifted && window < res ? window / 2 : 0
        let partition = WindowPartition(resolution: res, window: window, shift: shift)
        shiftedGather = shift > 0 ? layout.gatherIndex(for: partition) : nil
        shiftedScatter = shift > 0 ? layout.scatterIndex(for: partition) : nil
        norm1 = try LayerNorm(sd, "\(prefix).norm1", dim: dim)
        attn = try WindowAttention(sd, prefix, dim: dim, heads: heads, partition: partition, padded: layout.padded,
                                   precision: precision)
        norm2 = try LayerNorm(sd, "\(prefix).norm2", dim: dim)
        mlp = try Mlp(sd, "\(prefix).mlp", dim: dim, precision: precision)
    }

    /// Runs the block in place on `x` (dim x the layout's slots, panel layout), window by window where the kernels
    /// find that pays (hk_window_run).
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, ws: Workspace) {
        let chunks = layout.chunks, windows = layout.partition.windowCount, panel = dim * Panels.width
        let run = ws.windowRun, windowChunks = layout.padded / Panels.width
        // q, k, v and the MLP's hidden activations share the arena: with one panel stride, each window's part of
        // both is the same memory, which no other window's steps touch.
        let arenaPanel = max(3 * dim, mlp.hidden) * Panels.width
        // Attention branch: the residual add is the projection's epilogue, or part of the gather back.
        if let gather = shiftedGather, let scatter = shiftedScatter {
            hk_gather(ws.pool, Int32(dim), Int32(chunks), gather, x, panel, ws.tokens.p, panel, Panels.width, 0)
            run.layerNorm(norm1, ws.tokens.p, into: ws.tokens.p)
            attn.steps(run, ws.tokens.p, windowCount: windows, qkvPanel: arenaPanel, ws: ws, into: ws.tokens.p,
                       accumulate: false)
            run.run(windows: windows, windowChunks: windowChunks, pool: ws.pool)
            hk_gather(ws.pool, Int32(dim), Int32(chunks), scatter, ws.tokens.p, panel, x, panel, Panels.width, 1)
        } else {
            run.layerNorm(norm1, x, into: ws.tokens.p)
            attn.steps(run, ws.tokens.p, windowCount: windows, qkvPanel: arenaPanel, ws: ws, into: x, accumulate: true)
        }
        // MLP branch: GELU and the residual add are the linear layers' epilogues.
        run.layerNorm(norm2, x, into: ws.tokens.p)
        run.linear(mlp.fc1, ws.tokens.p, chunks: chunks, into: ws.arena.p, ws: ws, yPanel: arenaPanel, gelu: true)
        run.linear(mlp.fc2, ws.arena.p, chunks: chunks, into: x, ws: ws, xPanel: arenaPanel, accumulate: true)
        run.run(windows: windows, windowChunks: windowChunks, pool: ws.pool)
    }
}
