/// Signal parameters of a checkpoint family (not stored in checkpoints).
///
/// Values follow the official `config.py` / README: the mel filterbank itself is stored in every
/// checkpoint, so `fmin`/`fmax` document the family and do not change the computation.
public struct SignalConfig: Sendable, Equatable {
    /// Input sample rate in Hz.
    public var sampleRate: Int
    /// STFT hop in samples.
    public var hopSize: Int
    /// Samples per model window (the official `clip_samples`).
    public var clipSamples: Int
    /// Lowest mel frequency in Hz.
    public var fmin: Double
    /// Highest mel frequency in Hz.
    public var fmax: Double

    /// Plain memberwise initializer.
    public init(sampleRate: Int, hopSize: Int, clipSamples: Int, fmin: Double, fmax: Double) {
        self.sampleRate = sampleRate
        self.hopSize = hopSize
        self.clipSamples = clipSamples
        self.fmin = fmin
        self.fmax = fmax
    }

    /// AudioSet: 10-s clips at 32 kHz, hop 320.
    public static let audioSet = SignalConfig(sampleRate: 32000, hopSize: 320, clipSamples: 320_000, fmin: 50, fmax: 14000)
    /// ESC-50: 32 kHz, hop 320; the official loader doubles each 5-s clip to 10 s.
    public static let esc50 = SignalConfig(sampleRate: 32000, hopSize: 320, clipSamples: 320_000, fmin: 50, fmax: 14000)
    /// Speech Commands V2: 16 kHz, hop 160; the official loader repeats each clip to `clip_samples = sample_rate * 10`.
    public static let scv2 = SignalConfig(sampleRate: 16000, hopSize: 160, clipSamples: 160_000, fmin: 50, fmax: 14000)

    /// STFT frames of a full clip (centred frames: `clipSamples / hopSize + 1`).
    public var clipFrames: Int { clipSamples / hopSize + 1 }

    /// Window length in seconds.
    public var clipSeconds: Double { Double(clipSamples) / Double(sampleRate) }
}

/// The architecture inferred from a checkpoint.
public struct HTSATConfig: Sendable, Equatable {
    /// Patch-embedding width (stage 0 channels).
    public var embedDim: Int
    /// Swin blocks per stage.
    public var depths: [Int]
    /// Attention heads per stage.
    public var numHeads: [Int]
    /// The configured attention window (the official `window_size`).
    public var windowSize: Int
    /// The window each stage really uses: `min(windowSize, resolution)`.
    public var windowSizes: [Int]
    /// Patch size, also the patch stride.
    public var patchSize: Int
    /// Side of the square input image (the official `spec_size`).
    public var specSize: Int
    /// Mel bands (bn0 channels).
    public var melBins: Int
    /// STFT size.
    public var nFFT: Int
    /// Output classes.
    public var classes: Int
    /// Signal parameters the model is run with.
    public var signal: SignalConfig
    /// The official configuration the checkpoint is (nil: none, or not inferred).
    public var preset: ModelPreset?
    /// How the outputs are read: sigmoid (multi-label) or softmax (single-label, ESC-50).
    public var activation: OutputActivation

    /// Number of Swin stages.
    public var stageCount: Int { depths.count }
    /// How many time chunks are stacked along the image height (`spec_size // mel_bins`).
    public var freqRatio: Int { specSize / melBins }
    /// Frames the spectrogram is stretched to before folding (`spec_size * freq_ratio`).
    public var imageFrames: Int { specSize * freqRatio }
    /// Image height per time chunk (`spec_size // freq_ratio`).
    public var imageBins: Int { specSize / freqRatio }
    /// Token grid side after patch embedding.
    public var gridSize: Int { specSize / patchSize }
    /// Token grid side of `stage`.
    public func resolution(stage: Int) -> Int { gridSize >> stage }
    /// Channels of `stage`.
    public func channels(stage: Int) -> Int { embedDim << stage }
    /// Channels after the last stage (the official `num_features`).
    public var numFeatures: Int { channels(stage: stageCount - 1) }
    /// Frequency rows per time chunk in the token-semantic head (`c_freq_bin`).
    public var headFreqBins: Int { resolution(stage: stageCount - 1) / freqRatio }
    /// Time steps of the token-semantic output.
    public var tokenSteps: Int { freqRatio * resolution(stage: stageCount - 1) }
    /// Frames each token step is repeated to in `framewise` (the official `8 * patch_stride[1]`).
    public var framewiseRepeat: Int { 8 * patchSize }
    /// Rows of `HTSATOutput.framewise` (1024 for the official 4-stage model).
    public var framewiseFrames: Int { tokenSteps * framewiseRepeat }

    /// Plain memberwise initializer.
    public init(embedDim: Int, depths: [Int], numHeads: [Int], windowSize: Int, windowSizes: [Int], patchSize: Int,
                specSize: Int, melBins: Int, nFFT: Int, classes: Int, signal: SignalConfig,
                preset: ModelPreset? = nil, activation: OutputActivation = .sigmoid) {
        self.embedDim = embedDim
        self.depths = depths
        self.numHeads = numHeads
        self.windowSize = windowSize
        self.windowSizes = windowSizes
        self.patchSize = patchSize
        self.specSize = specSize
        self.melBins = melBins
        self.nFFT = nFFT
        self.classes = classes
        self.signal = signal
        self.preset = preset
        self.activation = activation
    }
}

/// Why a checkpoint's architecture or the signal parameters cannot be run; names the file and what is wrong.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    /// The tensors describe something other than the official HTS-AT architecture.
    case unsupportedArchitecture(detail: String, file: String)
    /// The signal parameters do not fit the model.
    case signalMismatch(detail: String)
    /// A constructor argument is out of range.
    case invalidArgument(detail: String)
    /// The preset asked for contradicts the checkpoint; `found` says what the checkpoint is.
    case presetMismatch(given: ModelPreset, found: String, file: String)

    public var description: String {
        switch self {
        case .unsupportedArchitecture(let d, let f):
            return "\(f): not a runnable HTS-AT checkpoint: \(d)"
        case .signalMismatch(let d):
            return "signal parameters do not fit the model: \(d): pick the SignalConfig of the checkpoint's family"
        case .invalidArgument(let d):
            return "invalid argument: \(d)"
        case let .presetMismatch(given, found, file):
            return "preset \(given.rawValue) was asked for, but the checkpoint \(file) is \(found)"
        }
    }
}

extension HTSATConfig {
    /// Ceilings far above the official models (spec_size 256, patch 4 so a 64 x 64 token grid, window 8). Shapes come
    /// from the file, and a few bytes can describe an architecture whose buffers would exhaust memory (or whose sizes
    /// overflow), so such a checkpoint is refused up front.
    static let maxSpecSize = 1024, maxGridSize = 256, maxWindow = 16

    /// Infers the architecture from tensor shapes, and checks that it is one the official code can build.
    public static func infer(from sd: StateDict, signal: SignalConfig = .audioSet) throws -> HTSATConfig {
        func fail(_ detail: String) -> ModelError { .unsupportedArchitecture(detail: detail, file: sd.source) }
        func shape(_ key: String, rank: Int) throws -> [Int] {
            guard let s = sd.shape(of: key) else { throw WeightsError.missingTensor(key: key, file: sd.source) }
            guard s.count == rank else { throw fail("tensor '\(key)' has shape \(s), expected \(rank) dimensions") }
            return s
        }

        let proj = try shape("patch_embed.proj.weight", rank: 4)
        guard proj[0] >= 1, proj[1] == 1, proj[2] >= 1, proj[2] == proj[3], proj[2] <= maxSpecSize else {
            throw fail("'patch_embed.proj.weight' has shape \(proj), expected [embed_dim, 1, patch, patch] with a patch of at most \(maxSpecSize)")
        }
        let embedDim = proj[0], patch = proj[2]

        var depths: [Int] = []
        while sd.shape(of: "layers.\(depths.count).blocks.0.norm1.weight") != nil {
            var d = 0
            while sd.shape(of: "layers.\(depths.count).blocks.\(d).norm1.weight") != nil { d += 1 }
            depths.append(d)
        }
        guard !depths.isEmpty else { throw WeightsError.missingTensor(key: "layers.0.blocks.0.norm1.weight", file: sd.source) }

        var heads: [Int] = [], windows: [Int] = []
        for i in depths.indices {
            let key = "layers.\(i).blocks.0.attn.relative_position_bias_table"
            let t = try shape(key, rank: 2)
            let side = Int(Double(t[0]).squareRoot().rounded())
            guard t[0] <= (2 * maxWindow - 1) * (2 * maxWindow - 1), side * side == t[0], side % 2 == 1, t[1] >= 1 else {
                throw fail("'\(key)' has shape \(t), expected [(2*window-1)^2, heads] with a window of at most \(maxWindow)")
            }
            heads.append(t[1])
            windows.append((side + 1) / 2)
        }

        let melBins = try shape("bn0.weight", rank: 1)[0]
        let melW = try shape("logmel_extractor.melW", rank: 2)
        guard melW[1] == melBins, melW[0] >= 2 else {
            throw WeightsError.shapeMismatch(key: "logmel_extractor.melW", expected: [melW[0], melBins], found: melW, file: sd.source)
        }
        _ = try sd.floats("logmel_extractor.melW", shape: melW)  // its data bounds its shape, so n_fft cannot overflow
        var nFFT = 2 * (melW[0] - 1)
        if let conv = sd.shape(of: "spectrogram_extractor.stft.conv_real.weight") {
            guard conv.count == 3, conv[1] == 1, conv[0] == conv[2] / 2 + 1 else {
                throw fail("'spectrogram_extractor.stft.conv_real.weight' has shape \(conv), expected [n_fft/2+1, 1, n_fft]")
            }
            nFFT = conv[2]
        }
        let classes = try shape("tscam_conv.weight", rank: 4)[0]

        // spec_size is not stored; a shifted block's attention mask reveals it (windows per side x window x patch x 2^stage).
        var specSize = 256
        search: for i in depths.indices {
            for j in 0..<depths[i] {
                guard let m = sd.shape(of: "layers.\(i).blocks.\(j).attn_mask") else { continue }
                let perSide = Int(Double(m.first ?? 0).squareRoot().rounded())
                guard m.count == 3, m[0] <= maxGridSize * maxGridSize, perSide * perSide == m[0],
                      m[1] == windows[i] * windows[i], m[2] == m[1] else {
                    throw fail("'layers.\(i).blocks.\(j).attn_mask' has shape \(m), expected [windows, \(windows[i] * windows[i]), \(windows[i] * windows[i])] with a square number of at most \(maxGridSize * maxGridSize) windows")
                }
                specSize = perSide * windows[i] * patch << i
                break search
            }
        }

        let config = HTSATConfig(embedDim: embedDim, depths: depths, numHeads: heads, windowSize: windows.max()!,
                                 windowSizes: windows, patchSize: patch, specSize: specSize, melBins: melBins,
                                 nFFT: nFFT, classes: classes, signal: signal)
        try config.check(file: sd.source)
        return config
    }

    /// Checks the divisibility rules the official reshapes rely on, and the signal parameters.
    func check(file: String) throws {
        func fail(_ detail: String) -> ModelError { .unsupportedArchitecture(detail: detail, file: file) }
        guard patchSize >= 1 else { throw fail("patch size \(patchSize) is not positive") }
        guard specSize <= Self.maxSpecSize, gridSize <= Self.maxGridSize, windowSize <= Self.maxWindow else {
            throw fail("spec_size \(specSize) with patch \(patchSize) (a \(gridSize)² token grid) and window \(windowSize) exceeds what this loader accepts (spec_size \(Self.maxSpecSize), a \(Self.maxGridSize)² grid, window \(Self.maxWindow); the official models have 256, 64² and 8)")
        }
        guard melBins >= 1, melBins <= specSize else { throw fail("\(melBins) mel bins do not fit spec_size \(specSize)") }
        guard specSize % freqRatio == 0 else { throw fail("spec_size \(specSize) is not a multiple of freq_ratio \(freqRatio)") }
        guard specSize % patchSize == 0 else { throw fail("spec_size \(specSize) is not a multiple of the patch size \(patchSize)") }
        for i in 0..<stageCount {
            let res = resolution(stage: i)
            guard res >= 1, res << i == gridSize else { throw fail("stage \(i): the token grid \(gridSize) cannot be halved \(i) times") }
            guard numHeads[i] >= 1, channels(stage: i) % numHeads[i] == 0 else {
                throw fail("stage \(i): \(channels(stage: i)) channels do not split into \(numHeads[i]) heads")
            }
            guard windowSizes[i] == min(windowSize, res), res % windowSizes[i] == 0 else {
                throw fail("stage \(i): window \(windowSizes[i]) does not fit resolution \(res) with window_size \(windowSize) (spec_size \(specSize))")
            }
            guard depths[i] >= 1 else { throw fail("stage \(i) has no blocks") }
        }
        let last = resolution(stage: stageCount - 1)
        guard last % freqRatio == 0, headFreqBins >= 1 else {
            throw fail("final resolution \(last) is not a multiple of freq_ratio \(freqRatio)")
        }
        guard signal.hopSize >= 1, signal.clipSamples >= 1 else {
            throw ModelError.signalMismatch(detail: "hop \(signal.hopSize) and clip \(signal.clipSamples) samples must be positive")
        }
        guard signal.clipFrames <= imageFrames else {
            throw ModelError.signalMismatch(detail: "\(signal.clipSamples) samples at hop \(signal.hopSize) give \(signal.clipFrames) frames, but the model takes at most \(imageFrames)")
        }
    }
}
