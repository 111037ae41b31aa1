import Foundation
import XCTest

/// Runs the fuzz target `product` (built beside the tests by the normal build, where its main runs each file of
/// Fuzz/corpus/<target> once) and checks that every seed and every kept crash input passes: the fuzz regression.
public func assertFuzzCorpusPasses(_ product: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(product).path
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        throw XCTSkip("\(product) not found at \(binary): build it first (swift build --build-tests)")
    }
    let (status, output) = try runTool(binary, [])
    XCTAssertEqual(status, 0, "\(output)\n(run \(binary) -v to see which input fails)", file: file, line: line)
    XCTAssertTrue(output.contains("no crash"), output, file: file, line: line)
}
