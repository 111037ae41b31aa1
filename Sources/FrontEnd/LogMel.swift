import Foundation

/// Mel projection with a given filterbank, then power to dB, as torchlibrosa's
/// `LogmelFilterBank(ref=1.0, amin=1e-10, top_db=None)` computes it: `10 * log10(max(power @ melW, amin))`.
///
/// The filterbank comes from the checkpoint (`logmel_extractor.melW`), so the result does not
/// depend on a local mel implementation.
public struct LogMel: Sendable {
    /// The power floor before the log (torchlibrosa's `amin`).
    public static let amin: Float = 1e-10
    /// Spectrogram bins per frame (rows of melW).
    public let bins: Int
    /// Mel bands per frame (columns of melW).
    public let mels: Int
    /// melW transposed to mels x bins, so each band reads one contiguous row.
    private let weights: [Float]
    /// The span of bins where each band's filter is nonzero; outside it the products are exact zeros.
    private let spans: [Range<Int>]

    /// Copies `melW` (bins x mels, row-major, as stored in the checkpoint).
    public init(melW: UnsafeBufferPointer<Float>, bins: Int, mels: Int) throws {
        guard bins >= 1, mels >= 1, melW.count == bins * mels else {
            throw FrontEndError.filterbankShape(expected: [bins, mels], foundCount: melW.count)
        }
        self.bins = bins
        self.mels = mels
        var w = [Float](repeating: 0, count: bins * mels)
        var spans: [Range<Int>] = []
        for m in 0..<mels {
            var first = bins, last = -1
            for k in 0..<bins {
                let v = melW[k * mels + m]
                w[m * bins + k] = v
                if v != 0 { first = min(first, k); last = k }
            }
            spans.append(last >= first ? first..<(last + 1) : 0..<0)
        }
        weights = w
        self.spans = spans
    }

    /// Maps `frames x bins` power values to `frames x mels` dB values (both frame-major).
    public func apply(power: UnsafePointer<Float>, frames: Int, into out: UnsafeMutablePointer<Float>) {
        weights.withUnsafeBufferPointer { w in
            for f in 0..<frames {
                let p = power + f * bins
                for m in 0..<mels {
                    let row = w.baseAddress! + m * bins
                    var acc: Double = 0
                    for k in spans[m] { acc += Double(p[k]) * Double(row[k]) }
                    out[f * mels + m] = 10 * log10f(max(Float(acc), LogMel.amin))
                }
            }
        }
    }
}
