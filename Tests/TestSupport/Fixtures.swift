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
    public static func require(_ relativePath: String) throws -> URL {
        let url = root.appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("reference fixture \(relativePath) not found under \(root.path): clone with ../shared beside the checkout to run this test")
        }
        return url
    }

    /// A fresh temporary directory, removed by the caller's teardown if wanted.
    public static func temporaryDirectory(_ tag: String = "htsatd") throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(tag)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
