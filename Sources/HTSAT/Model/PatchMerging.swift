import CHTSATKernels

/// `layers.i.downsample`: concatenates each 2x2 token neighbourhood (x0, x1, x2, x3 order), LayerNorm, then a
/// bias-free Linear from 4C to 2C. Halves the grid side, doubles the channels.
struct PatchMerging {
    let dim: Int
    let next: TokenLayout
    /// For each of x0..x3: the slot (in the stage's layout) each slot of the next layout reads, -1 for padding.
    let neighbours: [[Int32]]
    let norm: LayerNorm
    let reduction: Linear

    init(_ sd: StateDict, _ prefix: String, from layout: TokenLayout, to next: TokenLayout, dim: Int,
         precision: HTSATPrecision) throws {
        self.dim = dim
        self.next = next
        let res = layout.partition.resolution, half = next.partition.resolution
        // x0 = x[0::2, 0::2], x1 = x[1::2, 0::2], x2 = x[0::2, 1::2], x3 = x[1::2, 1::2] (row, column offsets).
        neighbours = [(0, 0), (1, 0), (0, 1), (1, 1)].map { (dr, dc) in
            var index = [Int32](repeating: -1, count: next.slots)
            for i in 0..<half {
                for j in 0..<half {
                    index[Int(next.slotOfGrid[i * half + j])] = layout.slotOfGrid[(2 * i + dr) * res + 2 * j + dc]
                }
            }
            return index
        }
        norm = try LayerNorm(sd, "\(prefix).norm", dim: 4 * dim)
        reduction = try Linear(sd, "\(prefix).reduction", in: 4 * dim, out: 2 * dim, bias: false, precision: precision)
    }

    /// x: dim channels in the stage's layout in; 2 dim channels in the next layout out (in place).
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, ws: Workspace) {
        let chunks = next.chunks, w = Panels.width
        for (q, index) in neighbours.enumerated() {
            hk_gather(ws.pool, Int32(dim), Int32(chunks), index, x, dim * w, ws.arena.p + q * dim * w, 4 * dim * w, w, 0)
        }
        norm(ws.arena.p, chunks: chunks, into: ws.arena.p, pool: ws.pool)
        reduction(ws.arena.p, chunks: chunks, into: x, ws: ws)
    }
}
