import Foundation
import HTSAT
import Daemon
import XCTest

/// The benchmark API on a small architecture: the random-weights builder, the safetensors writer, the counts
/// and statistics `htsatd bench` prints, and per-part timing. Nothing here is timed against a threshold.
final class BenchmarkTests: XCTestCase {
    /// Two stages of two blocks (stage 0's second block shifted), a 64 x 64 image, 3 classes.
    static let small = BenchmarkArchitecture(embed: 8, depths: [2, 2], heads: [1, 2], classes: 3, specSize: 64)
    /// 63 hops: the 64 frames the small image takes.
    static let signal = SignalConfig(sampleRate: 32000, hopSize: 320, clipSamples: 20_160, fmin: 50, fmax: 14000)

    func testRandomWeightsHaveTheOfficialLayoutAndCount() throws {
        let sd = Benchmark.randomStateDict(BenchmarkTests.small, seed: 3)
        let model = try HTSATModel(stateDict: sd, signal: BenchmarkTests.signal)
        XCTAssertEqual(model.config, HTSATConfig(embedDim: 8, depths: [2, 2], numHeads: [1, 2], windowSize: 8, windowSizes: [8, 8],
                                                 patchSize: 4, specSize: 64, melBins: 64, nFFT: 1024, classes: 3,
                                                 signal: BenchmarkTests.signal))
        // Only the shifted block with a window smaller than its grid has a mask buffer.
        XCTAssertEqual(sd.shape(of: "layers.0.blocks.1.attn_mask"), [4, 64, 64])
        XCTAssertNil(sd.shape(of: "layers.0.blocks.0.attn_mask"))
        XCTAssertNil(sd.shape(of: "layers.1.blocks.1.attn_mask"))
        // STFT kernels 2 x 513 x 1024, melW 513 x 64, bn0 128, patch embed 152, stage 0 2 x 1097 + merging 576,
        // stage 1 2 x 3730, final norm 32, tscam_conv 1155, head 12; masks and running statistics excluded.
        XCTAssertEqual(Benchmark.parameterCount(sd), 1_095_165)
        // Seeded: the same seed gives the same weights, another seed others.
        let again = Benchmark.randomTensors(BenchmarkTests.small, seed: 3), other = Benchmark.randomTensors(BenchmarkTests.small, seed: 4)
        let key = "layers.1.blocks.0.attn.qkv.weight"
        XCTAssertEqual(Array(try sd.floats(key)), again[key]?.values)
        XCTAssertNotEqual(again[key]?.values, other[key]?.values)
    }

    func testWrittenSafetensorsLoadBackToTheSameModel() throws {
        let tensors = Benchmark.randomTensors(BenchmarkTests.small, seed: 5)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Benchmark.writeSafetensors(tensors, to: path)

        let loaded = try StateDict.load(contentsOf: path)
        XCTAssertEqual(Set(loaded.keys), Set(tensors.keys))
        XCTAssertEqual(loaded.shape(of: "tscam_conv.weight"), [3, 16, 8, 3])
        XCTAssertEqual(Array(try loaded.floats("norm.weight")), tensors["norm.weight"]?.values)

        let clip = Benchmark.testSignal(count: BenchmarkTests.signal.clipSamples)
        let fromFile = try HTSATModel(stateDict: loaded, signal: BenchmarkTests.signal).infer(clip)
        let inMemory = try HTSATModel(stateDict: StateDict(tensors: tensors), signal: BenchmarkTests.signal).infer(clip)
        XCTAssertEqual(fromFile.clipwise, inMemory.clipwise)
        XCTAssertEqual(fromFile.framewise, inMemory.framewise)
        XCTAssertThrowsError(try Benchmark.writeSafetensors(tensors, to: "/nonexistent-dir/x.safetensors"))
    }

    func testRunReportsEveryRunAndPart() throws {
        let model = try HTSATModel(stateDict: Benchmark.randomStateDict(BenchmarkTests.small), signal: BenchmarkTests.signal, threads: 2)
        let result = Benchmark.run(model, runs: 3, warmup: 1)
        XCTAssertEqual(result.runs.count, 3)
        XCTAssertEqual(result.stages.count, 3)
        XCTAssertTrue(result.runs.allSatisfy { $0 > 0 })
        XCTAssertEqual(result.stageMedians.map(\.name), ["front_end", "embed", "stage0", "stage1", "head"])
        XCTAssertTrue(result.stageMedians.allSatisfy { $0.ms > 0 })
        // The parts are timed inside the run, so they cannot add up to more than it.
        XCTAssertLessThanOrEqual(result.stages[0].total, result.runs[0] * 1.01)
        XCTAssertGreaterThanOrEqual(result.p90, result.median)
        XCTAssertGreaterThanOrEqual(result.median, result.p10)
        if let rss = Benchmark.peakRSSMegabytes() { XCTAssertGreaterThan(rss, 1) }
    }

    func testThreadsGiveBitIdenticalOutputs() throws {
        // Work is split by whole output tiles, windows and token panels, so the sums do not change order.
        let sd = Benchmark.randomStateDict(BenchmarkTests.small, seed: 9)
        let clip = Benchmark.testSignal(count: BenchmarkTests.signal.clipSamples)
        let one = try HTSATModel(stateDict: sd, signal: BenchmarkTests.signal, threads: 1).infer(clip)
        let three = try HTSATModel(stateDict: sd, signal: BenchmarkTests.signal, threads: 3).infer(clip)
        XCTAssertEqual(one.clipwise, three.clipwise)
        XCTAssertEqual(one.framewise, three.framewise)
        XCTAssertEqual(one.latent, three.latent)
        XCTAssertTrue(one.clipwise.allSatisfy { $0 > 0 && $0 < 1 })
    }

    func testBFloat16IsOptInAndStaysCloseToFloat32() throws {
        let sd = Benchmark.randomStateDict(BenchmarkTests.small, seed: 11)
        XCTAssertEqual(try HTSATModel(stateDict: sd, signal: BenchmarkTests.signal).precision, .float32)
        guard HTSATModel.supportsBFloat16 else {
            XCTAssertThrowsError(try HTSATModel(stateDict: sd, signal: BenchmarkTests.signal, precision: .bfloat16))
            throw XCTSkip("this CPU has no AVX512-BF16")
        }
        let clip = Benchmark.testSignal(count: BenchmarkTests.signal.clipSamples)
        let exact = try HTSATModel(stateDict: sd, signal: BenchmarkTests.signal).infer(clip)
        let rounded = try HTSATModel(stateDict: sd, signal: BenchmarkTests.signal, threads: 2, precision: .bfloat16).infer(clip)
        let drift = zip(exact.framewise, rounded.framewise).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertGreaterThan(drift, 0, "bfloat16 rounding must change something")
        XCTAssertLessThan(drift, 0.02)
    }

    func testStatisticsAndFlops() {
        XCTAssertEqual(BenchmarkResult.median([4, 1, 3, 2]), 2.5)
        XCTAssertEqual(BenchmarkResult.percentile(Array(1...11).map(Double.init), 10), 2)
        XCTAssertEqual(BenchmarkResult.percentile([], 50), 0)
        // The full AudioSet model: 11.97 GFLOP per window, the figure gemmfloor's GEMMs add up to.
        let full = HTSATConfig(embedDim: 96, depths: [2, 2, 6, 2], numHeads: [4, 8, 16, 32], windowSize: 8,
                               windowSizes: [8, 8, 8, 8], patchSize: 4, specSize: 256, melBins: 64, nFFT: 1024,
                               classes: 527, signal: .audioSet)
        XCTAssertEqual(Benchmark.flops(full) / 1e9, 11.97, accuracy: 0.01)
    }
}
