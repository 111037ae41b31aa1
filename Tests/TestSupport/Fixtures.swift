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
