/// `patch_embed`: a Conv2d with kernel = stride = patch over the image, flattened to tokens, then LayerNorm.
struct PatchEmbed {
    let patch: Int
    let grid: Int
    let imageSize: Int
    let embedDim: Int
    let layout: TokenLayout
    /// The conv as a Linear over flattened patches: weight (embed x patch*patch), bias (embed).
    let proj: Linear
    let norm: LayerNorm

    init(_ sd: StateDict, config: HTSATConfig) throws {
        patch = config.patchSize
        grid = config.gridSize
        imageSize = config.specSize
        embedDim = config.embedDim
        layout = TokenLayout(resolution: grid, window: config.windowSizes[0])
        proj = try Linear(sd, "patch_embed.proj", in: patch * patch, out: embedDim, storedShape: [embedDim, 1, patch, patch])
        norm = try LayerNorm(sd, "patch_embed.norm", dim: embedDim)
    }

    /// image (imageSize^2) -> tokens (embedDim channels in stage 0's layout); `patches` holds patch^2 x slots.
    func callAsFunction(_ image: UnsafePointer<Float>, patches: UnsafeMutablePointer<Float>, into tokens: UnsafeMutablePointer<Float>,
                        ws: Workspace) {
        // im2col: one column per token, rows in the kernel's (i, j) order, columns in layout order.
        let w = Panels.width, k = patch * patch
        for gh in 0..<grid {
            for gw in 0..<grid {
                let slot = Int(layout.slotOfGrid[gh * grid + gw])
                let column = patches + (slot / w) * k * w + slot % w
                for i in 0..<patch {
                    let src = image + (gh * patch + i) * imageSize + gw * patch
                    for j in 0..<patch { column[(i * patch + j) * w] = src[j] }
                }
            }
        }
        proj(patches, chunks: layout.chunks, into: tokens, ws: ws)
        norm(tokens, chunks: layout.chunks, into: tokens, pool: ws.pool)
    }
}
