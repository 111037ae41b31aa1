import Foundation
import TestSupport
import XCTest

/// scripts/download-model.sh, run offline against file:// URLs: idempotence, checksums, atomicity, errors.
final class DownloadScriptTests: XCTestCase {
    private var work: URL!
    private var target: URL!
    private var fakeCheckpoint: URL!
    private var labels: URL!

    private var script: URL { Fixtures.packageRoot.appendingPathComponent("scripts/download-model.sh") }
    private var ckpt: URL { target.appendingPathComponent("HTSAT_AudioSet_Saved_1.ckpt") }
    private var sidecar: URL { target.appendingPathComponent("HTSAT_AudioSet_Saved_1.ckpt.sha256") }
    private var labelsCopy: URL { target.appendingPathComponent("class_labels_indices.csv") }

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") || FileManager.default.isExecutableFile(atPath: "/bin/curl") else {
            throw XCTSkip("curl is not installed; the download script needs it")
        }
        // The official label file, whose checksum the script pins.
        labels = try Fixtures.require("audioset/class_labels_indices.csv")
        work = try Fixtures.temporaryDirectory("htsatd-dl")
        target = work.appendingPathComponent("model dir")  // a space, to catch quoting mistakes
        // A stand-in checkpoint: a ZIP signature is all the script checks before hashing.
        fakeCheckpoint = work.appendingPathComponent("source.ckpt")
        try Data([0x50, 0x4B, 0x03, 0x04] + Array("not really a checkpoint".utf8)).write(to: fakeCheckpoint)
    }

    override func tearDown() {
        if let work { try? FileManager.default.removeItem(at: work) }
    }

    private struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    private func runScript(_ arguments: [String]? = nil, ckptURL: URL? = nil, labelsURL: URL? = nil, pin: String? = nil) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script.path] + (arguments ?? [target.path])
        var environment = ProcessInfo.processInfo.environment
        environment["HTSATD_CKPT_URL"] = (ckptURL ?? fakeCheckpoint).absoluteString
        environment["HTSATD_LABELS_URL"] = (labelsURL ?? labels).absoluteString
        environment["HTSATD_CKPT_SHA256"] = pin
        process.environment = environment
        // stderr goes to a file, so neither stream can fill a pipe and stall the script.
        let errURL = work.appendingPathComponent("stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let err = try FileHandle(forWritingTo: errURL)
        defer { try? FileManager.default.removeItem(at: errURL) }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try err.close()
        let errData = try Data(contentsOf: errURL)
        return Run(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                   stderr: String(decoding: errData, as: UTF8.self))
    }

    private func sha256(_ url: URL) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", url.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return String(text.prefix(64))
    }

    private func leftovers() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: target.path).filter { $0.hasSuffix(".part") }
    }

    private func modificationDate(_ url: URL) throws -> Date {
        try XCTUnwrap(FileManager.default.attributesOfItem(atPath: url.path)[.modificationDate] as? Date)
    }

    func testFirstRunDownloadsVerifiesAndRecordsTheCheckpointChecksum() throws {
        let first = try runScript()
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(try Data(contentsOf: labelsCopy), try Data(contentsOf: labels))
        XCTAssertEqual(try Data(contentsOf: ckpt), try Data(contentsOf: fakeCheckpoint))
        let digest = try sha256(fakeCheckpoint)
        XCTAssertEqual(try String(contentsOf: sidecar, encoding: .utf8), "\(digest)  HTSAT_AudioSet_Saved_1.ckpt\n")
        XCTAssertTrue(first.stderr.contains("TRUSTED ON FIRST USE"), first.stderr)
        XCTAssertTrue(first.stderr.contains("HTSATD_CKPT_SHA256=\(digest)"), first.stderr)
        XCTAssertTrue(first.stdout.contains("htsatd --model \(ckpt.path) --events dog_bark,siren"), first.stdout)
        XCTAssertEqual(try leftovers(), [])
    }

    func testSecondRunKeepsVerifiedFilesWithoutDownloading() throws {
        XCTAssertEqual(try runScript().status, 0)
        let ckptDate = try modificationDate(ckpt), labelsDate = try modificationDate(labelsCopy)
        // URLs that cannot be fetched prove nothing is downloaded again.
        let missing = work.appendingPathComponent("gone")
        let second = try runScript(ckptURL: missing, labelsURL: missing)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("present and verified"), second.stderr)
        XCTAssertFalse(second.stderr.contains("TRUSTED ON FIRST USE"), second.stderr)
        XCTAssertEqual(try modificationDate(ckpt), ckptDate)
        XCTAssertEqual(try modificationDate(labelsCopy), labelsDate)
    }

    func testDamagedFilesAreFetchedAgain() throws {
        XCTAssertEqual(try runScript().status, 0)
        try Data("damaged".utf8).write(to: ckpt)
        try Data("index,mid,display_name\n0,/m/x,Nothing\n".utf8).write(to: labelsCopy)
        let again = try runScript()
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("downloading it again"), again.stderr)
        XCTAssertEqual(try Data(contentsOf: ckpt), try Data(contentsOf: fakeCheckpoint))
        XCTAssertEqual(try Data(contentsOf: labelsCopy), try Data(contentsOf: labels))
    }

    func testChangedUpstreamCheckpointIsRefusedAndTheGoodCopyKept() throws {
        XCTAssertEqual(try runScript().status, 0)
        try Data("damaged".utf8).write(to: ckpt)
        // Upstream now serves different bytes than the recorded checksum.
        let other = work.appendingPathComponent("other.ckpt")
        try Data([0x50, 0x4B, 0x03, 0x04] + Array("a different file".utf8)).write(to: other)
        let result = try runScript(ckptURL: other)
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("checksum mismatch"), result.stderr)
        XCTAssertTrue(result.stderr.contains(try sha256(fakeCheckpoint)), "names the expected checksum: \(result.stderr)")
        XCTAssertEqual(try Data(contentsOf: ckpt), Data("damaged".utf8), "the file in place is only replaced by a verified one")
        XCTAssertEqual(try leftovers(), [])
    }

    func testPinnedChecksum() throws {
        let digest = try sha256(fakeCheckpoint)
        let pinned = try runScript(pin: digest.uppercased())
        XCTAssertEqual(pinned.status, 0, pinned.stderr)
        XCTAssertFalse(pinned.stderr.contains("TRUSTED ON FIRST USE"), pinned.stderr)
        XCTAssertTrue(pinned.stderr.contains("verified (against HTSATD_CKPT_SHA256)"), pinned.stderr)
        XCTAssertEqual(try String(contentsOf: sidecar, encoding: .utf8), "\(digest)  HTSAT_AudioSet_Saved_1.ckpt\n")

        try FileManager.default.removeItem(at: target)
        let wrong = try runScript(pin: String(repeating: "0", count: 64))
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("checksum mismatch"), wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ckpt.path))
        XCTAssertEqual(try leftovers(), [])

        let malformed = try runScript(pin: "abc")
        XCTAssertEqual(malformed.status, 1)
        XCTAssertTrue(malformed.stderr.contains("HTSATD_CKPT_SHA256 must be 64 hex digits"), malformed.stderr)
    }

    func testCheckpointPlacedByHandIsTrustedWithoutDownloading() throws {
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fakeCheckpoint, to: ckpt)
        let result = try runScript(ckptURL: work.appendingPathComponent("gone"))
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("TRUSTED ON FIRST USE"), result.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: sidecar.path))
    }

    func testWrongLabelFileIsRejected() throws {
        let fake = work.appendingPathComponent("labels.csv")
        try Data("index,mid,display_name\n0,/m/09x0r,\"Speech\"\n".utf8).write(to: fake)
        let result = try runScript(labelsURL: fake)
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("checksum mismatch for class_labels_indices.csv"), result.stderr)
        XCTAssertTrue(result.stderr.contains("cdd1049833c4b86127c2773ac0d14a2754b6a6d0d1798002ed5c66e699708429"), result.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: labelsCopy.path))
        XCTAssertEqual(try leftovers(), [])
    }

    func testHTMLPageInsteadOfCheckpointIsExplained() throws {
        let page = work.appendingPathComponent("drive.html")
        try Data("<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>".utf8).write(to: page)
        let result = try runScript(ckptURL: page)
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("returned an HTML page"), result.stderr)
        XCTAssertTrue(result.stderr.contains("drive.google.com/drive/folders/"), "points at the official folder: \(result.stderr)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: ckpt.path))
        XCTAssertEqual(try leftovers(), [])
    }

    func testUnreachableURLAndBadArgumentsFailClearly() throws {
        let result = try runScript(ckptURL: work.appendingPathComponent("missing.ckpt"))
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("download of file://"), result.stderr)
        XCTAssertTrue(result.stderr.contains("failed (curl exit status"), result.stderr)
        XCTAssertEqual(try leftovers(), [])

        let option = try runScript(["--frobnicate"])
        XCTAssertEqual(option.status, 1)
        XCTAssertTrue(option.stderr.contains("unknown option --frobnicate"), option.stderr)
        let help = try runScript(["--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("HTSATD_CKPT_URL"), help.stdout)
    }
}
