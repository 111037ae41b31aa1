import Detection
import Dispatch
import Engine
import Foundation
import HTSAT
import Logging

/// A start-up or run-time failure, printed as one `error:` line before a non-zero exit.
public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The model, labels and resolved events a run needs; loaded once at start-up.
struct LoadedModel {
    let model: HTSATModel
    let specs: [EventSpec]
    let labels: AudioSetLabels

    /// Loads labels first (cheap, and the usual mistake), resolves the events, then loads the checkpoint.
    init(config: DaemonConfig, logger: Logger) throws {
        let labels = try loadLabels(path: config.labelsPath)
        let catalog = try EventCatalog(labels: labels)
        let definitions = try catalog.resolve(config.events)
        specs = zip(config.events, definitions).map { name, definition in
            let overridden = config.eventSettings[name] != nil ? name : definition.name
            return EventSpec(definition: definition, settings: config.settings(for: overridden))
        }
        let started = DispatchTime.now().uptimeNanoseconds
        model = try loadModel(path: config.model, signal: config.signal.modelSignal, threads: config.threads,
                              precision: config.precision == .bfloat16 ? .bfloat16 : .float32)
        try labels.validate(classes: model.config.classes)
        self.labels = labels
        logger.info("model loaded", metadata: [
            "path": "\(config.model)",
            "ms": "\((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)",
            "embed_dim": "\(model.config.embedDim)", "depths": "\(model.config.depths)",
            "classes": "\(model.config.classes)", "threads": "\(config.threads)", "precision": "\(config.precision.rawValue)",
        ])
    }

    /// A scheduler over this model with the configured events and timing; `output` gets every start and stop.
    func scheduler(config: DaemonConfig, logger: Logger, afterWindow: @escaping () -> Void,
                   output: @escaping (DetectionEvent) -> Void) throws -> WindowScheduler {
        let settle = config.settleSeconds ?? Detector.defaultSettle(clipSeconds: config.signal.clipSeconds, hopSeconds: config.hopSeconds)
        let detector = try Detector(events: specs, geometry: WindowGeometry(config: model.config), classes: model.config.classes,
                                    settle: settle, onsetSettle: config.onsetSettleSeconds ?? min(Detector.defaultOnsetSettle, settle))
        let infer = WindowScheduler.inference(model: model)
        return try WindowScheduler(
            detector: detector, hopSeconds: config.hopSeconds, logger: logger,
            inference: { samples, body in
                try infer(samples, body)
                afterWindow()
            },
            output: output)
    }
}

/// Reads the AudioSet label list, with a hint for the usual cause (not downloaded yet).
func loadLabels(path: String) throws -> AudioSetLabels {
    guard FileManager.default.fileExists(atPath: path) else {
        throw DaemonError("labels file \(path) not found: pass --labels PATH, set \"labels\" in the config, or run scripts/download-model.sh")
    }
    return try AudioSetLabels(contentsOf: URL(fileURLWithPath: path))
}

/// Loads a checkpoint (.ckpt, torch.save or .safetensors) into a model.
func loadModel(path: String, signal: SignalConfig, threads: Int, precision: HTSATPrecision = .float32) throws -> HTSATModel {
    guard FileManager.default.fileExists(atPath: path) else {
        throw DaemonError("model file \(path) not found: pass --model PATH, set \"model\" in the config, or run scripts/download-model.sh")
    }
    return try HTSATModel(stateDict: try StateDict.load(contentsOf: path), signal: signal, threads: threads, precision: precision)
}

extension DaemonConfig.Signal {
    /// The model's signal parameters (fmin/fmax only shape the stored mel filterbank, so the preset's are kept).
    var modelSignal: SignalConfig {
        SignalConfig(sampleRate: sampleRate, hopSize: hopSize, clipSamples: clipSamples,
                     fmin: SignalConfig.audioSet.fmin, fmax: SignalConfig.audioSet.fmax)
    }
}

/// CPU time (user + system) this process has used, in seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// Two decimals, for log lines.
func fmt(_ x: Double) -> String { String(format: "%.2f", x) }
