import CHTSATKernels

/// The token-semantic head (`tscam_conv`): regroups the final tokens into `c_freq_bin` frequency rows x
/// `freq_ratio * ST` time steps, then a Conv2d with kernel (c_freq_bin, 3) and padding (0, 1) maps them
/// to one logit per class and time step.
struct TokenSemanticHead {
    let channels: Int
    let classes: Int
    /// Final grid side (the official SF = ST).
    let side: Int
    let freqBins: Int
    let steps: Int
    /// Where the final tokens sit (grid index -> slot).
    let slotOfGrid: [Int32]
    /// For each (frequency row fb, kernel tap dt), the token slot each time step reads (-1: the zero padding).
    let im2colIndex: [[Int32]]
    /// The conv as a (classes x channels*freqBins*3) matrix over im2col columns.
    let conv: Linear

    init(_ sd: StateDict, config: HTSATConfig, layout: TokenLayout, precision: HTSATPrecision) throws {
        channels = config.numFeatures
        classes = config.classes
        side = config.resolution(stage: config.stageCount - 1)
        freqBins = config.headFreqBins
        steps = config.tokenSteps
        slotOfGrid = layout.slotOfGrid
        // Grouped view: X[c][fb][k * side + s] = grid token (k * freqBins + fb, s); tap dt of step t reads
        // X[c][fb][t + dt - 1] (zero outside).
        var index: [[Int32]] = []
        for fb in 0..<config.headFreqBins {
            for dt in 0..<3 {
                var row = [Int32](repeating: -1, count: Panels.chunks(config.tokenSteps) * Panels.width)
                for t in 0..<config.tokenSteps {
                    let time = t + dt - 1
                    guard time >= 0, time < config.tokenSteps else { continue }
                    row[t] = layout.slotOfGrid[((time / side) * freqBins + fb) * side + time % side]
                }
                index.append(row)
            }
        }
        im2colIndex = index
        conv = try Linear(sd, "tscam_conv", in: channels * freqBins * 3, out: classes,
                          storedShape: [classes, channels, freqBins, 3], precision: precision)
    }

    /// im2col height: the conv's input rows, (c * freqBins + fb) * 3 + dt.
    var columns: Int { channels * freqBins * 3 }

    /// tokens (after the final norm, panel layout) -> latent (channels) and logits (classes x steps, row-major).
    func callAsFunction(_ tokens: UnsafePointer<Float>, ws: Workspace, latent: UnsafeMutablePointer<Float>,
                        logits: UnsafeMutablePointer<Float>) {
        let w = Panels.width
        // latent_output: the mean of every token.
        for c in 0..<channels {
            var sum: Double = 0
            for slot in slotOfGrid { sum += Double(tokens[(Int(slot) / w) * channels * w + c * w + Int(slot) % w]) }
            latent[c] = Float(sum / Double(slotOfGrid.count))
        }
        // im2col in panel layout: one gather per (fb, dt), whose channel c lands on row (c * freqBins + fb) * 3 + dt.
        let cols = ws.arena.p, panels = Panels.chunks(steps)
        for (i, index) in im2colIndex.enumerated() {
            hk_gather(ws.pool, Int32(channels), Int32(panels), index, tokens, channels * w, cols + i * w, columns * w,
                      freqBins * 3 * w, 0)
        }
        conv(cols, chunks: panels, into: ws.headLogits.p, ws: ws)
        for k in 0..<classes {
            for t in 0..<steps { logits[k * steps + t] = ws.headLogits.p[(t / w) * classes * w + k * w + t % w] }
        }
    }

    /// tokens (after the final norm, panel layout) -> one vector per time step (steps x channels, step-major): the
    /// grouped view X[c][fb][t] averaged over its frequency rows fb, the features `tscam_conv` reads at step t.
    func embeddings(_ tokens: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let w = Panels.width
        out.update(repeating: 0, count: steps * channels)
        for t in 0..<steps {
            let row = out + t * channels
            for fb in 0..<freqBins {
                let slot = Int(slotOfGrid[((t / side) * freqBins + fb) * side + t % side])
                let token = tokens + (slot / w) * channels * w + slot % w
                for c in 0..<channels { row[c] += token[c * w] }
            }
            let scale = 1 / Float(freqBins)
            for c in 0..<channels { row[c] *= scale }
        }
    }
}
