/// Every intermediate buffer of one inference, sized once from the config.
final class Workspace {
    let power: FloatBuffer
    let spectrogram: FloatBuffer
    let stretched: FloatBuffer
    let stretchScratch: FloatBuffer
    let image: FloatBuffer
    let patches: FloatBuffer
    /// The residual stream, tokens x channels in grid order.
    let x: FloatBuffer
    let normed: FloatBuffer
    let windows: FloatBuffer
    let qkv: FloatBuffer
    let scores: FloatBuffer
    /// Attention heads' outputs before `proj`.
    let context: FloatBuffer
    let hidden: FloatBuffer
    let merged: FloatBuffer
    let headColumns: FloatBuffer
    let logits: FloatBuffer
    let latent: FloatBuffer
    let clipwise: FloatBuffer

    init(config: HTSATConfig, bins: Int, hiddenValues: Int) {
        let frames = config.signal.clipFrames
        let tokens = config.gridSize * config.gridSize
        // tokens x channels shrinks by half at every stage, so stage 0 sizes every activation buffer.
        let activations = tokens * config.embedDim
        let window = config.windowSizes.max()!
        power = FloatBuffer(frames * bins)
        spectrogram = FloatBuffer(frames * config.melBins)
        stretched = FloatBuffer(config.imageFrames * config.imageBins)
        stretchScratch = FloatBuffer(config.melBins < config.imageBins ? config.imageFrames * config.imageBins : 0)
        image = FloatBuffer(config.specSize * config.specSize)
        patches = FloatBuffer(tokens * config.patchSize * config.patchSize)
        x = FloatBuffer(activations)
        normed = FloatBuffer(activations)
        windows = FloatBuffer(activations)
        qkv = FloatBuffer(3 * activations)
        scores = FloatBuffer(window * window * window * window)
        context = FloatBuffer(activations)
        hidden = FloatBuffer(hiddenValues)
        merged = FloatBuffer(activations)
        headColumns = FloatBuffer(config.tokenSteps * config.numFeatures * config.headFreqBins * 3)
        logits = FloatBuffer(config.classes * config.tokenSteps)
        latent = FloatBuffer(config.numFeatures)
        clipwise = FloatBuffer(config.classes)
    }
}
