import Foundation

/// The three official HTS-AT configurations (`config.py` for AudioSet and, with the README's edits, Speech Commands
/// V2; `esc_config.py` for ESC-50). The raw values are the names `--preset` and the config file use.
public enum ModelPreset: String, CaseIterable, Sendable {
    case audioset, esc50, scv2

    /// The preset whose class count this is (527, 50 or 35), if any.
    public init?(classes: Int) {
        guard let preset = ModelPreset.allCases.first(where: { $0.classes == classes }) else { return nil }
        self = preset
    }

    /// Output classes (`classes_num`).
    public var classes: Int {
        switch self {
        case .audioset: return 527
        case .esc50: return 50
        case .scv2: return 35
        }
    }

    /// The signal the preset was trained with.
    public var signal: SignalConfig {
        switch self {
        case .audioset: return .audioSet
        case .esc50: return .esc50
        case .scv2: return .scv2
        }
    }

    /// The activation of the training loss: `clip_ce` (ESC-50) is a softmax over classes, `clip_bce` a sigmoid.
    public var activation: OutputActivation { self == .esc50 ? .softmax : .sigmoid }

    /// The dataset's name, for messages.
    public var title: String {
        switch self {
        case .audioset: return "AudioSet"
        case .esc50: return "ESC-50"
        case .scv2: return "Speech Commands V2"
        }
    }
}

/// How a model's scores are meant to be read, from the loss it was trained with.
public enum OutputActivation: String, Sendable {
    /// `clip_bce`: independent per-class sigmoids (multi-label; AudioSet, SCV2 and unknown class counts).
    case sigmoid
    /// `clip_ce`: one label per clip, a softmax over classes (ESC-50).
    case softmax
}

/// How a clip shorter than the model's window becomes the model input.
public enum ShortClipPolicy: String, CaseIterable, Sendable {
    /// As the preset's official dataset code builds its inputs (`data_generator.py`): ESC-50 and SCV2 repeat the clip
    /// to the window and cut it there (`SCV2_Dataset` doubles until >= `clip_samples`; `ESC_Dataset` concatenates each
    /// 5-s clip with itself, the same thing for its clips); AudioSet and unknown checkpoints pad with zeros at the
    /// end, as the AudioSet waveforms (PANNs' hdf5 packing) and `DESED_Dataset` do.
    case dataset
    /// Zeros after the clip, up to the window.
    case pad
    /// The clip as it is: the official forward stretches its own frames to the image (the `raw_*` goldens).
    case raw
}

/// What a checkpoint is, read from its tensors: the preset, its signal and how to read its outputs.
public struct ModelProfile: Sendable, Equatable, CustomStringConvertible {
    /// The official configuration, or nil when the class count is none of theirs.
    public var preset: ModelPreset?
    /// Output classes (`tscam_conv.weight` rows).
    public var classes: Int
    /// The sample rate the stored mel filterbank was made for.
    public var filterbankRate: Int
    /// STFT size, from the STFT kernels (or the filterbank's bins).
    public var nFFT: Int
    /// The signal the model runs with.
    public var signal: SignalConfig
    /// How the outputs are read.
    public var activation: OutputActivation
    /// Set when the profile is a fallback or an override that the caller should report.
    public var note: String?

    /// What the tensors say, e.g. "35 classes and a mel filterbank for 16 kHz".
    public var evidence: String { "\(classes) classes and a mel filterbank for \(Self.kHz(filterbankRate))" }

    /// E.g. "scv2: 35 classes and a mel filterbank for 16 kHz" (or "an unknown model: 10 classes and ...").
    public var description: String { "\(preset?.rawValue ?? "an unknown model"): \(evidence)" }

    /// Plain memberwise initializer.
    public init(preset: ModelPreset?, classes: Int, filterbankRate: Int, nFFT: Int, signal: SignalConfig,
                activation: OutputActivation, note: String? = nil) {
        self.preset = preset
        self.classes = classes
        self.filterbankRate = filterbankRate
        self.nFFT = nFFT
        self.signal = signal
        self.activation = activation
        self.note = note
    }

    static func kHz(_ rate: Int) -> String {
        rate % 1000 == 0 ? "\(rate / 1000) kHz" : String(format: "%.1f kHz", Double(rate) / 1000)
    }

    /// Reads the profile from `sd`: the preset from the class count (527, 50, 35), the sample rate from which mel
    /// filters are empty (the official banks span 50-14000 Hz, so at 16 kHz the filters above the 8 kHz Nyquist are
    /// all zero; at 32 kHz none is). `preset`, when given, is checked: one that contradicts the checkpoint throws
    /// `ModelError.presetMismatch`. An unknown class count without a preset gets the filterbank's signal and
    /// sigmoid outputs, with a `note` saying so.
    public static func infer(from sd: StateDict, preset given: ModelPreset? = nil) throws -> ModelProfile {
        guard let conv = sd.shape(of: "tscam_conv.weight") else {
            throw WeightsError.missingTensor(key: "tscam_conv.weight", file: sd.source)
        }
        guard conv.count == 4, conv[0] >= 1 else {
            throw ModelError.unsupportedArchitecture(detail: "'tscam_conv.weight' has shape \(conv), expected [classes, channels, freq, 3]", file: sd.source)
        }
        let classes = conv[0]
        let key = "logmel_extractor.melW"
        guard let melShape = sd.shape(of: key) else { throw WeightsError.missingTensor(key: key, file: sd.source) }
        guard melShape.count == 2, melShape[0] >= 2, melShape[1] >= 1 else {
            throw ModelError.unsupportedArchitecture(detail: "'\(key)' has shape \(melShape), expected [n_fft/2+1, mel_bins]", file: sd.source)
        }
        // Read first: the data bounds the shape (a shape alone can be anything, and 2 * (bins - 1) overflow).
        let melW = try sd.floats(key, shape: melShape)
        var nFFT = 2 * (melShape[0] - 1)
        if let kernels = sd.shape(of: "spectrogram_extractor.stft.conv_real.weight"), kernels.count == 3 { nFFT = kernels[2] }
        let rate = try filterbankRate(melW, bins: melShape[0], mels: melShape[1], nFFT: nFFT, file: sd.source)

        let byClasses = ModelPreset(classes: classes)
        let inferred = byClasses.flatMap { $0.signal.sampleRate == rate ? $0 : nil }
        let generic = SignalConfig(sampleRate: rate, hopSize: rate / 100, clipSamples: rate * 10,
                                   fmin: SignalConfig.audioSet.fmin, fmax: SignalConfig.audioSet.fmax)
        var profile = ModelProfile(preset: inferred, classes: classes, filterbankRate: rate, nFFT: nFFT,
                                   signal: inferred?.signal ?? generic, activation: inferred?.activation ?? .sigmoid)
        if let given {
            // Contradicted by a filterbank for another rate, or by the class count of another preset.
            if given.signal.sampleRate != rate || (byClasses != nil && byClasses != given) {
                throw ModelError.presetMismatch(given: given, found: profile.description, file: sd.source)
            }
            profile.preset = given
            profile.signal = given.signal
            profile.activation = given.activation
            if classes != given.classes {
                profile.note = "preset \(given.rawValue) (\(given.classes) classes) runs a checkpoint with \(classes) classes: its labels must come from a labels file"
            }
        } else if inferred == nil {
            let why = byClasses.map { "\(classes) classes like \($0.rawValue), but its filterbank is for \(kHz(rate)), not \(kHz($0.signal.sampleRate))" }
                ?? "\(classes) classes match no official preset (audioset 527, esc50 50, scv2 35)"
            profile.note = "\(why): running it at the filterbank's \(kHz(rate)) (hop \(generic.hopSize), \(generic.clipSamples) samples per window) with sigmoid outputs"
        }
        return profile
    }

    /// The sample rate a stored mel filterbank (`bins x mels`, librosa layout) was made for, recognised among the
    /// official rates by which filters are empty: librosa leaves a filter all zero when no FFT bin below Nyquist
    /// falls inside its band.
    static func filterbankRate(_ melW: UnsafeBufferPointer<Float>, bins: Int, mels: Int, nFFT: Int, file: String) throws -> Int {
        var empty: [Int] = []
        for m in 0..<mels where !(0..<bins).contains(where: { melW[$0 * mels + m] != 0 }) { empty.append(m) }
        let candidates = Array(Set(ModelPreset.allCases.map(\.signal.sampleRate))).sorted(by: >)
        for rate in candidates where emptyFilters(rate: rate, mels: mels, nFFT: nFFT) == empty { return rate }
        let expected = candidates.map { "\(emptyFilters(rate: $0, mels: mels, nFFT: nFFT).count) at \(kHz($0))" }
        throw ModelError.unsupportedArchitecture(
            detail: "'logmel_extractor.melW' has \(empty.count) all-zero mel filters \(empty); an official filterbank (\(mels) mels, 50-14000 Hz, n_fft \(nFFT)) has \(expected.joined(separator: ", ")), so its sample rate is unknown",
            file: file)
    }

    /// The filters an official filterbank (Slaney mel scale, 50-14000 Hz, as librosa 0.8 builds it) leaves empty
    /// at `rate`: those with no FFT bin strictly inside their band.
    static func emptyFilters(rate: Int, mels: Int, nFFT: Int) -> [Int] {
        let fSp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fSp, logStep = log(6.4) / 27
        func mel(_ f: Double) -> Double { f < minLogHz ? f / fSp : minLogMel + log(f / minLogHz) / logStep }
        func hz(_ m: Double) -> Double { m < minLogMel ? m * fSp : minLogHz * exp(logStep * (m - minLogMel)) }
        let lo = mel(SignalConfig.audioSet.fmin), hi = mel(SignalConfig.audioSet.fmax)
        let edges = (0..<(mels + 2)).map { hz(lo + (hi - lo) * Double($0) / Double(mels + 1)) }
        let step = Double(rate) / Double(nFFT)
        return (0..<mels).filter { m in
            // Bins k with edges[m] < k * step < edges[m + 2], k <= nFFT / 2.
            let first = Int((edges[m] / step).rounded(.down)) + 1
            return Double(first) * step >= edges[m + 2] || first > nFFT / 2
        }
    }
}

extension HTSATConfig {
    /// The model input for `clip` under `policy`: a clip of `signal.clipSamples` or more gives its first window; a
    /// shorter one is repeated, padded or left as it is (see `ShortClipPolicy`).
    public func modelInput(_ clip: ArraySlice<Float>, policy: ShortClipPolicy) -> [Float] {
        let window = signal.clipSamples
        if clip.count >= window { return Array(clip.prefix(window)) }
        switch policy {
        case .raw:
            return Array(clip)
        case .dataset where (preset == .esc50 || preset == .scv2) && !clip.isEmpty:
            var out: [Float] = []
            out.reserveCapacity(window)
            while out.count < window { out.append(contentsOf: clip.prefix(window - out.count)) }
            return out
        case .dataset, .pad:
            return Array(clip) + [Float](repeating: 0, count: window - clip.count)
        }
    }

    /// `modelInput(_:policy:)` for a whole array.
    public func modelInput(_ clip: [Float], policy: ShortClipPolicy) -> [Float] { modelInput(clip[...], policy: policy) }
}
