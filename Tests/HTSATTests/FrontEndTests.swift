import Foundation
import FrontEnd
import XCTest

/// The STFT and log-mel stages against direct, independent reference computations.
final class FrontEndTests: XCTestCase {
    /// A deterministic test signal: two tones plus LCG noise.
    private func signal(_ n: Int) -> [Float] {
        var state: UInt32 = 12345
        return (0..<n).map { i in
            state = state &* 1_664_525 &+ 1_013_904_223
            let noise = Double(state >> 8) / Double(1 << 24) - 0.5
            return Float(0.5 * sin(0.05 * Double(i)) + 0.2 * cos(0.31 * Double(i)) + 0.1 * noise)
        }
    }

    /// Power spectrum by a direct double-precision DFT of the explicitly reflect-padded signal.
    private func referencePower(_ x: [Float], nFFT: Int, hop: Int) -> [[Double]] {
        let half = nFFT / 2
        // torch.nn.functional.pad(mode="reflect"): the edge sample is not repeated.
        let padded = (0..<half).map { Double(x[half - $0]) } + x.map(Double.init)
            + (0..<half).map { Double(x[x.count - 2 - $0]) }
        let frames = x.count / hop + 1
        return (0..<frames).map { f in
            (0...half).map { k in
                var re = 0.0, im = 0.0
                for n in 0..<nFFT {
                    let w = 0.5 - 0.5 * cos(2 * Double.pi * Double(n) / Double(nFFT))
                    let v = padded[f * hop + n] * w
                    let phase = -2 * Double.pi * Double(k * n % nFFT) / Double(nFFT)
                    re += v * cos(phase); im += v * sin(phase)
                }
                return re * re + im * im
            }
        }
    }

    func testSTFTMatchesDirectDFT() throws {
        let nFFT = 256, hop = 80
        let x = signal(1000)
        let stft = try STFT(nFFT: nFFT, hopLength: hop)
        let frames = stft.frameCount(sampleCount: x.count)
        XCTAssertEqual(frames, 13)
        var out = [Float](repeating: .nan, count: frames * stft.bins)
        x.withUnsafeBufferPointer { stft.power($0, into: &out) }
        let ref = referencePower(x, nFFT: nFFT, hop: hop)
        var peak = 0.0, maxErr = 0.0
        for f in 0..<frames { for k in 0..<stft.bins {
            peak = max(peak, ref[f][k])
            maxErr = max(maxErr, abs(Double(out[f * stft.bins + k]) - ref[f][k]))
        } }
        // float32 FFT: errors are relative to the frame energy, not to each bin.
        XCTAssertLessThan(maxErr / peak, 1e-5, "max abs error \(maxErr), peak power \(peak)")
        XCTAssertGreaterThan(peak, 100)
    }

    func testReflectIndexing() {
        XCTAssertEqual((-3...6).map { STFT.reflect($0, count: 4) }, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
        XCTAssertEqual(STFT.reflect(-5, count: 1), 0)
        XCTAssertEqual(STFT.reflect(2, count: 0), -1)
    }

    func testVeryShortInputsGiveFiniteFrames() throws {
        let stft = try STFT(nFFT: 64, hopLength: 16)
        for n in [0, 1, 5, 40] {
            let x = signal(n)
            let frames = stft.frameCount(sampleCount: n)
            var out = [Float](repeating: .nan, count: frames * stft.bins)
            x.withUnsafeBufferPointer { stft.power($0, into: &out) }
            XCTAssertTrue(out.allSatisfy { $0.isFinite && $0 >= 0 }, "n = \(n)")
        }
    }

    func testInvalidParametersAreRejected() {
        XCTAssertThrowsError(try STFT(nFFT: 255, hopLength: 80)) { error in
            XCTAssertEqual(error as? FrontEndError, .invalidParameter(name: "nFFT", value: 255, requirement: "even and at least 2"))
        }
        XCTAssertThrowsError(try STFT(nFFT: 256, hopLength: 0))
        XCTAssertThrowsError(try [Float](repeating: 0, count: 10).withUnsafeBufferPointer {
            try LogMel(melW: $0, bins: 3, mels: 4)
        })
    }

    func testLogMelMatchesDirectFormulaAndClamps() throws {
        let bins = 5, mels = 3
        // bins x mels, row-major, with zeros like a real mel filterbank.
        let melW: [Float] = [0.5, 0, 0,
                             1, 0.2, 0,
                             0.5, 0.8, 0,
                             0, 1, 0,
                             0, 0.3, 0]
        let mel = try melW.withUnsafeBufferPointer { try LogMel(melW: $0, bins: bins, mels: mels) }
        let power: [Float] = [1, 2, 3, 4, 5,
                              0, 0, 0, 0, 0]
        var out = [Float](repeating: .nan, count: 2 * mels)
        mel.apply(power: power, frames: 2, into: &out)
        for m in 0..<mels {
            let sum = (0..<bins).reduce(0.0) { $0 + Double(power[$1]) * Double(melW[$1 * mels + m]) }
            let expected = 10 * log10(max(sum, 1e-10))
            XCTAssertEqual(Double(out[m]), expected, accuracy: 1e-5, "mel \(m)")
            XCTAssertEqual(out[mels + m], -100, accuracy: 1e-5, "silent frame, mel \(m)")
        }
        XCTAssertEqual(out[2], -100, accuracy: 1e-5, "all-zero filter clamps to amin")
    }
}
