import CHTSATKernels
import Foundation

/// A float buffer allocated once and reused by every inference.
final class FloatBuffer {
    let count: Int
    let p: UnsafeMutablePointer<Float>

    init(_ count: Int) {
        self.count = count
        p = Self.allocate(count)
        p.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { UnsafeMutableRawPointer(p).deallocate() }

    /// `count` values on a cache-line boundary, so that each 16-float panel row is one line (malloc aligns to 16
    /// bytes only: at its other three offsets every row straddles two lines, and each load of one is split).
    static func allocate<T>(_ count: Int, of type: T.Type = Float.self) -> UnsafeMutablePointer<T> {
        UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<T>.stride, alignment: 64)
            .bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// The first `n` values, for taps.
    func prefix(_ n: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: p, count: n) }
}

/// Activations between layers use the kernels' panel layout (see hts_kernels.h): `channels` rows by tokens,
/// stored as panels of 16 tokens, so element (c, t) is at `(t / 16) * channels * 16 + c * 16 + t % 16`.
enum Panels {
    static let width = Int(HK_PANEL)

    /// Panels holding `tokens` tokens.
    static func chunks(_ tokens: Int) -> Int { (tokens + width - 1) / width }

    /// Floats of a `channels` x `tokens` activation.
    static func count(channels: Int, tokens: Int) -> Int { chunks(tokens) * width * channels }

    /// Copies `tokens` tokens, in the order `slots` lists them, to row-major `tokens x channels` (for taps).
    static func toRows(_ x: UnsafePointer<Float>, channels: Int, slots: [Int32], into out: UnsafeMutablePointer<Float>) {
        for (row, slot) in slots.enumerated() {
            let t = Int(slot), base = x + (t / width) * channels * width + t % width
            for c in 0..<channels { out[row * channels + c] = base[c * width] }
        }
    }
}

/// A linear layer's weights rounded to bfloat16 pairs (the opt-in `HTSATPrecision.bfloat16`).
final class PackedWeights {
    let p: UnsafeMutablePointer<UInt32>

    init(_ weight: UnsafeBufferPointer<Float>, rows: Int, depth: Int) {
        let count = rows * ((depth + 1) / 2)
        p = .allocate(capacity: max(count, 1))
        hk_pack_bf16(weight.baseAddress, Int32(rows), Int32(depth), depth, p)
    }

    deinit { p.deallocate() }
}

/// `nn.Linear`: y = x W^T + b, weights read in place from `<prefix>.weight` (out x in) and `<prefix>.bias`.
/// A conv whose kernel covers its whole input patch is the same product; `storedShape` then names its 4-D shape.
struct Linear {
    let inFeatures: Int
    let outFeatures: Int
    let weight: UnsafeBufferPointer<Float>
    let bias: UnsafeBufferPointer<Float>?
    /// The bfloat16 copy of `weight` when the model runs in bfloat16.
    let packed: PackedWeights?

    init(_ sd: StateDict, _ prefix: String, in inFeatures: Int, out outFeatures: Int, bias hasBias: Bool = true,
         storedShape: [Int]? = nil, precision: HTSATPrecision = .float32) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = try sd.floats("\(prefix).weight", shape: storedShape ?? [outFeatures, inFeatures])
        bias = hasBias ? try sd.floats("\(prefix).bias", shape: [outFeatures]) : nil
        packed = precision == .bfloat16 ? PackedWeights(weight, rows: outFeatures, depth: inFeatures) : nil
    }

    /// y = epilogue(x W^T + b) over `chunks` token panels; x and y in panel layout with panel strides
    /// in*16 and out*16 unless given. The epilogue scales the first `scaleRows` outputs by `scale`, then applies
    /// GELU if `gelu`, then adds the previous y if `accumulate` (a residual connection).
    func callAsFunction(_ x: UnsafePointer<Float>, chunks: Int, into y: UnsafeMutablePointer<Float>, ws: Workspace,
                        xPanel: Int? = nil, yPanel: Int? = nil, scaleRows: Int = 0, scale: Float = 1,
                        gelu: Bool = false, accumulate: Bool = false) {
        var args = arguments(x, chunks: chunks, into: y, xPanel: xPanel, yPanel: yPanel, scaleRows: scaleRows,
                             scale: scale, gelu: gelu, accumulate: accumulate)
        if let (packed, pairs) = bfloat16(ws) { hk_linear_bf16(ws.pool, &args, packed, pairs) }
        else { hk_linear(ws.pool, &args) }
    }

    /// The bfloat16 weights and the workspace's activation pairs, when this layer runs in bfloat16.
    func bfloat16(_ ws: Workspace) -> (packed: UnsafeMutablePointer<UInt32>, pairs: UnsafeMutablePointer<UInt32>)? {
        guard let packed, let pairs = ws.bfloat16Pairs else { return nil }
        return (packed.p, pairs)
    }

    /// The kernel's arguments for `callAsFunction` (and for a step of a WindowRun).
    func arguments(_ x: UnsafePointer<Float>, chunks: Int, into y: UnsafeMutablePointer<Float>, xPanel: Int? = nil,
                   yPanel: Int? = nil, scaleRows: Int = 0, scale: Float = 1, gelu: Bool = false,
                   accumulate: Bool = false) -> hk_linear_args {
        hk_linear_args(
            rows: Int32(outFeatures), depth: Int32(inFeatures), chunks: Int32(chunks),
            a: weight.baseAddress, a_stride: inFeatures,
            x: x, x_panel: xPanel ?? inFeatures * Panels.width,
            y: y, y_panel: yPanel ?? outFeatures * Panels.width,
            bias: bias?.baseAddress, scale: scale, scale_rows: Int32(scaleRows),
            gelu: gelu ? 1 : 0, accumulate: accumulate ? 1 : 0)
    }
}

/// `nn.LayerNorm(dim)` with eps 1e-5 over the channels of each token, from `<prefix>.weight` / `<prefix>.bias`.
struct LayerNorm {
    let dim: Int
    let weight: UnsafeBufferPointer<Float>
    let bias: UnsafeBufferPointer<Float>
    let eps: Float = 1e-5

    init(_ sd: StateDict, _ prefix: String, dim: Int) throws {
        self.dim = dim
        weight = try sd.floats("\(prefix).weight", shape: [dim])
        bias = try sd.floats("\(prefix).bias", shape: [dim])
    }

    /// Normalizes `chunks` token panels of x into y (panel layout, y may be x).
    func callAsFunction(_ x: UnsafePointer<Float>, chunks: Int, into y: UnsafeMutablePointer<Float>, pool: OpaquePointer?) {
        hk_layernorm(pool, Int32(dim), Int32(chunks), x, y, weight.baseAddress, bias.baseAddress, eps)
    }
}
