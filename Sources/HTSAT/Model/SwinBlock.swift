/// `mlp`: fc1 -> exact GELU -> fc2.
struct Mlp {
    let hidden: Int
    let fc1: Linear
    let fc2: Linear

    init(_ sd: StateDict, _ prefix: String, dim: Int) throws {
        // mlp_ratio is a constructor argument (4 in every official config); read it from the weights.
        let key = "\(prefix).fc1.weight"
        guard let s = sd.shape(of: key) else { throw WeightsError.missingTensor(key: key, file: sd.source) }
        guard s.count == 2, s[0] >= 1 else {
            throw WeightsError.shapeMismatch(key: key, expected: [4 * dim, dim], found: s, file: sd.source)
        }
        hidden = s[0]
        fc1 = try Linear(sd, "\(prefix).fc1", in: dim, out: hidden)
        fc2 = try Linear(sd, "\(prefix).fc2", in: hidden, out: dim)
    }
}

/// `layers.i.blocks.j`: a Swin Transformer block.
/// x = x + W-MSA(LN(x)) over (shifted) windows; x = x + MLP(LN(x)).
struct SwinTransformerBlock {
    let dim: Int
    let tokens: Int
    let partition: WindowPartition
    let norm1: LayerNorm
    let attn: WindowAttention
    let norm2: LayerNorm
    let mlp: Mlp

    init(_ sd: StateDict, _ prefix: String, dim: Int, heads: Int, resolution: Int, window: Int, shifted: Bool) throws {
        self.dim = dim
        tokens = resolution * resolution
        // A window as large as the grid leaves nothing to shift (the official code then sets shift 0).
        let shift = shifted && window < resolution ? window / 2 : 0
        partition = WindowPartition(resolution: resolution, window: window, shift: shift)
        norm1 = try LayerNorm(sd, "\(prefix).norm1", dim: dim)
        attn = try WindowAttention(sd, prefix, dim: dim, heads: heads, partition: partition)
        norm2 = try LayerNorm(sd, "\(prefix).norm2", dim: dim)
        mlp = try Mlp(sd, "\(prefix).mlp", dim: dim)
    }

    /// Runs the block in place on `x` (tokens x dim, grid order).
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, ws: Workspace) {
        let normed = ws.normed.p, windows = ws.windows.p, hidden = ws.hidden.p
        // Attention branch.
        norm1(x, rows: tokens, into: normed)
        partition.gather(normed, channels: dim, into: windows)
        attn(windows, windowCount: partition.windowCount, ws: ws, into: normed)
        partition.scatterAdd(normed, channels: dim, into: x)
        // MLP branch.
        norm2(x, rows: tokens, into: normed)
        mlp.fc1(normed, rows: tokens, into: hidden)
        gelu(hidden, count: tokens * mlp.hidden)
        mlp.fc2(hidden, rows: tokens, into: normed)
        for i in 0..<(tokens * dim) { x[i] = x[i] + normed[i] }
    }
}
