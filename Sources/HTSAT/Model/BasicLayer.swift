/// `layers.i`: a stage of Swin blocks, alternating plain and shifted windows, then an optional PatchMerging.
struct BasicLayer {
    let blocks: [SwinTransformerBlock]
    let downsample: PatchMerging?

    init(_ sd: StateDict, stage i: Int, config: HTSATConfig) throws {
        let dim = config.channels(stage: i), res = config.resolution(stage: i)
        blocks = try (0..<config.depths[i]).map { j in
            try SwinTransformerBlock(sd, "layers.\(i).blocks.\(j)", dim: dim, heads: config.numHeads[i], resolution: res,
                                     window: config.windowSizes[i], shifted: j % 2 == 1)
        }
        downsample = i < config.stageCount - 1 ? try PatchMerging(sd, "layers.\(i).downsample", resolution: res, dim: dim) : nil
        if downsample == nil, let found = sd.shape(of: "layers.\(i).downsample.reduction.weight") {
            throw ModelError.unsupportedArchitecture(
                detail: "the last stage \(i) has a downsample layer (reduction weight \(found)); the official model has none there",
                file: sd.source)
        }
    }

    /// Runs the stage in place on `x`.
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, ws: Workspace) {
        for block in blocks { block(x, ws: ws) }
        downsample?(x, ws: ws)
    }
}
