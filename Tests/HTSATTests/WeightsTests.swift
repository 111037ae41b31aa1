import Foundation
import FuzzSupport
import HTSAT
import TestSupport
import XCTest

/// Checkpoint loading: the three formats, parity between them, and precise errors on bad input.
final class WeightsTests: XCTestCase {
    private var tmp: URL!

    override func setUpWithError() throws { tmp = try Fixtures.temporaryDirectory("weights") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    // MARK: - fixtures

    func testLightningCheckpointMatchesSafetensorsBitForBit() throws {
        let ckpt = try StateDict.load(contentsOf: try Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path)
        let st = try StateDict.load(contentsOf: try Fixtures.require("htsat-tiny/htsat-tiny.safetensors").path)
        XCTAssertEqual(ckpt.keys, st.keys)
        XCTAssertFalse(ckpt.keys.contains { $0.hasPrefix("sed_model.") })
        XCTAssertTrue(ckpt.keys.contains("patch_embed.proj.weight"))
        var floatCount = 0, intCount = 0
        for key in st.keys {
            XCTAssertEqual(ckpt.shape(of: key), st.shape(of: key), key)
            XCTAssertEqual(ckpt.dtype(of: key), st.dtype(of: key), key)
            if st.dtype(of: key) == "int64" {
                XCTAssertEqual(try ckpt.int64s(key), try st.int64s(key), key)
                intCount += 1
            } else {
                let a = try ckpt.floats(key, shape: st.shape(of: key)), b = try st.floats(key)
                XCTAssertEqual(a.count, b.count, key)
                XCTAssertTrue(a.elementsEqual(b) { $0.bitPattern == $1.bitPattern }, "\(key) differs")
                floatCount += 1
            }
        }
        XCTAssertGreaterThan(floatCount, 100)
        XCTAssertGreaterThan(intCount, 5)
        XCTAssertEqual(ckpt.shape(of: "logmel_extractor.melW"), [513, 64])
        XCTAssertEqual(ckpt.shape(of: "spectrogram_extractor.stft.conv_real.weight"), [513, 1, 1024])
    }

    func testIntegerBuffersRead() throws {
        let sd = try StateDict.load(contentsOf: try Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path)
        XCTAssertEqual(sd.shape(of: "bn0.num_batches_tracked"), [])
        let tracked = try sd.int64s("bn0.num_batches_tracked")
        XCTAssertEqual(tracked.count, 1)
        XCTAssertGreaterThanOrEqual(tracked[0], 0)
        let key = "layers.0.blocks.0.attn.relative_position_index"
        XCTAssertEqual(sd.shape(of: key), [64, 64])   // window 8 → 64 tokens, (2·8−1)² = 225 offsets
        let index = try sd.int64s(key)
        XCTAssertEqual(index.count, 64 * 64)
        XCTAssertEqual(index.min(), 0)
        XCTAssertEqual(index.max(), 224)
        XCTAssertThrowsError(try sd.floats(key)) { error in
            guard case WeightsError.unsupportedDType(key: key, dtype: _, file: sd.source)? = error as? WeightsError else {
                return XCTFail("\(error)")
            }
        }
    }

    func testDetectorCheckpointLoads() throws {
        let sd = try StateDict.load(contentsOf: try Fixtures.require("detector/detector.ckpt").path)
        XCTAssertEqual(sd.shape(of: "patch_embed.norm.weight"), [32])
        XCTAssertEqual(sd.shape(of: "tscam_conv.bias"), [527])
        XCTAssertEqual(try sd.floats("patch_embed.norm.weight", shape: [32]).count, 32)
        XCTAssertFalse(sd.keys.contains { $0.contains("optimizer") || $0.hasPrefix("sed_model.") })
    }

    func testWrongShapeAndMissingTensorNameTheKeyAndFile() throws {
        let path = try Fixtures.require("htsat-tiny/htsat-tiny.safetensors").path
        let sd = try StateDict.load(contentsOf: path)
        let key = "layers.0.blocks.0.attn.qkv.weight"
        XCTAssertThrowsError(try sd.floats(key, shape: [16, 48])) { error in
            XCTAssertEqual(error as? WeightsError, .shapeMismatch(key: key, expected: [16, 48], found: [48, 16], file: path))
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("[48, 16]") && "\(error)".contains(key))
        }
        XCTAssertThrowsError(try sd.floats("no.such.weight")) { error in
            XCTAssertEqual(error as? WeightsError, .missingTensor(key: "no.such.weight", file: path))
        }
        XCTAssertNil(sd.shape(of: "no.such.weight"))
    }

    func testLoadTimes() throws {
        let ckpt = try Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path
        let st = try Fixtures.require("htsat-tiny/htsat-tiny.safetensors").path
        let detector = try Fixtures.require("detector/detector.ckpt").path
        for (path, limit) in [(st, 0.5), (ckpt, 3.0), (detector, 3.0)] {
            _ = try StateDict.load(contentsOf: path)   // warm the page cache
            let t0 = Date()
            let sd = try StateDict.load(contentsOf: path)
            let dt = Date().timeIntervalSince(t0)
            print("load \(URL(fileURLWithPath: path).lastPathComponent): \(String(format: "%.1f", dt * 1000)) ms, \(sd.keys.count) tensors")
            XCTAssertLessThan(dt, limit, path)
        }
    }

    func testInMemoryStateDict() throws {
        let sd = StateDict(tensors: ["a": (shape: [2, 2], values: [1, 2, 3, 4]), "bad": (shape: [3], values: [1])])
        XCTAssertEqual(sd.keys, ["a", "bad"])
        XCTAssertEqual(Array(try sd.floats("a", shape: [2, 2])), [1, 2, 3, 4])
        XCTAssertThrowsError(try sd.floats("bad")) { XCTAssertTrue("\($0)".contains("<memory>")) }
    }

    // MARK: - plain torch.save ZIPs (hand-built)

    func testPlainTorchSaveStateDict() throws {
        // w: float32 2×3; t: float64 3×2 transposed view at storage offset 1; h: float16 parameter; b: bfloat16;
        // n: 0-dim int64; i: int32.
        var p = PickleWriter()
        p.op(0x80, 2); p.op(0x7d)   // PROTO 2, EMPTY_DICT (torch.save of an OrderedDict-less dict)
        p.op(0x28)
        p.str("w"); p.tensor(storage: "0", type: "FloatStorage", numel: 6, offset: 0, size: [2, 3], stride: [3, 1])
        p.str("t"); p.tensor(storage: "1", type: "DoubleStorage", numel: 7, offset: 1, size: [3, 2], stride: [1, 3])
        p.str("h"); p.parameter { $0.tensor(storage: "2", type: "HalfStorage", numel: 5, offset: 0, size: [5], stride: [1]) }
        p.str("b"); p.tensor(storage: "5", type: "BFloat16Storage", numel: 2, offset: 0, size: [2], stride: [1])
        p.str("n"); p.tensor(storage: "3", type: "LongStorage", numel: 1, offset: 0, size: [], stride: [])
        p.str("i"); p.tensor(storage: "4", type: "IntStorage", numel: 2, offset: 0, size: [2], stride: [1])
        p.op(0x75); p.op(0x2e)   // SETITEMS, STOP
        let half: [UInt16] = [0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00]   // 1, -2, 0.33325195, 2^-24 (subnormal), +inf
        let file = try writeZip("plain.pt", [
            ("archive/data.pkl", p.bytes), ("archive/byteorder", Array("little".utf8)),
            ("archive/data/0", le([Float](arrayLiteral: 1, 2, 3, 4, 5, 6).map(\.bitPattern))),
            ("archive/data/1", le([Double](arrayLiteral: 99, 0, 1, 2, 3, 4, 5).map(\.bitPattern))),
            ("archive/data/2", le(half)), ("archive/data/3", le([UInt64(41)])),
            ("archive/data/4", le([UInt32(7), UInt32(bitPattern: -3)])), ("archive/data/5", le([UInt16(0x3f80), UInt16(0xc040)])),
        ])
        let sd = try StateDict.load(contentsOf: file)
        XCTAssertEqual(sd.keys, ["b", "h", "i", "n", "t", "w"])
        XCTAssertEqual(Array(try sd.floats("w", shape: [2, 3])), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(Array(try sd.floats("t", shape: [3, 2])), [0, 3, 1, 4, 2, 5])   // materialised row-major
        XCTAssertEqual(Array(try sd.floats("h")), [1, -2, 0.33325195, 0x1p-24, .infinity])
        XCTAssertEqual(Array(try sd.floats("b")), [1, -3])
        XCTAssertEqual(try sd.int64s("n"), [41])
        XCTAssertEqual(sd.shape(of: "n"), [])
        XCTAssertEqual(try sd.int64s("i"), [7, -3])
    }

    func testModelPrefixStrippedWhenEveryKeyHasIt() throws {
        var p = PickleWriter()
        p.op(0x80, 2); p.orderedDict()
        p.op(0x28)
        p.str("model.a"); p.tensor(storage: "0", type: "FloatStorage", numel: 1, offset: 0, size: [1], stride: [1])
        p.str("model.b"); p.tensor(storage: "0", type: "FloatStorage", numel: 1, offset: 0, size: [], stride: [])
        p.op(0x75); p.op(0x2e)
        let file = try writeZip("prefixed.pt", [("x/data.pkl", p.bytes), ("x/data/0", le([Float(2.5).bitPattern]))], zip64: true)
        let sd = try StateDict.load(contentsOf: file)
        XCTAssertEqual(sd.keys, ["a", "b"])
        XCTAssertEqual(Array(try sd.floats("b", shape: [])), [2.5])
    }

    func testConcurrentReads() throws {
        let sd = try StateDict.load(contentsOf: try Fixtures.require("htsat-tiny/htsat-tiny.ckpt").path)
        let keys = sd.keys.filter { sd.dtype(of: $0) == "float32" }
        var results = [[Float]](repeating: [], count: 4)
        let lock = NSLock()
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            var local = [Float](repeating: 0, count: keys.count)
            for (i, k) in keys.enumerated() { local[i] = (try? sd.floats(k))?.reduce(0, +) ?? .nan }
            lock.lock(); results[worker] = local; lock.unlock()
        }
        for r in results.dropFirst() { XCTAssertTrue(r.elementsEqual(results[0]) { $0.bitPattern == $1.bitPattern }) }
        XCTAssertFalse(results[0].contains { $0.isNaN })
    }

    // MARK: - corrupt inputs

    func testViewBeyondItsStorage() throws {
        var p = PickleWriter()
        p.op(0x80, 2); p.orderedDict(); p.op(0x28)
        p.str("w"); p.tensor(storage: "0", type: "FloatStorage", numel: 4, offset: 2, size: [2, 2], stride: [2, 1])
        p.op(0x75); p.op(0x2e)
        let path = try writeZip("oob.pt", [("a/data.pkl", p.bytes), ("a/data/0", le([Float](repeating: 1, count: 4).map(\.bitPattern)))])
        expectCase(try StateDict.load(contentsOf: path), file: path) {
            if case .corrupt(_, let d) = $0 { return d.contains("'w'") }; return false
        }
    }

    func testBroadcastViewIsRefusedBeforeConverting() throws {
        // Stride 0 over 4 floats, claiming 2^60 elements: converting it allocated them all (a fuzz find).
        var p = PickleWriter()
        p.op(0x80, 2); p.orderedDict(); p.op(0x28)
        p.str("w"); p.tensor(storage: "0", type: "FloatStorage", numel: 4, offset: 0, size: [1 << 30, 1 << 30], stride: [0, 0])
        p.op(0x75); p.op(0x2e)
        let path = try writeZip("broadcast.pt", [("a/data.pkl", p.bytes), ("a/data/0", le([Float](repeating: 1, count: 4).map(\.bitPattern)))])
        expectCase(try StateDict.load(contentsOf: path), file: path) {
            if case .corrupt(_, let d) = $0 { return d.contains("'w' has 1152921504606846976 elements but its storage holds 4") }; return false
        }
    }

    func testMutatedInputsNeverCrash() throws {
        // Random byte flips and cuts of a valid archive: every outcome is a load or a WeightsError.
        var p = PickleWriter()
        p.op(0x80, 2); p.op(0x7d); p.op(0x28)
        p.str("callbacks"); p.op(0x5d); p.global("numpy", "dtype"); p.str("f8"); p.op(0x85); p.op(0x52); p.op(0x71, 1); p.op(0x61)
        p.op(0x68, 1); p.op(0x4e); p.op(0x62); p.op(0x30)
        p.str("state_dict"); p.orderedDict(); p.op(0x28)
        p.str("sed_model.w"); p.tensor(storage: "0", type: "FloatStorage", numel: 6, offset: 0, size: [3, 2], stride: [1, 3])
        p.str("sed_model.n"); p.tensor(storage: "1", type: "LongStorage", numel: 1, offset: 0, size: [], stride: [])
        p.op(0x75); p.op(0x75); p.op(0x2e)
        let good = try writeZip("fuzz.pt", [("a/data.pkl", p.bytes), ("a/data/0", le([Float](repeating: 1, count: 6).map(\.bitPattern))),
                                            ("a/data/1", le([UInt64(5)]))])
        let original = try Data(contentsOf: URL(fileURLWithPath: good))
        XCTAssertEqual(try StateDict.load(contentsOf: good).keys, ["n", "w"])
        var rng = SplitMix(seed: 0x5eed)
        let path = tmp.appendingPathComponent("mutant.pt")
        var loaded = 0
        for round in 0..<400 {
            var bytes = original
            if round % 4 == 3 {
                bytes = bytes.prefix(Int(rng.next() % UInt64(bytes.count)))
            } else {
                for _ in 0...(rng.next() % 4) { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            }
            try bytes.write(to: path)
            do { _ = try StateDict.load(contentsOf: path.path); loaded += 1 } catch is WeightsError {} catch { XCTFail("round \(round): \(error)") }
        }
        XCTAssertLessThan(loaded, 400)
    }


    func testEmptyFile() throws {
        let path = tmp.appendingPathComponent("empty.ckpt").path
        try Data().write(to: URL(fileURLWithPath: path))
        expect(.empty(file: path), try StateDict.load(contentsOf: path))
        let missing = tmp.appendingPathComponent("absent.ckpt").path
        XCTAssertThrowsError(try StateDict.load(contentsOf: missing)) { error in
            guard case WeightsError.cannotOpen(file: missing, reason: _)? = error as? WeightsError else { return XCTFail("\(error)") }
        }
    }

    func testTruncatedFixtureCheckpoint() throws {
        let data = try Data(contentsOf: try Fixtures.require("htsat-tiny/htsat-tiny.ckpt"), options: .alwaysMapped)
        // Inside the first local header, inside data.pkl, mid-storage, inside the central directory, inside the end record.
        for cut in [20, 30_000, data.count / 2, data.count - 30_000, data.count - 10] {
            let path = tmp.appendingPathComponent("cut-\(cut).ckpt").path
            try data.prefix(cut).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try StateDict.load(contentsOf: path), "cut at \(cut)") { error in
                guard case WeightsError.truncated(file: path, detail: _)? = error as? WeightsError else { return XCTFail("cut \(cut): \(error)") }
                XCTAssertTrue("\(error)".contains(path))
            }
            try FileManager.default.removeItem(atPath: path)
        }
    }

    func testTruncatedEntriesInsideIntactZip() throws {
        // A pickle without STOP: the archive is intact but data.pkl was cut.
        var p = PickleWriter()
        p.op(0x80, 2); p.orderedDict(); p.op(0x28); p.str("w")
        let cutPickle = try writeZip("cutpkl.pt", [("a/data.pkl", p.bytes)])
        expectCase(try StateDict.load(contentsOf: cutPickle), file: cutPickle) { if case .truncated = $0 { return true }; return false }

        // The central directory claims more bytes than the file holds.
        let good = try writeZip("lying.pt", [("a/data.pkl", simpleStateDict()), ("a/data/0", le([Float(1).bitPattern]))])
        var bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        let cd = bytes.count - 22 - 2 * 46 - "a/data.pkl".utf8.count - "a/data/0".utf8.count
        let second = cd + 46 + "a/data.pkl".utf8.count
        XCTAssertEqual(Array(bytes[second..<(second + 4)]), [0x50, 0x4b, 0x01, 0x02])
        for o in [20, 24] { bytes.replaceSubrange((second + o)..<(second + o + 4), with: [0x00, 0x00, 0x10, 0x00]) }  // 1 MiB
        try bytes.write(to: URL(fileURLWithPath: good))
        expectCase(try StateDict.load(contentsOf: good), file: good) { if case .truncated = $0 { return true }; return false }
    }

    func testMissingStorageEntry() throws {
        let path = try writeZip("nostorage.pt", [("a/data.pkl", simpleStateDict())])
        expectCase(try StateDict.load(contentsOf: path), file: path) {
            if case .corrupt(_, let d) = $0 { return d.contains("a/data/0") && d.contains("'w'") }; return false
        }
    }

    func testStorageSmallerThanDeclared() throws {
        let path = try writeZip("short.pt", [("a/data.pkl", simpleStateDict(numel: 4)), ("a/data/0", le([Float(1).bitPattern]))])
        expectCase(try StateDict.load(contentsOf: path), file: path) { if case .corrupt = $0 { return true }; return false }
    }

    func testCompressedEntryRejected() throws {
        let path = try writeZip("deflated.pt", [("a/data.pkl", simpleStateDict()), ("a/data/0", le([Float(1).bitPattern]))], method: 8)
        expectCase(try StateDict.load(contentsOf: path), file: path) {
            if case .unsupportedFormat(_, let d) = $0 { return d.contains("compressed") }; return false
        }
    }

    func testUnexpectedGlobalIsNeverExecuted() throws {
        let marker = tmp.appendingPathComponent("pwned").path
        var p = PickleWriter()
        p.op(0x80, 2); p.orderedDict(); p.op(0x28)
        p.str("w")
        p.global("posix", "system"); p.op(0x28); p.str("touch \(marker)"); p.op(0x74); p.op(0x52)   // posix.system(("touch ...",))
        p.op(0x75); p.op(0x2e)
        let path = try writeZip("evil.pt", [("a/data.pkl", p.bytes)])
        expectCase(try StateDict.load(contentsOf: path), file: path) {
            if case .unsupportedPickle(_, let d) = $0 { return d.contains("not a tensor") && d.contains("posix.system") && d.contains("'w'") }
            return false
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }

    func testLightningLikeExtrasAreSkipped() throws {
        // callbacks keyed by a class, a numpy float64 scalar, an optimizer tensor whose storage is absent.
        var p = PickleWriter()
        p.op(0x80, 2); p.op(0x7d); p.op(0x28)
        p.str("callbacks"); p.op(0x7d)
        p.global("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
        p.op(0x7d); p.str("best_model_score")
        p.global("numpy.core.multiarray", "scalar")
        p.global("numpy", "dtype"); p.str("f8"); p.op(0x89); p.op(0x88); p.op(0x87); p.op(0x52)   // dtype('f8', False, True)
        p.op(0x28); p.op(0x4b, 3); p.str("<"); p.op(0x4e); p.op(0x4e); p.op(0x4e); p.op(0x4a, 0xff, 0xff, 0xff, 0xff); p.op(0x4a, 0xff, 0xff, 0xff, 0xff); p.op(0x4b, 0); p.op(0x74); p.op(0x62)  // BUILD
        p.shortBytes([0, 0, 0, 0, 0, 0, 0xf0, 0x3f]); p.op(0x86); p.op(0x52)   // scalar(dtype, b'...')
        p.op(0x73); p.op(0x73)   // SETITEM into inner dict, then callbacks[cls] = inner
        p.str("optimizer_states"); p.op(0x5d); p.tensor(storage: "99", type: "FloatStorage", numel: 1 << 40, offset: 0, size: [4], stride: [1]); p.op(0x61)
        p.str("state_dict"); p.orderedDict(); p.op(0x28)
        p.str("sed_model.w"); p.tensor(storage: "0", type: "FloatStorage", numel: 1, offset: 0, size: [1], stride: [1])
        p.op(0x75)
        p.op(0x75); p.op(0x2e)
        let path = try writeZip("lightning.ckpt", [("a/data.pkl", p.bytes), ("a/data/0", le([Float(3).bitPattern]))])
        let sd = try StateDict.load(contentsOf: path)
        XCTAssertEqual(sd.keys, ["w"])
        XCTAssertEqual(Array(try sd.floats("w")), [3])
    }

    func testUnknownOpcode() throws {
        var p = PickleWriter()
        p.op(0x80, 2); p.op(0x7d); p.op(0xff); p.op(0x2e)
        let path = try writeZip("opcode.pt", [("a/data.pkl", p.bytes)])
        expectCase(try StateDict.load(contentsOf: path), file: path) {
            if case .unsupportedPickle(_, let d) = $0 { return d.contains("0xff") && d.contains("byte 3") }; return false
        }
    }

    func testHugeDeclaredLengths() throws {
        let cases: [[UInt8]] = [
            [0x80, 2, 0x58, 0xf0, 0xff, 0xff, 0xff, 0x61],                  // BINUNICODE of ~4 GiB
            [0x80, 4, 0x8e] + [UInt8](repeating: 0xff, count: 7) + [0x3f],  // BINBYTES8 of 2^62
            [0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f],                        // LONG4 of 2 GiB
        ]
        for (i, pkl) in cases.enumerated() {
            let path = try writeZip("huge\(i).pt", [("a/data.pkl", pkl)])
            expectCase(try StateDict.load(contentsOf: path), file: path) { if case .truncated = $0 { return true }; return false }
        }
    }

    func testNestingDepthIsCapped() throws {
        let pkl: [UInt8] = [0x80, 2] + [UInt8](repeating: 0x28, count: 5_000) + [0x2e]
        let path = try writeZip("deep.pt", [("a/data.pkl", pkl)])
        expectCase(try StateDict.load(contentsOf: path), file: path) {
            if case .unsupportedPickle(_, let d) = $0 { return d.contains("nesting") }; return false
        }
    }

    func testGarbageAndLegacyFormatsRejected() throws {
        var rng = SystemRandomNumberGenerator()
        let garbage = tmp.appendingPathComponent("garbage.bin").path
        try Data([0x13, 0x37] + (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(to: URL(fileURLWithPath: garbage))
        expectCase(try StateDict.load(contentsOf: garbage), file: garbage) { if case .unsupportedFormat = $0 { return true }; return false }

        let legacy = tmp.appendingPathComponent("legacy.pth").path   // pre-1.6 torch: a bare pickle of the magic number
        try Data([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]).write(to: URL(fileURLWithPath: legacy))
        expectCase(try StateDict.load(contentsOf: legacy), file: legacy) {
            if case .unsupportedFormat(_, let d) = $0 { return d.contains("1.6") }; return false
        }
        let noPickle = try writeZip("other.zip", [("readme.txt", Array("hi".utf8))])
        expectCase(try StateDict.load(contentsOf: noPickle), file: noPickle) { if case .unsupportedFormat = $0 { return true }; return false }
    }

    func testSafetensorsWithLyingHeaders() throws {
        let payload = le([Float](arrayLiteral: 1, 2, 3, 4).map(\.bitPattern))
        func file(_ name: String, _ header: String, declared: UInt64? = nil) throws -> String {
            let h = Array(header.utf8)
            let path = tmp.appendingPathComponent(name).path
            try Data(le([declared ?? UInt64(h.count)]) + h + payload).write(to: URL(fileURLWithPath: path))
            return path
        }
        let ok = try file("ok.safetensors", #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"c":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#)
        let sd = try StateDict.load(contentsOf: ok)
        XCTAssertEqual(Array(try sd.floats("a", shape: [2, 2])), [1, 2, 3, 4])
        XCTAssertThrowsError(try sd.floats("c")) { XCTAssertEqual($0 as? WeightsError, .unsupportedDType(key: "c", dtype: "C64", file: ok)) }

        let past = try file("past.safetensors", #"{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#)
        expectCase(try StateDict.load(contentsOf: past), file: past) { if case .truncated = $0 { return true }; return false }
        let badJSON = try file("bad.safetensors", #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]"#)
        expectCase(try StateDict.load(contentsOf: badJSON), file: badJSON) { if case .corrupt = $0 { return true }; return false }
        let sizeLie = try file("size.safetensors", #"{"a":{"dtype":"F32","shape":[3,2],"data_offsets":[0,16]}}"#)
        expectCase(try StateDict.load(contentsOf: sizeLie), file: sizeLie) { if case .corrupt = $0 { return true }; return false }
        let negative = try file("neg.safetensors", #"{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}"#)
        expectCase(try StateDict.load(contentsOf: negative), file: negative) { if case .corrupt = $0 { return true }; return false }
        let longHeader = try file("long.safetensors", #"{"a":1}"#, declared: 1 << 40)
        expectCase(try StateDict.load(contentsOf: longHeader), file: longHeader) { if case .truncated = $0 { return true }; return false }
    }

    /// The fuzz corpora (Fuzz/corpus/checkpoint and pickle: seeds and past finds) run through the fuzz targets,
    /// model build and one inference included, without a crash.
    func testFuzzCorpus() throws {
        try assertFuzzCorpusPasses("FuzzCheckpoint")
        try assertFuzzCorpusPasses("FuzzPickle")
    }

    // MARK: - helpers

    private func expect(_ expected: WeightsError, _ body: @autoclosure () throws -> StateDict, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { XCTAssertEqual($0 as? WeightsError, expected, line: line) }
    }

    private func expectCase(_ body: @autoclosure () throws -> StateDict, file path: String, line: UInt = #line,
                            _ matches: (WeightsError) -> Bool) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard let w = error as? WeightsError else { return XCTFail("not a WeightsError: \(error)", line: line) }
            XCTAssertTrue(matches(w), "unexpected error: \(w)", line: line)
            XCTAssertEqual(w.file, path, line: line)
            XCTAssertTrue(w.description.hasPrefix(path + ":"), w.description, line: line)
        }
    }

    /// `{'w': float32 tensor [numel] on storage '0'}` as an OrderedDict.
    private func simpleStateDict(numel: Int = 1) -> [UInt8] {
        var p = PickleWriter()
        p.op(0x80, 2); p.orderedDict(); p.op(0x28)
        p.str("w"); p.tensor(storage: "0", type: "FloatStorage", numel: numel, offset: 0, size: [numel], stride: [1])
        p.op(0x75); p.op(0x2e)
        return p.bytes
    }

    private func le<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] { TorchZip.le(values) }

    /// Writes a ZIP like torch does (TorchZip) into the temporary directory.
    private func writeZip(_ name: String, _ entries: [(String, [UInt8])], method: UInt16 = 0, zip64: Bool = false) throws -> String {
        let path = tmp.appendingPathComponent(name).path
        try Data(TorchZip.archive(entries, method: method, zip64: zip64)).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// Writes pickle opcodes by hand, the way torch.save (protocol 2) lays out a state_dict.
struct PickleWriter {
    var bytes: [UInt8] = []

    mutating func op(_ code: UInt8, _ args: UInt8...) { bytes.append(code); bytes += args }

    mutating func str(_ s: String) {
        let u = Array(s.utf8)
        op(0x58); bytes += (0..<4).map { UInt8(truncatingIfNeeded: u.count >> (8 * $0)) }; bytes += u
    }

    mutating func shortBytes(_ b: [UInt8]) { op(0x43, UInt8(b.count)); bytes += b }

    mutating func int(_ v: Int) {
        op(0x4a); bytes += (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    }

    mutating func long(_ v: Int) {   // LONG1 with 8 bytes, for numels beyond 32 bits
        op(0x8a, 8); bytes += (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
    }

    mutating func global(_ module: String, _ name: String) { op(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }

    mutating func orderedDict() { global("collections", "OrderedDict"); op(0x29); op(0x52) }

    mutating func tuple(_ values: [Int]) { op(0x28); values.forEach { int($0) }; op(0x74) }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    mutating func tensor(storage key: String, type: String, numel: Int, offset: Int, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        op(0x28)
        op(0x28); str("storage"); global("torch", type); str(key); str("cpu")
        if numel > Int(Int32.max) { long(numel) } else { int(numel) }
        op(0x74); op(0x51)   // TUPLE, BINPERSID
        int(offset); tuple(size); tuple(stride); op(0x89); orderedDict()
        op(0x74); op(0x52)
    }

    /// `_rebuild_parameter(<tensor>, True, OrderedDict())`.
    mutating func parameter(_ body: (inout PickleWriter) -> Void) {
        global("torch._utils", "_rebuild_parameter")
        op(0x28); body(&self); op(0x88); orderedDict(); op(0x74); op(0x52)
    }
}

