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

/// Element-wise equality of two arrays within `accuracy`.
public func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(a) vs \(b)", file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, "\(a) vs \(b)", file: file, line: line) }
}

/// SplitMix64: a tiny deterministic generator, so random test cases are reproducible from their seed.
public struct SplitMix {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    public mutating func range(_ a: Double, _ b: Double) -> Double { a + (b - a) * unit() }
    public mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    public mutating func chance(_ p: Double) -> Bool { unit() < p }
    public mutating func pick<T>(_ values: [T]) -> T { values[int(values.count)] }
}

/// Runs `executable` with `arguments` and `environment` additions, and returns its exit status and its stdout and
/// stderr together.
public func runTool(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws
    -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if !extra.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}
