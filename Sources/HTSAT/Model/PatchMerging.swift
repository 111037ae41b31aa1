/// `layers.i.downsample`: concatenates each 2x2 token neighbourhood (x0, x1, x2, x3 order), LayerNorm, then a
/// bias-free Linear from 4C to 2C. Halves the grid side, doubles the channels.
struct PatchMerging {
    let resolution: Int
    let dim: Int
    let norm: LayerNorm
    let reduction: Linear

    init(_ sd: StateDict, _ prefix: String, resolution: Int, dim: Int) throws {
        self.resolution = resolution
        self.dim = dim
        norm = try LayerNorm(sd, "\(prefix).norm", dim: 4 * dim)
        reduction = try Linear(sd, "\(prefix).reduction", in: 4 * dim, out: 2 * dim, bias: false)
    }

    /// x: resolution^2 x dim in, (resolution/2)^2 x 2dim out (in place).
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, ws: Workspace) {
        let half = resolution / 2, merged = ws.merged.p
        for i in 0..<half {
            for j in 0..<half {
                let row = merged + (i * half + j) * 4 * dim
                // x0 = x[0::2, 0::2], x1 = x[1::2, 0::2], x2 = x[0::2, 1::2], x3 = x[1::2, 1::2]
                let x0 = x + (2 * i * resolution + 2 * j) * dim
                let x1 = x0 + resolution * dim, x2 = x0 + dim, x3 = x1 + dim
                row.update(from: x0, count: dim)
                (row + dim).update(from: x1, count: dim)
                (row + 2 * dim).update(from: x2, count: dim)
                (row + 3 * dim).update(from: x3, count: dim)
            }
        }
        norm(merged, rows: half * half, into: merged)
        reduction(merged, rows: half * half, into: x)
    }
}
