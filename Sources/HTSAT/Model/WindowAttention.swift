import CHTSATKernels
import Foundation

/// The `attn_mask` buffer a shifted block of a `resolution`² grid with `window`² windows stores (windows × N × N),
/// for tools that write checkpoints in the official layout.
public func shiftedWindowMask(resolution: Int, window: Int) -> [Float] {
    WindowPartition(resolution: resolution, window: window, shift: window / 2).shiftMask()
}

/// The (optionally cyclically shifted) partition of a square token grid into square windows.
/// Position `r` of the window-ordered sequence is grid token `order[r]` (row-major grid index).
struct WindowPartition {
    let resolution: Int
    let window: Int
    let shift: Int
    let windowsPerSide: Int
    var windowCount: Int { windowsPerSide * windowsPerSide }
    var tokensPerWindow: Int { window * window }
    let order: [Int]

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

/// Where a stage keeps its tokens: window by window of the unshifted partition, each window padded to whole
/// panels, so that plain (unshifted) attention reads its windows in place and only shifted blocks gather.
struct TokenLayout {
    let partition: WindowPartition
    /// Tokens per window rounded up to a multiple of the panel width.
    let padded: Int
    /// Slot of each grid token (row-major grid index -> slot).
    let slotOfGrid: [Int32]

    init(resolution: Int, window: Int) {
        partition = WindowPartition(resolution: resolution, window: window, shift: 0)
        padded = Panels.chunks(partition.tokensPerWindow) * Panels.width
        var slots = [Int32](repeating: 0, count: resolution * resolution)
        for (r, grid) in partition.order.enumerated() {
            slots[grid] = Int32(TokenLayout.slot(r, tokensPerWindow: partition.tokensPerWindow, padded: padded))
        }
        slotOfGrid = slots
    }

    var slots: Int { partition.windowCount * padded }
    var chunks: Int { slots / Panels.width }

    /// Slot of position `r` of a window-ordered sequence.
    static func slot(_ r: Int, tokensPerWindow n: Int, padded: Int) -> Int { (r / n) * padded + r % n }

    /// For `partition` (same windows per side): the layout slot each of its padded window slots reads, -1 for padding.
    func gatherIndex(for p: WindowPartition) -> [Int32] {
        var index = [Int32](repeating: -1, count: slots)
        for (r, grid) in p.order.enumerated() {
            index[TokenLayout.slot(r, tokensPerWindow: p.tokensPerWindow, padded: padded)] = slotOfGrid[grid]
        }
        return index
    }

    /// The inverse of gatherIndex: for each layout slot, the window slot of `partition` holding its token.
    func scatterIndex(for p: WindowPartition) -> [Int32] {
        var index = [Int32](repeating: -1, count: slots)
        for (r, grid) in p.order.enumerated() {
            index[Int(slotOfGrid[grid])] = Int32(TokenLayout.slot(r, tokensPerWindow: p.tokensPerWindow, padded: padded))
        }
        return index
    }
}

/// The relative position bias and the shift masks of one block, transposed (key rows, query columns) into
/// the panel layout the attention kernel reads, plus the per-window mask pointers it takes.
final class AttentionTables {
    /// heads x padded x padded.
    let bias: FloatBuffer
    /// The distinct masks, each padded x padded.
    private let masks: [FloatBuffer]
    /// One entry per window: its mask or nil (all zero); nil when the block has no mask at all.
    let maskPointers: UnsafeMutablePointer<UnsafePointer<Float>?>?
    private let windows: Int

    /// `table` is Swin's (2w-1)^2 x heads bias table, `index` N x N into it, `mask` windows x N x N or nil.
    init(table: UnsafeBufferPointer<Float>, index: [Int], heads: Int, n: Int, padded: Int, windows: Int, mask: [Float]?) {
        let w = Panels.width
        /// Offset of (key j, query i) in a padded x padded transposed matrix.
        func at(_ j: Int, _ i: Int) -> Int { (i / w) * padded * w + j * w + i % w }
        bias = FloatBuffer(heads * padded * padded)
        for h in 0..<heads {
            let dst = bias.p + h * padded * padded
            for j in 0..<padded {
                for i in 0..<padded {
                    // A padding key gets -inf (its weight becomes exactly 0); padding queries are never read.
                    dst[at(j, i)] = j >= n ? -.infinity : (i >= n ? 0 : table[index[i * n + j] * heads + h])
                }
            }
        }
        self.windows = windows
        var unique: [[Float]: FloatBuffer] = [:]
        var buffers: [FloatBuffer] = []
        if let mask {
            let pointers = UnsafeMutablePointer<UnsafePointer<Float>?>.allocate(capacity: windows)
            for b in 0..<windows {
                let m = Array(mask[(b * n * n)..<((b + 1) * n * n)])
                if m.allSatisfy({ $0 == 0 }) { pointers[b] = nil; continue }
                if let found = unique[m] { pointers[b] = UnsafePointer(found.p); continue }
                let buf = FloatBuffer(padded * padded)
                for j in 0..<n { for i in 0..<n { buf.p[at(j, i)] = m[i * n + j] } }
                unique[m] = buf
                buffers.append(buf)
                pointers[b] = UnsafePointer(buf.p)
            }
            maskPointers = pointers
        } else {
            maskPointers = nil
        }
        masks = buffers
    }

    deinit { maskPointers?.deallocate() }
}

/// `attn`: window multi-head self-attention with a relative position bias (W-MSA / SW-MSA).
struct WindowAttention {
    let dim: Int
    let heads: Int
    let headDim: Int
    let padded: Int
    let scale: Float
    let qkv: Linear
    let proj: Linear
    let tables: AttentionTables

    /// `prefix` is `layers.i.blocks.j`. `relative_position_index` is recomputed from the window size and checked
    /// against the stored buffer (int64, or float in weight-averaged files); the stored `attn_mask` is used when
    /// present (as torch's load_state_dict would), otherwise recomputed.
    init(_ sd: StateDict, _ prefix: String, dim: Int, heads: Int, partition: WindowPartition, padded: Int,
         precision: HTSATPrecision) throws {
        self.dim = dim
        self.heads = heads
        self.padded = padded
        headDim = dim / heads
        let w = partition.window, n = partition.tokensPerWindow
        scale = Float(1 / Double(headDim).squareRoot())
        qkv = try Linear(sd, "\(prefix).attn.qkv", in: dim, out: 3 * dim, precision: precision)
        proj = try Linear(sd, "\(prefix).attn.proj", in: dim, out: dim, precision: precision)

        let tableRows = (2 * w - 1) * (2 * w - 1)
        let table = try sd.floats("\(prefix).attn.relative_position_bias_table", shape: [tableRows, heads])
        let index = WindowPartition.relativePositionIndex(window: w)
        let indexKey = "\(prefix).attn.relative_position_index"
        if let found = sd.shape(of: indexKey) {
            guard found == [n, n] else {
                throw WeightsError.shapeMismatch(key: indexKey, expected: [n, n], found: found, file: sd.source)
            }
            let stored = try sd.integers(indexKey)
            if let i = stored.indices.first(where: { stored[$0] != Int64(index[$0]) }) {
                throw ModelError.unsupportedArchitecture(
                    detail: "'\(indexKey)' differs from the index of a \(w)×\(w) window at element \(i) (\(stored[i]), expected \(index[i])): not an HTS-AT checkpoint, or a corrupt one", file: sd.source)
            }
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
        tables = AttentionTables(table: table, index: index, heads: heads, n: n, padded: padded,
                                 windows: partition.windowCount, mask: mask)
    }

    /// Adds its steps to `run`: `windows` holds the (normalized) tokens window by window (`windowCount` windows of
    /// `padded` slots); the projected result goes to `out` in the same order, added to it when `accumulate`.
    /// q, k and v go to the arena with panel stride `qkvPanel` (at least 3 * dim * 16).
    func steps(_ run: WindowRun, _ windows: UnsafePointer<Float>, windowCount: Int, qkvPanel: Int, ws: Workspace,
               into out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let chunks = windowCount * padded / Panels.width
        // q = (x Wq + bq) * scale before q k^T, as the official code scales it.
        run.linear(qkv, windows, chunks: chunks, into: ws.arena.p, ws: ws, yPanel: qkvPanel, scaleRows: dim,
                   scale: scale)
        run.attention(hk_attention_args(
            windows: Int32(windowCount), heads: Int32(heads), head_dim: Int32(headDim), channels: Int32(dim),
            padded: Int32(padded), qkv: ws.arena.p, qkv_panel: qkvPanel, context: ws.context.p, bias: tables.bias.p,
            masks: UnsafePointer(tables.maskPointers), scratch: ws.attentionScratch.p))
        run.linear(proj, ws.context.p, chunks: chunks, into: out, ws: ws, accumulate: accumulate)
    }
}
