import CSoxr

/// An error from libsoxr, naming the operation.
public struct ResamplerError: Error, CustomStringConvertible {
    /// What was being done, e.g. "soxr_create 44100 Hz -> 32000 Hz".
    public var operation: String
    /// libsoxr's message.
    public var message: String
    public var description: String { "resampler: \(operation) failed: \(message)" }
}

/// Streaming mono Float32 sample-rate converter on libsoxr (HQ = 20-bit quality, linear phase).
///
/// Timing: soxr compensates its own filter delay, so output sample k corresponds to input
/// time k / outputRate exactly, and after `flush` the total output is round(n * ratio).
/// The cost is streaming latency: soxr holds back `delay` output samples until more input (or
/// `flush`) arrives. Measured at 48 kHz -> 32 kHz in 1536-frame blocks it stays under ~600
/// output samples (< 20 ms); see `delay` for the live value.
public final class Resampler {
    /// Input sample rate in Hz.
    public let inputRate: Int
    /// Output sample rate in Hz.
    public let outputRate: Int
    private let soxr: soxr_t

    /// Creates a resampler; both rates must be positive.
    public init(inputRate: Int, outputRate: Int) throws {
        let what = "soxr_create \(inputRate) Hz -> \(outputRate) Hz"
        guard inputRate > 0, outputRate > 0 else {
            throw ResamplerError(operation: what, message: "sample rates must be positive")
        }
        self.inputRate = inputRate
        self.outputRate = outputRate
        var error: soxr_error_t? = nil
        var io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I)
        var quality = soxr_quality_spec(UInt(SOXR_HQ), 0)
        guard let handle = soxr_create(Double(inputRate), Double(outputRate), 1, &error, &io, &quality, nil),
              error == nil else {
            throw ResamplerError(operation: what, message: error.map { String(cString: $0) } ?? "unknown error")
        }
        soxr = handle
    }

    deinit {
        soxr_delete(soxr)
    }

    /// Output room for `inputCount` input samples: with this much, `process` takes the whole
    /// input in one call in practice. soxr releases held-back samples in bursts (measured up to
    /// ~2500 extra output samples at 8 kHz -> 32 kHz), hence the margin.
    public func maxOutputCount(forInput inputCount: Int) -> Int {
        let ratio = Double(outputRate) / Double(inputRate)
        return Int((Double(inputCount) * ratio).rounded(.up)) + Int(4096 * max(1, ratio)) + 1024
    }

    /// Output samples currently held inside soxr (the streaming latency, in output samples).
    public var delay: Double { soxr_delay(soxr) }

    /// Feeds `input` and writes what is ready into `output`. When `output` fills up, part of the
    /// input may be left (`consumed < input.count`): feed the rest again.
    @discardableResult
    public func process(input: UnsafeBufferPointer<Float>, output: UnsafeMutableBufferPointer<Float>) throws -> (consumed: Int, produced: Int) {
        guard input.count > 0, let inBase = input.baseAddress else { return (0, 0) }
        var used = 0
        var made = 0
        let error = soxr_process(soxr, inBase, input.count, &used, output.baseAddress, output.count, &made)
        if let error { throw ResamplerError(operation: "soxr_process", message: String(cString: error)) }
        return (used, made)
    }

    /// Signals end of input and drains held-back samples into `output`. Returns how many were
    /// written; call again until it returns 0. Then `reset()` before reuse.
    public func flush(output: UnsafeMutableBufferPointer<Float>) throws -> Int {
        var made = 0
        let error = soxr_process(soxr, nil, 0, nil, output.baseAddress, output.count, &made)
        if let error { throw ResamplerError(operation: "soxr_process (flush)", message: String(cString: error)) }
        return made
    }

    /// Forgets all held state, ready for an unrelated signal.
    public func reset() {
        _ = soxr_clear(soxr)
    }
}
