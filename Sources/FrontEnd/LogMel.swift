import CHTSATKernels
import Foundation

/// Mel projection with a given filterbank, then power to dB, as torchlibrosa's
/// `LogmelFilterBank(ref=1.0, amin=1e-10, top_db=None)` computes it: `10 * log10(max(power @ melW, amin))`.
///
/// The filterbank comes from the checkpoint (`logmel_extractor.melW`), so the result does not
/// depend on a local mel implementation.
public struct LogMel: @unchecked Sendable {
    /// The power floor before the log (torchlibrosa's `amin`).
    public static let amin: Float = 1e-10
    /// Spectrogram bins per frame (rows of melW).
    public let bins: Int
    /// Mel bands per frame (columns of melW).
    public let mels: Int
    /// melW with its rows padded to whole 16-band blocks (the SIMD kernel's width); immutable once built.
    private let weights: [Float]
    private let stride: Int
    /// Per 16-band block, the rows where any of its filters is nonzero: outside them the products are exact zeros.
    private let first: [Int32]
    private let last: [Int32]

    /// Copies `melW` (bins x mels, row-major, as stored in the checkpoint).
    public init(melW: UnsafeBufferPointer<Float>, bins: Int, mels: Int) throws {
        guard bins >= 1, mels >= 1, melW.count == bins * mels else {
            throw FrontEndError.filterbankShape(expected: [bins, mels], foundCount: melW.count)
        }
        self.bins = bins
        self.mels = mels
        let blocks = (mels + 15) / 16
        stride = blocks * 16
        var w = [Float](repeating: 0, count: bins * stride)
        var first = [Int32](repeating: Int32(bins), count: blocks), last = [Int32](repeating: 0, count: blocks)
        for k in 0..<bins {
            for m in 0..<mels {
                let v = melW[k * mels + m]
                w[k * stride + m] = v
                if v != 0 {
                    first[m / 16] = min(first[m / 16], Int32(k))
                    last[m / 16] = max(last[m / 16], Int32(k + 1))
                }
            }
        }
        weights = w
        self.first = first
        self.last = zip(first, last).map { max($0, $1) }
    }

    /// Maps `frames x bins` power values to `frames x mels` dB values (both frame-major).
    public func apply(power: UnsafePointer<Float>, frames: Int, into out: UnsafeMutablePointer<Float>) {
        apply(power: power, frames: frames, into: out, pool: nil)
    }

    /// Like `apply(power:frames:into:)`, sharing the frames across the threads of `pool` (a CHTSATKernels
    /// `hk_pool`, nil for the calling thread alone).
    public func apply(power: UnsafePointer<Float>, frames: Int, into out: UnsafeMutablePointer<Float>, pool: OpaquePointer?) {
        weights.withUnsafeBufferPointer { w in
            hk_logmel(pool, power, Int32(frames), Int32(bins), w.baseAddress, Int32(mels), Int32(stride), first, last,
                      LogMel.amin, out)
        }
    }
}
