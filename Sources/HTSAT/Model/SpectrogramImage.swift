/// `bn0`: BatchNorm2d over the mel bands in eval mode (running statistics, eps 1e-5).
struct BatchNorm0 {
    let channels: Int
    /// Per-channel `weight / sqrt(var + eps)` and `bias - mean * scale`, folded like torch's CPU kernel.
    private let scale: [Float]
    private let shift: [Float]

    init(_ sd: StateDict, channels: Int) throws {
        self.channels = channels
        let w = try sd.floats("bn0.weight", shape: [channels])
        let b = try sd.floats("bn0.bias", shape: [channels])
        let mean = try sd.floats("bn0.running_mean", shape: [channels])
        let variance = try sd.floats("bn0.running_var", shape: [channels])
        let eps: Float = 1e-5
        let alpha = (0..<channels).map { (1 / (variance[$0] + eps).squareRoot()) * w[$0] }
        scale = alpha
        shift = (0..<channels).map { b[$0] - mean[$0] * alpha[$0] }
    }

    /// `frames x channels` values in place.
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, frames: Int) {
        for f in 0..<frames {
            let row = x + f * channels
            for c in 0..<channels { row[c] = row[c] * scale[c] + shift[c] }
        }
    }
}

/// `reshape_wav2img`: stretches the (frames x mels) spectrogram to `spec_size * freq_ratio` frames with
/// PyTorch's bicubic interpolation (align_corners=True), then folds it into a `spec_size` square image
/// whose rows are `freq_ratio` stacked time chunks.
struct SpectrogramImage {
    let specSize: Int
    let freqRatio: Int
    let targetFrames: Int
    let targetBins: Int

    init(config: HTSATConfig) {
        specSize = config.specSize
        freqRatio = config.freqRatio
        targetFrames = config.imageFrames
        targetBins = config.imageBins
    }

    /// `spec` is frames x mels; `stretched` must hold targetFrames x targetBins; `image` receives specSize^2.
    func callAsFunction(_ spec: UnsafePointer<Float>, frames: Int, mels: Int,
                        stretched: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                        image: UnsafeMutablePointer<Float>) {
        // Two separate 1-D passes, as the official code makes two interpolate calls (time, then frequency).
        var src = spec
        var bins = mels
        if frames < targetFrames {
            Bicubic.resample(src, count: frames, to: targetFrames, stride: bins, width: bins, into: stretched, outStride: bins)
            src = UnsafePointer(stretched)
        } else {
            stretched.update(from: spec, count: targetFrames * bins)
            src = UnsafePointer(stretched)
        }
        if bins < targetBins {
            // Interpolating along the bins of each frame: a resample with unit element stride.
            for f in 0..<targetFrames {
                Bicubic.resample(src + f * bins, count: bins, to: targetBins, stride: 1, width: 1,
                                 into: scratch + f * targetBins, outStride: 1)
            }
            stretched.update(from: scratch, count: targetFrames * targetBins)
            bins = targetBins
        }
        // image[k * bins + f][c] = stretched[k * specSize + c][f]
        for k in 0..<freqRatio {
            for f in 0..<bins {
                let row = image + (k * bins + f) * specSize
                let col = stretched + (k * specSize) * bins + f
                for c in 0..<specSize { row[c] = col[c * bins] }
            }
        }
    }
}

/// PyTorch's CPU bicubic upsampling along one axis (align_corners=True, A = -0.75, clamped borders),
/// with the scale, source index and weights computed in float32 like its kernel.
enum Bicubic {
    static let a: Float = -0.75

    /// Cubic convolution weights for a fractional offset `t` in [0, 1].
    @inline(__always)
    static func weights(_ t: Float) -> (Float, Float, Float, Float) {
        func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        let u = 1 - t
        return (far(t + 1), near(t), near(u), far(u + 1))
    }

    /// Resamples `count` rows (`stride` apart, `width` values each) to `outCount` rows.
    static func resample(_ x: UnsafePointer<Float>, count: Int, to outCount: Int, stride: Int, width: Int,
                         into y: UnsafeMutablePointer<Float>, outStride: Int) {
        let scale: Float = outCount > 1 ? Float(count - 1) / Float(outCount - 1) : 0
        for i in 0..<outCount {
            let real = scale * Float(i)
            let index = min(Int(real.rounded(.down)), count - 1)
            let t = min(max(real - Float(index), 0), 1)
            let (w0, w1, w2, w3) = weights(t)
            let r0 = x + max(index - 1, 0) * stride
            let r1 = x + index * stride
            let r2 = x + min(index + 1, count - 1) * stride
            let r3 = x + min(index + 2, count - 1) * stride
            let out = y + i * outStride
            for c in 0..<width {
                var v = r0[c] * w0
                v += r1[c] * w1
                v += r2[c] * w2
                v += r3[c] * w3
                out[c] = v
            }
        }
    }
}
