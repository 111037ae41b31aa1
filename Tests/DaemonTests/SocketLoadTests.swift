import Foundation
import TestSupport
import XCTest

/// The short version of scripts/socket-load.py (issue 10): 30 s of a live daemon with 85 reading, 10 stalled and
/// 5 churning socket clients. The script makes the checks (no overrun, identical lines, stalled clients dropped at the
/// backlog bound, no error from the churn) and prints the figures.
final class SocketLoadTests: DaemonTestCase {
    func testHundredSocketClientsShortRun() throws {
        _ = try detectorArguments()
        _ = try Fixtures.require("detector/streams/dog_siren_32k.wav")
        let binary = DaemonProcess.binary.path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw XCTSkip("htsatd binary not found at \(binary): build it first (swift build --build-tests)")
        }
        let script = Fixtures.packageRoot.appendingPathComponent("scripts/socket-load.py").path
        // TMPDIR: the script's files (the stream, the log) go into this test's directory, removed afterwards.
        let (status, output) = try runTool("/usr/bin/python3", [script, "30"], environment: [
            "HTSATD": binary, "HTSATD_FIXTURES": Fixtures.root.path, "TMPDIR": dir.path,
        ])
        print(output)
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.hasSuffix("socket-load: ok\n"), output)
    }
}
