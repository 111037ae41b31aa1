import ArgumentParser
import Foundation
import HTSAT
import Sinks

/// `htsatd bench`: times the forward pass of one 10-s window, per part, with a given model or random full-size weights.
public struct Bench: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Time inference on one 10-s window: median and spread, per-stage medians, GFLOP/s, load time and peak RSS.",
        discussion: """
            Without --model the full AudioSet architecture (embed 96, depths 2-2-6-2, heads 4-8-16-32, 527 classes) \
            runs with seeded random weights; its peak RSS then includes the in-memory copy the weights are built from. \
            --write-weights saves those weights as a safetensors file (for timing the loader with --model) and exits.
            """)

    @Option(help: "Model checkpoint (.ckpt or .safetensors); default: random weights, full AudioSet architecture.")
    var model: String?
    @Option(help: "Inference threads.") var threads: Int = 1
    @Option(help: "Timed runs after the warm-up.") var runs: Int = 15
    @Option(help: "Untimed warm-up runs.") var warmup: Int = 3
    @Flag(help: "Print one JSON object instead of a table.") var json = false
    @Flag(help: "Opt-in bfloat16 linear layers (AVX512-BF16 CPUs; outputs drift by about 1e-3).") var bf16 = false
    @Option(help: "Write the random full-size weights to this safetensors file and exit.")
    var writeWeights: String?
    @Option(name: .customLong("custom-events"), help: "Also time the daemon's window with this many custom events (interleaved with the model alone).")
    var customEvents: Int = 0

    public init() {}

    public func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads \(threads): must be at least 1") }
        guard runs >= 1 else { throw ValidationError("--runs \(runs): must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup \(warmup): must be 0 or more") }
        guard (0...64).contains(customEvents) else { throw ValidationError("--custom-events \(customEvents): must be 0 to 64") }
        if model != nil && writeWeights != nil { throw ValidationError("--write-weights writes random weights; drop --model") }
    }

    public func run() throws {
        try runReportingErrors {
            if let path = writeWeights {
                try Benchmark.writeSafetensors(Benchmark.randomTensors(), to: path)
                print("wrote random full-size HTS-AT weights to \(path)")
                return
            }
            let start = DispatchTime.now().uptimeNanoseconds
            let stateDict = try model.map { try StateDict.load(contentsOf: $0) } ?? Benchmark.randomStateDict()
            let htsat = try HTSATModel(stateDict: stateDict, threads: threads, precision: bf16 ? .bfloat16 : .float32)
            let loadMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            let parameters = Benchmark.parameterCount(stateDict)

            let result = Benchmark.run(htsat, runs: runs, warmup: warmup)
            let gflop = Benchmark.flops(htsat.config) / 1e9
            let report = Report(model: model ?? "random weights, full AudioSet architecture", config: htsat.config,
                                threads: threads, isa: HTSATModel.kernelISA + (bf16 ? "+bf16" : ""),
                                caches: HTSATModel.kernelCacheShares, parameters: parameters,
                                loadMs: model == nil ? nil : loadMs, gflop: gflop, result: result,
                                peakRSS: Benchmark.peakRSSMegabytes())
            print(json ? report.json() : report.table())
            if customEvents > 0 {
                let cost = try Benchmark.customEventCost(htsat, customEvents: customEvents, runs: runs, warmup: warmup)
                let overhead = (cost.custom / cost.base - 1) * 100
                struct Cost: Encodable { let custom_events: Int, window_ms: Double, with_custom_ms: Double, overhead_percent: Double }
                let r = LineEncoder.rounded
                print(json ? LineEncoder.encode(Cost(custom_events: customEvents, window_ms: r(cost.base), with_custom_ms: r(cost.custom),
                                                     overhead_percent: r(overhead)))
                      : String(format: "custom events   %d: window %.2f ms median, with them %.2f ms (%+.1f %%), interleaved", customEvents, cost.base, cost.custom, overhead))
            }
        }
    }
}

/// The figures `bench` prints.
private struct Report {
    let model: String
    let config: HTSATConfig
    let threads: Int
    let isa: String
    /// The kernels' cache budgets (bytes), which choose their loop orders on this CPU.
    let caches: (l1: Int, l2: Int)
    let parameters: Int
    let loadMs: Double?
    let gflop: Double
    let result: BenchmarkResult
    let peakRSS: Double?

    /// The `--json` object: fixed field order, times in ms to 0.001.
    private struct JSON: Encodable {
        let model: String, threads: Int, isa: String, cache_shares_kb: OrderedJSONObject<Int>, runs: Int
        let median_ms: Double, p10_ms: Double, p90_ms: Double, min_ms: Double, max_ms: Double
        let stages_ms: OrderedJSONObject<Double>, gflop_per_window: Double, gflops: Double, parameters: Int
        let load_ms: Double?, peak_rss_mb: Double?
        /// "mapped" (a checkpoint file, as the daemon runs it) or "in-memory" (random weights).
        let weights: String
    }

    func json() -> String {
        let r = LineEncoder.rounded
        return LineEncoder.encode(JSON(
            model: model, threads: threads, isa: isa, cache_shares_kb: OrderedJSONObject([("l1", caches.l1 / 1024), ("l2", caches.l2 / 1024)]),
            runs: result.runs.count,
            median_ms: r(result.median), p10_ms: r(result.p10), p90_ms: r(result.p90),
            min_ms: r(result.runs.min() ?? 0), max_ms: r(result.runs.max() ?? 0),
            stages_ms: OrderedJSONObject(result.stageMedians.map { ($0.name, r($0.ms)) }),
            gflop_per_window: r(gflop), gflops: (gflop / (result.median / 1000) * 10).rounded() / 10,
            parameters: parameters, load_ms: loadMs.map(r), peak_rss_mb: peakRSS.map { ($0 * 10).rounded() / 10 },
            weights: loadMs == nil ? "in-memory" : "mapped"))
    }

    func table() -> String {
        func row(_ name: String, _ value: String) -> String { name.padding(toLength: 16, withPad: " ", startingAt: 0) + value }
        func ms(_ v: Double) -> String { String(format: "%8.2f ms", v) }
        var lines = [
            "model           \(model)",
            row("architecture", "embed \(config.embedDim), depths \(config.depths), heads \(config.numHeads), \(config.classes) classes"),
            row("parameters", String(format: "%.2f M", Double(parameters) / 1e6)),
            row("threads", "\(threads) (\(isa) kernels, blocked for \(caches.l1 / 1024) KB of L1 and \(caches.l2 / 1024) KB of L2)"),
        ]
        if let loadMs { lines.append(row("load", ms(loadMs))) }
        lines.append(row("window", "\(ms(result.median)) median   p10 \(ms(result.p10))   p90 \(ms(result.p90))   (\(result.runs.count) runs)"))
        lines.append(row("throughput", String(format: "%8.1f GFLOP/s (%.2f GFLOP per window)", gflop / (result.median / 1000), gflop)))
        for (name, value) in result.stageMedians { lines.append(row("  " + name, ms(value))) }
        if let peakRSS {
            // Random weights are generated as arrays and copied into the state dict: at the peak the 125 MB of
            // weights exist twice, on the heap. The daemon maps its checkpoint instead (once, file-backed).
            let note = loadMs == nil ? "   (random weights built in memory; --model FILE maps it as the daemon does)" : ""
            lines.append(row("peak RSS", String(format: "%8.1f MB", peakRSS) + note))
        }
        return lines.joined(separator: "\n")
    }
}
