import FrontEnd

/// The model's front end (centred STFT, its mel filterbank, dB) over audio of any length, for pictures of what the
/// model sees (clip spectrograms, `htsatd plot`). Owns its buffers, so it may run on another thread than inference;
/// create it where FFTW plans may be made (start-up), then use it from one thread.
public final class LogMelExtractor {
    /// Mel bands per frame.
    public let mels: Int
    /// Samples between frames.
    public let hop: Int
    private let stft: STFT
    private let logMel: LogMel
    private let chunk = 256
    private var power: [Float]

    /// An extractor with `model`'s STFT size, hop and filterbank.
    public init(model: HTSATModel) throws {
        stft = try STFT(nFFT: model.config.nFFT, hopLength: model.config.signal.hopSize)
        logMel = model.logMel
        mels = model.config.melBins
        hop = model.config.signal.hopSize
        power = [Float](repeating: 0, count: chunk * stft.bins)
    }

    /// `samples.count / hop + 1` frames x `mels` dB values, frame-major.
    public func callAsFunction(_ samples: UnsafeBufferPointer<Float>) -> [Float] {
        let frames = stft.frameCount(sampleCount: samples.count), bins = stft.bins
        var out = [Float](repeating: 0, count: frames * mels)
        power.withUnsafeMutableBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                var f0 = 0
                while f0 < frames {
                    let f1 = min(frames, f0 + chunk)
                    // STFT writes frame f at row f; shift the base so that this chunk lands at row 0.
                    stft.power(samples, frames: f0..<f1, into: p.baseAddress! - f0 * bins)
                    logMel.apply(power: p.baseAddress!, frames: f1 - f0, into: o.baseAddress! + f0 * mels)
                    f0 = f1
                }
            }
        }
        return out
    }
}
