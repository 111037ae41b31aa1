import Daemon
import Foundation
import HTSAT
import XCTest

/// `htsatd --version`: the one version constant and the kernel ISA this machine would run, as the package and
/// bug reports read it.
final class VersionTests: XCTestCase {
    private func version(environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("htsatd-version-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = try DaemonProcess(["--version"], in: dir, environment: environment)
        let status = p.wait(timeout: 30)
        return (status, p.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func testVersionNamesTheVersionAndTheKernels() throws {
        XCTAssertNotNil(HTSATDVersion.number.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+$"#, options: .regularExpression),
                        HTSATDVersion.number)
        let (status, output) = try version()
        XCTAssertEqual(status, 0)
        XCTAssertEqual(output, "htsatd \(HTSATDVersion.number) (\(HTSATModel.kernelISA) kernels)")
        XCTAssertTrue(["avx512", "avx2", "generic"].contains(HTSATModel.kernelISA), HTSATModel.kernelISA)
    }

    /// The ISA is the one the kernels would really use, so forcing one shows in --version.
    func testVersionFollowsTheForcedKernels() throws {
        let (status, output) = try version(environment: ["HTSAT_KERNELS": "generic"])
        XCTAssertEqual(status, 0)
        XCTAssertEqual(output, "htsatd \(HTSATDVersion.number) (generic kernels)")
    }
}
