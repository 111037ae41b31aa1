/// `patch_embed`: a Conv2d with kernel = stride = patch over the image, flattened to tokens, then LayerNorm.
struct PatchEmbed {
    let patch: Int
    let grid: Int
    let imageSize: Int
    let embedDim: Int
    /// The conv as a Linear over flattened patches: weight (embed x patch*patch), bias (embed).
    let proj: Linear
    let norm: LayerNorm

    init(_ sd: StateDict, config: HTSATConfig) throws {
        patch = config.patchSize
        grid = config.gridSize
        imageSize = config.specSize
        embedDim = config.embedDim
        proj = try Linear(sd, "patch_embed.proj", in: patch * patch, out: embedDim, storedShape: [embedDim, 1, patch, patch])
        norm = try LayerNorm(sd, "patch_embed.norm", dim: embedDim)
    }

    /// image (imageSize^2) -> tokens (grid^2 x embedDim, row-major over the grid); `patches` holds grid^2 x patch^2.
    func callAsFunction(_ image: UnsafePointer<Float>, patches: UnsafeMutablePointer<Float>, into tokens: UnsafeMutablePointer<Float>) {
        // im2col: one row per token (gh, gw), columns in the kernel's (i, j) order.
        for gh in 0..<grid {
            for gw in 0..<grid {
                let row = patches + (gh * grid + gw) * patch * patch
                for i in 0..<patch {
                    let src = image + (gh * patch + i) * imageSize + gw * patch
                    for j in 0..<patch { row[i * patch + j] = src[j] }
                }
            }
        }
        proj(patches, rows: grid * grid, into: tokens)
        norm(tokens, rows: grid * grid, into: tokens)
    }
}
