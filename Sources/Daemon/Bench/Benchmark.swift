import Detection
import Engine
import Foundation
import HTSAT
import Sinks

/// A model shape for random benchmark weights, in the official HTS-AT state_dict layout.
public struct BenchmarkArchitecture: Sendable, Equatable {
    /// Patch-embedding width.
    public var embed: Int
    /// Swin blocks per stage.
    public var depths: [Int]
    /// Attention heads per stage.
    public var heads: [Int]
    /// Output classes.
    public var classes: Int
    /// Attention window.
    public var window: Int
    /// Side of the input image (the official spec_size).
    public var specSize: Int
    /// Patch size and stride.
    public var patch: Int
    /// Mel bands.
    public var mels: Int
    /// STFT size.
    public var nFFT: Int

    /// Plain memberwise initializer.
    public init(embed: Int, depths: [Int], heads: [Int], classes: Int, window: Int = 8, specSize: Int = 256, patch: Int = 4,
                mels: Int = 64, nFFT: Int = 1024) {
        self.embed = embed
        self.depths = depths
        self.heads = heads
        self.classes = classes
        self.window = window
        self.specSize = specSize
        self.patch = patch
        self.mels = mels
        self.nFFT = nFFT
    }

    /// The released AudioSet model: embed 96, depths [2, 2, 6, 2], heads [4, 8, 16, 32], window 8, 527 classes.
    public static let audioSet = BenchmarkArchitecture(embed: 96, depths: [2, 2, 6, 2], heads: [4, 8, 16, 32], classes: 527)
}

/// Timings of repeated inferences, in milliseconds.
public struct BenchmarkResult: Sendable {
    /// Wall time of each timed inference, in run order.
    public var runs: [Double]
    /// The per-part times of each timed inference.
    public var stages: [StageTimes]

    /// The median of `values` (mean of the middle two for an even count).
    public static func median(_ values: [Double]) -> Double { percentile(values, 50) }

    /// Linear-interpolated percentile `p` (0...100) of `values`; 0 for none.
    public static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted(), pos = Double(s.count - 1) * min(max(p, 0), 100) / 100
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, s.count - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - Double(lo))
    }

    /// Median wall time per inference.
    public var median: Double { BenchmarkResult.median(runs) }
    /// 10th percentile of the wall times.
    public var p10: Double { BenchmarkResult.percentile(runs, 10) }
    /// 90th percentile of the wall times.
    public var p90: Double { BenchmarkResult.percentile(runs, 90) }

    /// Median of each part across runs: ("front_end", ms), ("embed", ms), ("stage0", ms)..., ("head", ms).
    public var stageMedians: [(name: String, ms: Double)] {
        guard let first = stages.first else { return [] }
        var parts: [(String, Double)] = [("front_end", BenchmarkResult.median(stages.map(\.frontEnd))),
                                         ("embed", BenchmarkResult.median(stages.map(\.embed)))]
        for i in first.stages.indices {
            parts.append(("stage\(i)", BenchmarkResult.median(stages.map { $0.stages.count > i ? $0.stages[i] : 0 })))
        }
        parts.append(("head", BenchmarkResult.median(stages.map(\.head))))
        return parts
    }
}

/// Benchmark helpers: seeded random weights in the official layout, a test signal, timed inference runs.
public enum Benchmark {
    /// Every tensor of the official state_dict (float tensors; the shifted blocks' `attn_mask` buffers included),
    /// seeded: PyTorch-like uniform(+-1/sqrt(fan_in)) weights, LayerNorm weights near 1, a sparse mel filterbank.
    public static func randomTensors(_ arch: BenchmarkArchitecture = .audioSet, seed: UInt64 = 1) -> [String: (shape: [Int], values: [Float])] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        func uniform(_ n: Int, _ lo: Float, _ hi: Float) -> [Float] {
            var out = [Float](repeating: 0, count: n)
            for i in 0..<n {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                out[i] = lo + (hi - lo) * Float(state >> 40) / Float(1 << 24)
            }
            return out
        }
        var t: [String: (shape: [Int], values: [Float])] = [:]
        func add(_ key: String, _ shape: [Int], _ lo: Float, _ hi: Float) { t[key] = (shape, uniform(shape.reduce(1, *), lo, hi)) }
        func linear(_ prefix: String, out: Int, in fanIn: Int, bias: Bool = true, shape: [Int]? = nil) {
            let bound = 1 / Float(fanIn).squareRoot()
            add("\(prefix).weight", shape ?? [out, fanIn], -bound, bound)
            if bias { add("\(prefix).bias", [out], -bound, bound) }
        }
        func norm(_ prefix: String, _ dim: Int) { add("\(prefix).weight", [dim], 0.9, 1.1); add("\(prefix).bias", [dim], -0.05, 0.05) }

        let bins = arch.nFFT / 2 + 1, embed = arch.embed, patch = arch.patch
        // The STFT kernels are stored in every checkpoint but never read (an FFT computes the same product).
        for part in ["real", "imag"] {
            t["spectrogram_extractor.stft.conv_\(part).weight"] = ([bins, 1, arch.nFFT], [Float](repeating: 0, count: bins * arch.nFFT))
        }
        // Triangular-ish filters: each band covers a few bins, like a mel filterbank.
        var melW = [Float](repeating: 0, count: bins * arch.mels)
        for m in 0..<arch.mels {
            let center = 2 + (bins - 4) * m / max(arch.mels - 1, 1), width = 2 + m / 4
            for k in max(center - width, 0)...min(center + width, bins - 1) {
                melW[k * arch.mels + m] = 0.01 * Float(width + 1 - abs(k - center)) / Float(width + 1)
            }
        }
        t["logmel_extractor.melW"] = ([bins, arch.mels], melW)
        norm("bn0", arch.mels)
        add("bn0.running_mean", [arch.mels], -40, -20)
        add("bn0.running_var", [arch.mels], 50, 200)
        linear("patch_embed.proj", out: embed, in: patch * patch, shape: [embed, 1, patch, patch])
        norm("patch_embed.norm", embed)
        var res = arch.specSize / patch
        for (i, depth) in arch.depths.enumerated() {
            let dim = embed << i, w = min(arch.window, res)
            let mask = w < res ? shiftedWindowMask(resolution: res, window: w) : []
            for j in 0..<depth {
                let p = "layers.\(i).blocks.\(j)"
                norm("\(p).norm1", dim)
                add("\(p).attn.relative_position_bias_table", [(2 * w - 1) * (2 * w - 1), arch.heads[i]], -0.04, 0.04)
                linear("\(p).attn.qkv", out: 3 * dim, in: dim)
                linear("\(p).attn.proj", out: dim, in: dim)
                norm("\(p).norm2", dim)
                linear("\(p).mlp.fc1", out: 4 * dim, in: dim)
                linear("\(p).mlp.fc2", out: dim, in: 4 * dim)
                if j % 2 == 1 && w < res {
                    t["\(p).attn_mask"] = ([(res / w) * (res / w), w * w, w * w], mask)
                }
            }
            if i < arch.depths.count - 1 {
                norm("layers.\(i).downsample.norm", 4 * dim)
                linear("layers.\(i).downsample.reduction", out: 2 * dim, in: 4 * dim, bias: false)
                res /= 2
            }
        }
        let features = embed << (arch.depths.count - 1), freqBins = res / (arch.specSize / arch.mels)
        norm("norm", features)
        linear("tscam_conv", out: arch.classes, in: features * freqBins * 3, shape: [arch.classes, features, freqBins, 3])
        linear("head", out: arch.classes, in: arch.classes)
        return t
    }

    /// `randomTensors` as a StateDict.
    public static func randomStateDict(_ arch: BenchmarkArchitecture = .audioSet, seed: UInt64 = 1) -> StateDict {
        StateDict(tensors: randomTensors(arch, seed: seed), source: "random weights (seed \(seed))")
    }

    /// Writes float32 tensors as a safetensors file (keys sorted, data 8-byte aligned so it loads zero-copy).
    public static func writeSafetensors(_ tensors: [String: (shape: [Int], values: [Float])], to path: String) throws {
        let keys = tensors.keys.sorted()
        var offset = 0
        struct Entry: Encodable { let dtype = "F32"; let shape: [Int]; let data_offsets: [Int] }
        var entries: [(key: String, value: Entry)] = []
        for key in keys {
            let t = tensors[key]!, bytes = t.values.count * 4
            entries.append((key, Entry(shape: t.shape, data_offsets: [offset, offset + bytes])))
            offset += bytes
        }
        var header = Array(LineEncoder.encode(OrderedJSONObject(entries)).utf8)
        while header.count % 8 != 0 { header.append(UInt8(ascii: " ")) }
        guard let file = fopen(path, "wb") else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        defer { fclose(file) }
        var ok = true
        var length = UInt64(header.count).littleEndian
        ok = ok && fwrite(&length, 8, 1, file) == 1
        ok = ok && header.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
        for key in keys where ok {
            ok = tensors[key]!.values.withUnsafeBytes { $0.isEmpty || fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
        }
        guard ok, fflush(file) == 0 else { throw CocoaError(.fileWriteOutOfSpace, userInfo: [NSFilePathErrorKey: path]) }
    }

    /// Learned values in a state dict: every float tensor except the registered buffers (attention masks,
    /// BatchNorm running statistics); the STFT kernels and the unused `head` count, as in the paper's 31M.
    public static func parameterCount(_ sd: StateDict) -> Int {
        sd.keys.reduce(0) { sum, key in
            guard sd.dtype(of: key) == "float32", !key.hasSuffix("attn_mask"), !key.contains("running_") else { return sum }
            return sum + (sd.shape(of: key) ?? []).reduce(1, *)
        }
    }

    /// Floating-point operations of one window's network (2 per multiply-add of every linear layer, the
    /// patch and head convolutions, and attention's two products), as gemmfloor counts them.
    public static func flops(_ c: HTSATConfig) -> Double {
        var madds = 0
        let tokens0 = c.gridSize * c.gridSize
        madds += tokens0 * c.embedDim * c.patchSize * c.patchSize
        for i in 0..<c.stageCount {
            let res = c.resolution(stage: i), n = res * res, dim = c.channels(stage: i), w = c.windowSizes[i]
            let perBlock = n * dim * 3 * dim + n * dim * dim + 2 * n * dim * 4 * dim + 2 * n * w * w * dim
            madds += c.depths[i] * perBlock
            if i < c.stageCount - 1 { madds += (n / 4) * 4 * dim * 2 * dim }
        }
        madds += c.tokenSteps * c.classes * c.numFeatures * c.headFreqBins * 3
        return 2 * Double(madds)
    }

    /// A deterministic clip of `count` samples: tones plus noise, loud enough to exercise every stage.
    public static func testSignal(count: Int, sampleRate: Int = 32000) -> [Float] {
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        return (0..<count).map { i in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let noise = Float(state >> 40) / Float(1 << 24) - 0.5
            let t = Double(i) / Double(sampleRate)
            return Float(0.3 * sin(2 * .pi * 440 * t) + 0.2 * sin(2 * .pi * 1870 * t * (1 + 0.1 * sin(t)))) + 0.1 * noise
        }
    }

    /// Runs `warmup` untimed then `runs` timed inferences of `samples` (default: a full test clip).
    public static func run(_ model: HTSATModel, runs: Int, warmup: Int = 3, samples: [Float]? = nil) -> BenchmarkResult {
        let clip = samples ?? testSignal(count: model.config.signal.clipSamples, sampleRate: model.config.signal.sampleRate)
        var output = HTSATOutput(config: model.config)
        var result = BenchmarkResult(runs: [], stages: [])
        clip.withUnsafeBufferPointer { input in
            var times = StageTimes()
            for _ in 0..<max(warmup, 0) { model.infer(input, into: &output, times: &times) }
            for _ in 0..<max(runs, 0) {
                let start = DispatchTime.now().uptimeNanoseconds
                model.infer(input, into: &output, times: &times)
                result.runs.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                result.stages.append(times)
            }
        }
        return result
    }

    /// Median ms of the daemon's window (inference and frame scores, `WindowScheduler.inference`) without and with
    /// `customEvents` synthetic custom events sized like a real enrolment (15 prototypes, 64 background vectors),
    /// the two interleaved run by run so that both see the same machine load.
    public static func customEventCost(_ model: HTSATModel, customEvents: Int, runs: Int, warmup: Int = 3) throws -> (base: Double, custom: Double) {
        let c = model.config
        let clip = testSignal(count: c.signal.clipSamples, sampleRate: c.signal.sampleRate)
        var state: UInt64 = 7
        func vectors(_ n: Int) -> [[Float]] {
            (0..<n).map { _ in (0..<c.numFeatures).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(state >> 40) / Float(1 << 24) - 0.5
            } }
        }
        // Through the real enrolment, on random embeddings: 5 examples x 3 gains, 8 background windows (64 segments).
        let identity = CustomEvent.ModelIdentity(fingerprint: "", features: c.numFeatures, file: "")
        let scorers = (0..<customEvents).map { i in
            CustomEventScorer(CustomEventEnrollment.enroll(
                name: "bench_\(i)", model: identity,
                positives: (0..<5).map { _ in .init(file: "", views: (0..<3).map { _ in vectors(10) }) },
                background: [.init(file: "", views: (0..<8).map { _ in vectors(32) })]))
        }
        let base = WindowScheduler.inference(model: model), custom = WindowScheduler.inference(model: model, custom: scorers)
        var times: ([Double], [Double]) = ([], [])
        try clip.withUnsafeBufferPointer { input in
            for i in 0..<(max(warmup, 0) + runs) {
                for (j, infer) in [base, custom].enumerated() {
                    let start = DispatchTime.now().uptimeNanoseconds
                    try infer(input) { _ in }
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                    if i >= warmup { if j == 0 { times.0.append(ms) } else { times.1.append(ms) } }
                }
            }
        }
        return (BenchmarkResult.median(times.0), BenchmarkResult.median(times.1))
    }

    /// The process's peak resident set size in MB (VmHWM from /proc/self/status), nil where unavailable.
    public static func peakRSSMegabytes() -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kb = Double(fields[1]) { return kb / 1024 }
        }
        return nil
    }
}
