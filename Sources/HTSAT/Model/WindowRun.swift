import CHTSATKernels

/// The steps of one hk_window_run: LayerNorms, linear layers and attention that each window goes through in turn,
/// recorded into storage allocated once (nothing is allocated per inference), then run and cleared.
final class WindowRun {
    private static let capacity = 8
    private let steps = UnsafeMutablePointer<hk_step>.allocate(capacity: capacity)
    private let linears = UnsafeMutablePointer<hk_linear_args>.allocate(capacity: capacity)
    private let attentions = UnsafeMutablePointer<hk_attention_args>.allocate(capacity: capacity)
    private var count = 0

    deinit {
        steps.deallocate()
        linears.deallocate()
        attentions.deallocate()
    }

    /// `norm` from x into y (y may be x).
    func layerNorm(_ norm: LayerNorm, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        append(hk_step(kind: HK_STEP_LAYERNORM, linear: nil, packed: nil, pairs: nil, attention: nil,
                       channels: Int32(norm.dim), x: x, y: y, weight: norm.weight.baseAddress,
                       bias: norm.bias.baseAddress, eps: norm.eps))
    }

    /// `layer` with its epilogue, as `Linear.callAsFunction`.
    func linear(_ layer: Linear, _ x: UnsafePointer<Float>, chunks: Int, into y: UnsafeMutablePointer<Float>,
                ws: Workspace, xPanel: Int? = nil, yPanel: Int? = nil, scaleRows: Int = 0, scale: Float = 1,
                gelu: Bool = false, accumulate: Bool = false) {
        linears[count] = layer.arguments(x, chunks: chunks, into: y, xPanel: xPanel, yPanel: yPanel,
                                         scaleRows: scaleRows, scale: scale, gelu: gelu, accumulate: accumulate)
        let bf16 = layer.bfloat16(ws)
        append(hk_step(kind: HK_STEP_LINEAR, linear: linears + count, packed: bf16.map { UnsafePointer($0.packed) },
                       pairs: bf16?.pairs, attention: nil, channels: 0, x: nil, y: nil, weight: nil, bias: nil, eps: 0))
    }

    /// Window attention, as `hk_attention`.
    func attention(_ args: hk_attention_args) {
        attentions[count] = args
        append(hk_step(kind: HK_STEP_ATTENTION, linear: nil, packed: nil, pairs: nil, attention: attentions + count,
                       channels: 0, x: nil, y: nil, weight: nil, bias: nil, eps: 0))
    }

    /// Runs the steps over `windows` windows of `windowChunks` token panels each, and clears them.
    func run(windows: Int, windowChunks: Int, pool: OpaquePointer?) {
        hk_window_run(pool, Int32(windows), Int32(windowChunks), steps, Int32(count))
        count = 0
    }

    private func append(_ step: hk_step) {
        precondition(count < Self.capacity, "WindowRun holds \(Self.capacity) steps")
        steps[count] = step
        count += 1
    }
}
