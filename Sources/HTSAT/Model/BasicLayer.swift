/// `layers.i`: a stage of Swin blocks, alternating plain and shifted windows, then an optional PatchMerging.
struct BasicLayer {
    let layout: TokenLayout
    let blocks: [SwinTransformerBlock]
    let downsample: PatchMerging?

    init(_ sd: StateDict, stage i: Int, config: HTSATConfig, precision: HTSATPrecision) throws {
        let dim = config.channels(stage: i), res = config.resolution(stage: i)
        layout = TokenLayout(resolution: res, window: config.windowSizes[i])
        blocks = try (0..<config.depths[i]).map { [layout] j in
            try SwinTransformerBlock(sd, "layers.\(i).blocks.\(j)", dim: dim, heads: config.numHeads[i], layout: layout,
                                     shifted: j % 2 == 1, precision: precision)
        }
        if i < config.stageCount - 1 {
            let next = TokenLayout(resolution: config.resolution(stage: i + 1), window: config.windowSizes[i + 1])
            downsample = try PatchMerging(sd, "layers.\(i).downsample", from: layout, to: next, dim: dim, precision: precision)
        } else {
            downsample = nil
        }
        if downsample == nil, let found = sd.shape(of: "layers.\(i).downsample.reduction.weight") {
            throw ModelError.unsupportedArchitecture(
                detail: "the last stage \(i) has a downsample layer (reduction weight \(found)); the official model has none there",
                file: sd.source)
        }
    }

    /// Runs the stage in place on `x` (this stage's layout in, the next stage's layout out after merging).
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, ws: Workspace) {
        for block in blocks { block(x, ws: ws) }
        downsample?(x, ws: ws)
    }
}
