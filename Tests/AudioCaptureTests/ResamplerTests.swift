import AudioCapture
import Foundation
import XCTest

final class ResamplerTests: XCTestCase {
    /// Streams `input` through a resampler in `block`-sized pieces and flushes.
    private func resample(_ input: [Float], from: Int, to: Int, block: Int) throws -> (output: [Float], maxDelay: Double) {
        let resampler = try Resampler(inputRate: from, outputRate: to)
        var output: [Float] = []
        var scratch = [Float](repeating: 0, count: resampler.maxOutputCount(forInput: block))
        var maxDelay = 0.0
        var offset = 0
        while offset < input.count {
            let n = min(block, input.count - offset)
            let result = try input.withUnsafeBufferPointer { src in
                try scratch.withUnsafeMutableBufferPointer { dst in
                    try resampler.process(input: UnsafeBufferPointer(rebasing: src[offset..<offset + n]), output: dst)
                }
            }
            XCTAssertEqual(result.consumed, n, "maxOutputCount room takes the whole block (\(from) Hz)")
            output += scratch[0..<result.produced]
            maxDelay = max(maxDelay, resampler.delay)
            offset += n
        }
        while true {
            let made = try scratch.withUnsafeMutableBufferPointer { try resampler.flush(output: $0) }
            if made == 0 { break }
            output += scratch[0..<made]
        }
        return (output, maxDelay)
    }

    func testImpulseStaysTimeAlignedAndLengthIsExact() throws {
        var input = [Float](repeating: 0, count: 48000)
        input[3000] = 1
        let (output, maxDelay) = try resample(input, from: 48000, to: 32000, block: 1536)
        XCTAssertEqual(output.count, 32000, "after flush the length is n * 2/3")
        let peak = output.indices.max { abs(output[$0]) < abs(output[$1]) }!
        XCTAssertEqual(peak, 2000, "soxr compensates its filter delay: input 3000 @48k is output 2000 @32k")
        XCTAssertGreaterThan(maxDelay, 0, "soxr holds samples back while streaming")
        XCTAssertLessThan(maxDelay, 1000, "streaming latency stays well under 1000 samples (31 ms)")
        print("soxr HQ 48k->32k, 1536-frame blocks: max streaming delay \(maxDelay) output samples (\(maxDelay / 32) ms)")
    }

    func testSineAmplitudeAndFrequencySurviveCommonRates() throws {
        for (from, block) in [(48000, 1536), (44100, 1000), (16000, 333), (8000, 4096), (22050, 700), (96000, 4096), (384000, 12000)] {
            let input = Signals.sine(frequency: 1000, amplitude: 0.5, rate: Double(from), count: from)  // 1 s
            let (output, _) = try resample(input, from: from, to: 32000, block: block)
            XCTAssertLessThanOrEqual(abs(output.count - 32000), 1, "\(from) Hz")
            let fit = Signals.fitSine(output[2000..<30000], frequency: 1000, rate: 32000)
            XCTAssertEqual(fit.amplitude, 0.5, accuracy: 0.002, "\(from) Hz")
            XCTAssertLessThan(fit.residual, 1e-3, "\(from) Hz: output is a pure 1 kHz tone")
        }
    }

    func testBlockSizeDoesNotChangeTheResult() throws {
        let input = Signals.sine(frequency: 440, amplitude: 0.7, rate: 48000, count: 20000)
        let a = try resample(input, from: 48000, to: 32000, block: 20000).output
        let b = try resample(input, from: 48000, to: 32000, block: 97).output
        XCTAssertEqual(a.count, b.count)
        let maxDiff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThan(maxDiff, 1e-5)
    }

    func testInvalidRatesThrowNamedError() {
        XCTAssertThrowsError(try Resampler(inputRate: 0, outputRate: 32000)) { error in
            XCTAssertTrue("\(error)".contains("0 Hz -> 32000 Hz"), "\(error)")
        }
    }
}
