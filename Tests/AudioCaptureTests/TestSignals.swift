import AudioCapture
import CSndfile
import Foundation
import XCTest

/// Signal generation and measurement shared by the audio tests.
enum Signals {
    /// `count` samples of `amplitude * sin(2π f t)` at `rate`.
    static func sine(frequency: Double, amplitude: Double, rate: Double, count: Int) -> [Float] {
        (0..<count).map { Float(amplitude * sin(2 * Double.pi * frequency * Double($0) / rate)) }
    }

    /// Least-squares fit of a sine at `frequency`: its amplitude and the RMS of what is left.
    /// A pure tone at that frequency leaves a residual near zero.
    static func fitSine(_ x: ArraySlice<Float>, frequency: Double, rate: Double) -> (amplitude: Double, residual: Double) {
        let w = 2 * Double.pi * frequency / rate
        var ss = 0.0, cc = 0.0, sc = 0.0, xs = 0.0, xc = 0.0
        for (i, v) in x.enumerated() {
            let s = sin(w * Double(i)), c = cos(w * Double(i)), d = Double(v)
            ss += s * s; cc += c * c; sc += s * c; xs += d * s; xc += d * c
        }
        let det = ss * cc - sc * sc
        let a = (xs * cc - xc * sc) / det
        let b = (xc * ss - xs * sc) / det
        var residual = 0.0
        for (i, v) in x.enumerated() {
            let e = Double(v) - a * sin(w * Double(i)) - b * cos(w * Double(i))
            residual += e * e
        }
        return ((a * a + b * b).squareRoot(), (residual / Double(max(1, x.count))).squareRoot())
    }

    /// Writes interleaved `samples` with libsndfile (`format` = SF_FORMAT_WAV | SF_FORMAT_PCM_16 ...).
    static func writeFile(_ url: URL, samples: [Float], rate: Int, channels: Int, format: Int32) throws {
        var info = SF_INFO()
        info.samplerate = Int32(rate)
        info.channels = Int32(channels)
        info.format = format
        guard let file = sf_open(url.path, Int32(SFM_WRITE), &info) else {
            throw NSError(domain: "test", code: 1, userInfo: [NSLocalizedDescriptionKey: "sf_open for writing \(url.path): \(String(cString: sf_strerror(nil)))"])
        }
        defer { sf_close(file) }
        let frames = samples.count / channels
        let written = samples.withUnsafeBufferPointer { sf_writef_float(file, $0.baseAddress, sf_count_t(frames)) }
        guard written == frames else {
            throw NSError(domain: "test", code: 2, userInfo: [NSLocalizedDescriptionKey: "short write to \(url.path)"])
        }
    }

    /// Interleaves channels of equal length.
    static func interleave(_ channels: [[Float]]) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(channels.count * channels[0].count)
        for i in 0..<channels[0].count {
            for channel in channels { out.append(channel[i]) }
        }
        return out
    }

    /// Raw little-endian S16 bytes.
    static func s16Bytes(_ samples: [Float]) -> Data {
        var data = Data(capacity: samples.count * 2)
        for v in samples {
            let i = Int16(max(-32768, min(32767, (Double(v) * 32768).rounded())))
            withUnsafeBytes(of: i.littleEndian) { data.append(contentsOf: $0) }
        }
        return data
    }

    /// Raw little-endian float32 bytes.
    static func float32Bytes(_ samples: [Float]) -> Data {
        var data = Data(capacity: samples.count * 4)
        for v in samples {
            withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
        }
        return data
    }
}
