import Foundation

/// The (optionally cyclically shifted) partition of a square token grid into square windows.
/// Row `r` of the window-ordered matrix is grid token `order[r]`, which makes the roll, the partition
/// and their inverses one gather and one scatter.
struct WindowPartition {
    let resolution: Int
    let window: Int
    let shift: Int
    let windowsPerSide: Int
    var windowCount: Int { windowsPerSide * windowsPerSide }
    var tokensPerWindow: Int { window * window }
    private let order: [Int]

    init(resolution: Int, window: Int, shift: Int) {
        self.resolution = resolution
        self.window = window
        self.shift = shift
        windowsPerSide = resolution / window
        var order: [Int] = []
        order.reserveCapacity(resolution * resolution)
        // torch.roll(x, -shift): shifted[i][j] = x[(i + shift) % H][(j + shift) % W].
        for wi in 0..<windowsPerSide {
            for wj in 0..<windowsPerSide {
                for r in 0..<window {
                    for c in 0..<window {
                        let i = (wi * window + r + shift) % resolution
                        let j = (wj * window + c + shift) % resolution
                        order.append(i * resolution + j)
                    }
                }
            }
        }
        self.order = order
    }

    /// y[r] = x[order[r]] for rows of `channels` values.
    func gather(_ x: UnsafePointer<Float>, channels: Int, into y: UnsafeMutablePointer<Float>) {
        order.withUnsafeBufferPointer { o in
            for r in 0..<o.count { (y + r * channels).update(from: x + o[r] * channels, count: channels) }
        }
    }

    /// x[order[r]] += y[r]: undoes the partition and the shift, and adds the residual.
    func scatterAdd(_ y: UnsafePointer<Float>, channels: Int, into x: UnsafeMutablePointer<Float>) {
        order.withUnsafeBufferPointer { o in
            for r in 0..<o.count {
                let dst = x + o[r] * channels, src = y + r * channels
                for c in 0..<channels { dst[c] = dst[c] + src[c] }
            }
        }
    }

    /// Swin's shifted-window mask, windows x N x N: 0 within a region of the shifted image, -100 across regions.
    func shiftMask() -> [Float] {
        func region(_ i: Int) -> Int { i < resolution - window ? 0 : (i < resolution - shift ? 1 : 2) }
        let n = tokensPerWindow
        var label = [Int](repeating: 0, count: n)
        var mask = [Float](repeating: 0, count: windowCount * n * n)
        for wi in 0..<windowsPerSide {
            for wj in 0..<windowsPerSide {
                for r in 0..<window {
                    for c in 0..<window { label[r * window + c] = region(wi * window + r) * 3 + region(wj * window + c) }
                }
                let base = (wi * windowsPerSide + wj) * n * n
                for a in 0..<n { for b in 0..<n where label[a] != label[b] { mask[base + a * n + b] = -100 } }
            }
        }
        return mask
    }

    /// Swin's relative position index of token pairs inside a window, N x N, into a (2w-1)^2 table.
    static func relativePositionIndex(window w: Int) -> [Int] {
        var index: [Int] = []
        index.reserveCapacity(w * w * w * w)
        for a in 0..<(w * w) {
            for b in 0..<(w * w) {
                let dr = a / w - b / w + w - 1, dc = a % w - b % w + w - 1
                index.append(dr * (2 * w - 1) + dc)
            }
        }
        return index
    }
}

/// `attn`: window multi-head self-attention with a relative position bias (W-MSA / SW-MSA).
struct WindowAttention {
    let dim: Int
    let heads: Int
    let headDim: Int
    let tokensPerWindow: Int
    let scale: Float
    let qkv: Linear
    let proj: Linear
    /// Relative position bias plus shift mask, [maskWindows][heads][N][N], added to the scores.
    private let biasMask: FloatBuffer
    private let maskWindows: Int

    /// `prefix` is `layers.i.blocks.j`; the stored `attn_mask` and `relative_position_index` buffers are used
    /// when present (as torch's load_state_dict would), otherwise recomputed.
    init(_ sd: StateDict, _ prefix: String, dim: Int, heads: Int, partition: WindowPartition) throws {
        self.dim = dim
        self.heads = heads
        headDim = dim / heads
        let w = partition.window, n = partition.tokensPerWindow
        tokensPerWindow = n
        scale = Float(1 / Double(headDim).squareRoot())
        qkv = try Linear(sd, "\(prefix).attn.qkv", in: dim, out: 3 * dim)
        proj = try Linear(sd, "\(prefix).attn.proj", in: dim, out: dim)

        let tableRows = (2 * w - 1) * (2 * w - 1)
        let table = try sd.floats("\(prefix).attn.relative_position_bias_table", shape: [tableRows, heads])
        var index = WindowPartition.relativePositionIndex(window: w)
        let indexKey = "\(prefix).attn.relative_position_index"
        if let found = sd.shape(of: indexKey) {
            guard found == [n, n] else {
                throw WeightsError.shapeMismatch(key: indexKey, expected: [n, n], found: found, file: sd.source)
            }
            let stored = try sd.int64s(indexKey)
            guard stored.allSatisfy({ $0 >= 0 && $0 < tableRows }) else {
                throw ModelError.unsupportedArchitecture(detail: "'\(indexKey)' has entries outside [0, \(tableRows))", file: sd.source)
            }
            index = stored.map { Int($0) }
        }

        var mask: [Float]? = nil
        let maskKey = "\(prefix).attn_mask"
        if partition.shift > 0 {
            mask = sd.shape(of: maskKey) != nil
                ? Array(try sd.floats(maskKey, shape: [partition.windowCount, n, n]))
                : partition.shiftMask()
        } else if let found = sd.shape(of: maskKey) {
            throw ModelError.unsupportedArchitecture(
                detail: "'\(maskKey)' (shape \(found)) is present, but this block has no shifted windows", file: sd.source)
        }

        maskWindows = mask == nil ? 1 : partition.windowCount
        biasMask = FloatBuffer(maskWindows * heads * n * n)
        for m in 0..<maskWindows {
            for h in 0..<heads {
                let dst = biasMask.p + (m * heads + h) * n * n
                for e in 0..<(n * n) {
                    dst[e] = table[index[e] * heads + h] + (mask?[m * n * n + e] ?? 0)
                }
            }
        }
    }

    /// `windows` is window-ordered tokens (windowCount*N x dim); the result goes to `out` in the same order.
    func callAsFunction(_ windows: UnsafePointer<Float>, windowCount: Int, ws: Workspace, into out: UnsafeMutablePointer<Float>) {
        let n = tokensPerWindow, rows = windowCount * n, stride = 3 * dim
        let qkvOut = ws.qkv.p, scores = ws.scores.p, context = ws.context.p
        qkv(windows, rows: rows, into: qkvOut)
        // q = q * scale before q @ k^T, as the official code does.
        for r in 0..<rows {
            let q = qkvOut + r * stride
            for c in 0..<dim { q[c] *= scale }
        }
        for b in 0..<windowCount {
            for h in 0..<self.heads {
                let q = qkvOut + b * n * stride + h * headDim
                let k = q + dim, v = q + 2 * dim
                gemmNT(m: n, n: n, k: headDim, q, lda: stride, k, ldb: stride, scores, ldc: n)
                let bias = biasMask.p + ((b % maskWindows) * self.heads + h) * n * n
                softmaxRows(scores, bias: bias, n: n)
                gemmNN(m: n, n: headDim, k: n, scores, lda: n, v, ldb: stride, context + b * n * dim + h * headDim, ldc: dim)
            }
        }
        proj(context, rows: rows, into: out)
    }

    /// Row-wise softmax of `scores + bias` (n x n), in place.
    private func softmaxRows(_ s: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, n: Int) {
        for i in 0..<n {
            let row = s + i * n, b = bias + i * n
            var top = -Float.infinity
            for j in 0..<n { let v = row[j] + b[j]; row[j] = v; top = max(top, v) }
            var sum: Float = 0
            for j in 0..<n { let e = expf(row[j] - top); row[j] = e; sum += e }
            let inv = 1 / sum
            for j in 0..<n { row[j] *= inv }
        }
    }
}
