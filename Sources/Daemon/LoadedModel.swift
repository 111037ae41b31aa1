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
    /// Scorers of the custom events in use (those `events` names), in row order after the model's outputs.
    let customScorers: [CustomEventScorer]
    /// Names in `event_settings` that match no selected event (worth a warning: likely a typo).
    let unusedEventSettings: [String]

    /// Reads what the checkpoint is (cheap), then labels and events (the usual mistakes), then builds the model.
    init(config: DaemonConfig, logger: Logger) throws {
        let started = DispatchTime.now().uptimeNanoseconds
        let stateDict = try openCheckpoint(config.model)
        var profile = try ModelProfile.infer(from: stateDict, preset: config.preset)
        profile.signal = config.signal(overriding: profile.signal)
        let labels = try AudioSetLabels.forModel(classes: profile.classes, labelsFile: config.labelsFile)
        let custom = try config.customEvents.map { try CustomEvent.load(contentsOf: $0) }
        let catalog = try EventCatalog(labels: labels, custom: custom)
        let definitions = try catalog.resolve(config.events)
        // Per-event overrides are keyed by the name as written in `events` or by the resolved name.
        let typed = Dictionary(config.events.compactMap { name in (try? catalog.resolve(name)).map { ($0.name, name) } },
                               uniquingKeysWith: { first, _ in first })
        let specs = definitions.map { definition in
            // The event's own defaults (the DESED thresholds) over the global ones, then the user's overrides.
            let base = definition.defaultSettings(base: config.defaults)
            let key = [typed[definition.name], definition.name].compactMap { $0 }.first { config.eventSettings[$0] != nil }
            return EventSpec(definition: definition, settings: config.settings(for: key ?? definition.name, base: base))
        }
        unusedEventSettings = config.unusedEventSettings(resolved: definitions.map(\.name))
        model = try HTSATModel(stateDict: stateDict, profile: profile, threads: config.threads,
                               precision: config.precision == .bfloat16 ? .bfloat16 : .float32)
        self.labels = labels
        // Only the custom events selected get scored; their rows are renumbered to follow the model's outputs.
        let fingerprint = custom.isEmpty ? "" : model.fingerprint()
        var scorers: [CustomEventScorer] = []
        let features = model.config.numFeatures, selected = Set(definitions.map(\.name))
        for (path, event) in zip(config.customEvents, custom) where selected.contains(event.name) {
            guard event.model.fingerprint == fingerprint, event.model.features == features else {
                throw CustomEventError.wrongModel(path: path, name: event.name, enrolled: event.model.fingerprint,
                                                  enrolledFile: event.model.file, current: fingerprint)
            }
            scorers.append(CustomEventScorer(event))
        }
        customScorers = scorers
        let classes = model.config.classes
        let rowOf = Dictionary(uniqueKeysWithValues: scorers.enumerated().map { ($1.event.name, classes + $0) })
        self.specs = specs.map { spec in
            guard let row = rowOf[spec.definition.name] else { return spec }
            let d = spec.definition
            return EventSpec(definition: EventDefinition(name: d.name, labelIndices: [row], labelNames: d.labelNames,
                                                         defaultThresholds: d.defaultThresholds), settings: spec.settings)
        }
        var metadata: Logger.Metadata = [
            "path": "\(config.model)", "ms": "\((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)",
            "configuration": "\(profile)", "sample_rate": "\(profile.signal.sampleRate)",
            "embed_dim": "\(model.config.embedDim)", "depths": "\(model.config.depths)",
            "classes": "\(model.config.classes)", "labels": "\(labels.source)",
            "threads": "\(config.threads)", "precision": "\(config.precision.rawValue)",
        ]
        if let note = profile.note { metadata["note"] = "\(note)" }
        logger.info("model loaded", metadata: metadata)
    }

    /// A scheduler over this model with the configured events and timing; `output` gets every start and stop.
    func scheduler(config: DaemonConfig, logger: Logger, metrics: DaemonMetrics? = nil, afterWindow: @escaping () -> Void,
                   output: @escaping (DetectionEvent) -> Void) throws -> WindowScheduler {
        // Checked again against the checkpoint's own window (the config could only assume its preset's).
        let lags = try config.timing.resolved(clipSeconds: model.config.signal.clipSeconds)
        let detector = try Detector(events: specs, geometry: WindowGeometry(config: model.config),
                                    classes: model.config.classes + customScorers.count,
                                    settle: lags.settle, onsetSettle: lags.onsetSettle, hopSeconds: config.hopSeconds)
        let infer = WindowScheduler.inference(model: model, custom: customScorers)
        let stall = StallHook(logger: logger)
        return try WindowScheduler(
            detector: detector, hopSeconds: config.hopSeconds, logger: logger,
            inference: { samples, body in
                stall?.window()
                let started = DispatchTime.now().uptimeNanoseconds
                try infer(samples, body)
                metrics?.observeInference(seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
                afterWindow()
            },
            output: { event in
                if event.kind == .start { metrics?.countStart(event: event.event) }
                output(event)
            })
    }
}

/// Fault injection for the watchdog test: with `HTSATD_TEST_STALL_AFTER_WINDOWS=N` in the environment, analysis
/// hangs for good before window N + 1, as a deadlocked model would. Nil (and free) otherwise.
final class StallHook: @unchecked Sendable {
    private let after: Int
    private let logger: Logger
    private var windows = 0

    init?(logger: Logger) {
        guard let text = ProcessInfo.processInfo.environment["HTSATD_TEST_STALL_AFTER_WINDOWS"], let n = Int(text) else { return nil }
        after = n
        self.logger = logger
    }

    /// Called on the engine thread before each window.
    func window() {
        windows += 1
        guard windows > after else { return }
        logger.warning("test hook: analysis stalls now (HTSATD_TEST_STALL_AFTER_WINDOWS=\(after))")
        DispatchSemaphore(value: 0).wait()
    }
}

/// Memory-maps a checkpoint, with a hint for the usual cause of a missing one (not downloaded yet).
func openCheckpoint(_ path: String) throws -> StateDict {
    guard FileManager.default.fileExists(atPath: path) else {
        throw DaemonError("model file \(path) not found: pass --model PATH, set \"model\" in the config, or run scripts/download-model.sh")
    }
    return try StateDict.load(contentsOf: path)
}

/// Loads a checkpoint (.ckpt, torch.save or .safetensors) into a model; its configuration is read from the file
/// and checked against `preset` when one is given.
func loadModel(path: String, preset: ModelPreset?, threads: Int, precision: HTSATPrecision = .float32) throws -> HTSATModel {
    try HTSATModel(stateDict: openCheckpoint(path), preset: preset, threads: threads, precision: precision)
}

/// A `--preset` value, or an error listing the presets.
func modelPreset(_ name: String) throws -> ModelPreset {
    guard let preset = ModelPreset(rawValue: name) else {
        throw DaemonError("--preset \(name): expected one of \(ModelPreset.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return preset
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
