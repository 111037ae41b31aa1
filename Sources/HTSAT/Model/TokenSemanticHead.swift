/// The token-semantic head (`tscam_conv`): regroups the final tokens into `c_freq_bin` frequency rows x
/// `freq_ratio * ST` time steps, then a Conv2d with kernel (c_freq_bin, 3) and padding (0, 1) maps them
/// to one logit per class and time step.
struct TokenSemanticHead {
    let channels: Int
    let classes: Int
    /// Final grid side (the official SF = ST).
    let side: Int
    let freqBins: Int
    let freqRatio: Int
    let steps: Int
    /// The conv as a (classes x channels*freqBins*3) matrix over im2col rows.
    let conv: Linear

    init(_ sd: StateDict, config: HTSATConfig) throws {
        channels = config.numFeatures
        classes = config.classes
        side = config.resolution(stage: config.stageCount - 1)
        freqBins = config.headFreqBins
        freqRatio = config.freqRatio
        steps = config.tokenSteps
        conv = try Linear(sd, "tscam_conv", in: channels * freqBins * 3, out: classes,
                          storedShape: [classes, channels, freqBins, 3])
    }

    /// im2col width.
    var columns: Int { channels * freqBins * 3 }

    /// tokens (side^2 x channels, after the final norm) -> latent (channels) and logits (classes x steps).
    func callAsFunction(_ tokens: UnsafePointer<Float>, ws: Workspace,
                        latent: UnsafeMutablePointer<Float>, logits: UnsafeMutablePointer<Float>) {
        let count = side * side
        // latent_output: the mean of every token.
        for c in 0..<channels {
            var sum: Double = 0
            for t in 0..<count { sum += Double(tokens[t * channels + c]) }
            latent[c] = Float(sum / Double(count))
        }
        // Grouped view: X[c][fb][k * side + s] = token row (k * freqBins + fb), column s.
        // im2col row t holds X[c][fb][t + dt - 1] at column (c * freqBins + fb) * 3 + dt (zero outside).
        let cols = ws.headColumns.p, width = columns
        for t in 0..<steps {
            let row = cols + t * width
            for dt in 0..<3 {
                let time = t + dt - 1
                if time < 0 || time >= steps {
                    for c in 0..<channels { for fb in 0..<freqBins { row[(c * freqBins + fb) * 3 + dt] = 0 } }
                    continue
                }
                let k = time / side, s = time % side
                for fb in 0..<freqBins {
                    let token = tokens + ((k * freqBins + fb) * side + s) * channels
                    for c in 0..<channels { row[(c * freqBins + fb) * 3 + dt] = token[c] }
                }
            }
        }
        // logits (classes x steps) = bias + W * cols^T
        let bias = conv.bias!
        for k in 0..<classes { for t in 0..<steps { logits[k * steps + t] = bias[k] } }
        gemmNT(m: classes, n: steps, k: width, conv.weight.baseAddress!, lda: width, cols, ldb: width,
               beta: 1, logits, ldc: steps)
    }
}
