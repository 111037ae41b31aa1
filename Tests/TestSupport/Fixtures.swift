import Foundation
import XCTest

/// Locates the shared reference fixtures (`../shared/fixtures` beside the checkout).
public enum Fixtures {
    /// The package root, found from this file's path.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `../shared/fixtures`, or `HTSATD_FIXTURES` if set.
    public static var root: URL {
        if let env = ProcessInfo.processInfo.environment["HTSATD_FIXTURES"] { return URL(fileURLWithPath: env) }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
    }

    /// Returns the fixture at `relativePath`, or skips the calling test with a clear message when absent.
    /// With `HTSATD_REQUIRE_FIXTURES=1` (CI) a missing fixture fails instead, so CI cannot pass by skipping.
    public static func require(_ relativePath: String) throws -> URL {
        let url = root.appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: url.path) else {
            let message = "reference fixture \(relativePath) not found under \(root.path): clone with ../shared beside the checkout to run this test"
            if ProcessInfo.processInfo.environment["HTSATD_REQUIRE_FIXTURES"] == "1" { throw MissingFixture(message: message) }
            throw XCTSkip(message)
        }
        return url
    }

    /// A required fixture that is absent (HTSATD_REQUIRE_FIXTURES=1).
    public struct MissingFixture: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// A fresh temporary directory, removed by the caller's teardown if wanted.
    public static func temporaryDirectory(_ tag: String = "htsatd") throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

extension Fixtures {
    /// Reads a mono float32 WAV (format 3, or extensible with 32-bit floats), as the preset fixtures are stored;
    /// the HTSAT tests have no audio decoder of their own.
    public static func floatWAV(_ url: URL) throws -> (sampleRate: Int, samples: [Float]) {
        let data = try Data(contentsOf: url)
        func u32(_ at: Int) -> Int { Int(data[at]) | Int(data[at + 1]) << 8 | Int(data[at + 2]) << 16 | Int(data[at + 3]) << 24 }
        func u16(_ at: Int) -> Int { Int(data[at]) | Int(data[at + 1]) << 8 }
        struct Bad: Error, CustomStringConvertible { let description: String }
        guard data.count >= 12, data.prefix(4) == Data("RIFF".utf8), data[8..<12] == Data("WAVE".utf8) else {
            throw Bad(description: "\(url.path): not a RIFF/WAVE file")
        }
        var at = 12, rate = 0, format = 0, channels = 0, bits = 0
        while at + 8 <= data.count {
            let id = String(decoding: data[at..<at + 4], as: UTF8.self), size = u32(at + 4), body = at + 8
            if id == "fmt " {
                format = u16(body); channels = u16(body + 2); rate = u32(body + 4); bits = u16(body + 14)
                if format == 0xFFFE { format = u16(body + 24) }
            } else if id == "data" {
                guard format == 3, channels == 1, bits == 32, body + size <= data.count else {
                    throw Bad(description: "\(url.path): format \(format), \(channels) channels, \(bits) bits; expected mono float32")
                }
                let samples = data[body..<body + size].withUnsafeBytes { raw in
                    (0..<size / 4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) }
                }
                return (rate, samples)
            }
            at = body + size + (size & 1)
        }
        throw Bad(description: "\(url.path): no data chunk")
    }
}
