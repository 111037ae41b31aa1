import COpenBLAS
import Foundation

/// A float buffer allocated once and reused by every inference.
final class FloatBuffer {
    let count: Int
    let p: UnsafeMutablePointer<Float>

    init(_ count: Int) {
        self.count = count
        p = .allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { p.deallocate() }

    /// The first `n` values, for taps.
    func prefix(_ n: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: p, count: n) }
}

/// `c (m x n) = alpha * a (m x k) * b^T + beta * c`, with b stored n x k (PyTorch's Linear weight layout).
@inline(__always)
func gemmNT(m: Int, n: Int, k: Int, alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int,
            _ b: UnsafePointer<Float>, ldb: Int, beta: Float = 0, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// `c (m x n) = a (m x k) * b (k x n)`.
@inline(__always)
func gemmNN(m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, lda: Int,
            _ b: UnsafePointer<Float>, ldb: Int, _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
}

/// `nn.Linear`: y = x W^T + b, weights read from `<prefix>.weight` (out x in) and `<prefix>.bias`.
/// A conv whose kernel covers its whole input patch is the same product; `storedShape` then names its 4-D shape.
struct Linear {
    let inFeatures: Int
    let outFeatures: Int
    let weight: UnsafeBufferPointer<Float>
    let bias: UnsafeBufferPointer<Float>?

    init(_ sd: StateDict, _ prefix: String, in inFeatures: Int, out outFeatures: Int, bias hasBias: Bool = true,
         storedShape: [Int]? = nil) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = try sd.floats("\(prefix).weight", shape: storedShape ?? [outFeatures, inFeatures])
        bias = hasBias ? try sd.floats("\(prefix).bias", shape: [outFeatures]) : nil
    }

    /// `rows` rows of x (stride `inFeatures`) into y (stride `outFeatures`); x and y must not overlap.
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        if let bias {
            // Start from the bias and accumulate x W^T onto it (sgemm with beta 1).
            for r in 0..<rows { (y + r * outFeatures).update(from: bias.baseAddress!, count: outFeatures) }
        }
        gemmNT(m: rows, n: outFeatures, k: inFeatures, x, lda: inFeatures, weight.baseAddress!, ldb: inFeatures,
               beta: bias == nil ? 0 : 1, y, ldc: outFeatures)
    }
}

/// `nn.LayerNorm(dim)` with eps 1e-5 over the last dimension, from `<prefix>.weight` / `<prefix>.bias`.
struct LayerNorm {
    let dim: Int
    let weight: UnsafeBufferPointer<Float>
    let bias: UnsafeBufferPointer<Float>
    let eps: Float = 1e-5

    init(_ sd: StateDict, _ prefix: String, dim: Int) throws {
        self.dim = dim
        weight = try sd.floats("\(prefix).weight", shape: [dim])
        bias = try sd.floats("\(prefix).bias", shape: [dim])
    }

    /// Normalizes `rows` rows of x into y (y may be x).
    func callAsFunction(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        let w = weight.baseAddress!, b = bias.baseAddress!
        for r in 0..<rows {
            let xr = x + r * dim, yr = y + r * dim
            var sum: Double = 0
            for i in 0..<dim { sum += Double(xr[i]) }
            let mean = sum / Double(dim)
            var sq: Double = 0
            for i in 0..<dim { let d = Double(xr[i]) - mean; sq += d * d }
            // Biased variance, like torch.
            let rstd = Float(1 / (sq / Double(dim) + Double(eps)).squareRoot())
            let m = Float(mean)
            for i in 0..<dim { yr[i] = (xr[i] - m) * rstd * w[i] + b[i] }
        }
    }
}

/// `nn.GELU()` (exact erf form), in place.
func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count {
        let v = x[i]
        x[i] = 0.5 * v * (1 + erff(v * Float(0.5.squareRoot())))
    }
}

/// Logistic sigmoid.
@inline(__always) func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }
