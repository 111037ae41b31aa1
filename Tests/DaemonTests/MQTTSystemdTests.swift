import Foundation
import TestSupport
import XCTest

/// systemd/htsatd@.service and the MQTT drop-in systemd/htsatd-mqtt.conf against systemd-analyze.
final class MQTTSystemdTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try Fixtures.temporaryDirectory("htsatd-sd-mqtt")
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    private func text(_ name: String) throws -> String {
        try String(contentsOf: Fixtures.packageRoot.appendingPathComponent("systemd/\(name)"), encoding: .utf8)
    }

    /// The template and the drop-in installed side by side in a scratch directory, ExecStart pointed at a binary
    /// that exists (verify insists on it); returns the path of the `kitchen` instance.
    private func install() throws -> String {
        let binary = try XCTUnwrap(["/bin/true", "/usr/bin/true"].first(where: FileManager.default.isExecutableFile))
        let unit = try text("htsatd@.service").replacingOccurrences(of: "\nExecStart=/usr/local/bin/htsatd ", with: "\nExecStart=\(binary) ")
        try unit.write(to: directory.appendingPathComponent("htsatd@.service"), atomically: true, encoding: .utf8)
        let dropIns = directory.appendingPathComponent("htsatd@.service.d")
        try FileManager.default.createDirectory(at: dropIns, withIntermediateDirectories: true)
        try text("htsatd-mqtt.conf").write(to: dropIns.appendingPathComponent("mqtt.conf"), atomically: true, encoding: .utf8)
        return directory.appendingPathComponent("htsatd@kitchen.service").path
    }

    private func analyze(_ arguments: [String]) throws -> (status: Int32, output: String) {
        guard let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first(where: FileManager.default.isExecutableFile)
        else { throw XCTSkip("systemd-analyze is not installed") }
        return try runTool(analyze, arguments)
    }

    func testTemplateWithMQTTDropInPassesVerify() throws {
        let result = try analyze(["verify", "--man=no", try install()])
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertEqual(result.output.split(separator: "\n").filter { $0.contains("htsatd") }, [], result.output)
    }

    /// With the drop-in the service may reach the network, and `systemd-analyze security` stays at most 2.5.
    func testMQTTDropInKeepsExposureAtMost2_5() throws {
        let result = try analyze(["security", "--offline=yes", try install()])
        XCTAssertTrue(result.output.contains("Service has access to the host's network"), "the drop-in applies: \(result.output)")
        let overall = try XCTUnwrap(result.output.split(separator: "\n").first { $0.contains("Overall exposure level") }, result.output)
        let figure = try XCTUnwrap(overall.split(separator: " ").compactMap { Double($0) }.first, String(overall))
        XCTAssertLessThanOrEqual(figure, 2.5, String(overall))
    }

    func testTemplateAndDropInSettings() throws {
        let unit = Set(try text("htsatd@.service").split(separator: "\n").map(String.init))
        for line in [
            "ExecStart=/usr/local/bin/htsatd --config /etc/htsatd/%i.json --socket /run/htsatd/%i.sock --socket-group audio --no-stdout",
            "Environment=HTSATD_MQTT_NODE=%H-%i", "PrivateNetwork=yes", "RestrictAddressFamilies=AF_UNIX",
            "RuntimeDirectoryPreserve=yes", "DynamicUser=yes", "User=htsatd",
        ] {
            XCTAssertTrue(unit.contains(line), "systemd/htsatd@.service lacks \(line)")
        }
        let dropIn = try text("htsatd-mqtt.conf").split(separator: "\n").map(String.init)
        XCTAssertTrue(dropIn.contains("PrivateNetwork=no"))
        let families = dropIn.filter { $0.hasPrefix("RestrictAddressFamilies=") }
        XCTAssertEqual(families, ["RestrictAddressFamilies=", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"])
    }
}
