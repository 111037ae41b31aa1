import Detection
import Foundation
import HTSAT
import Logging

/// The daemon's configuration: a JSON file (`--config PATH`), then command-line flags set on top.
///
/// `parse`/`load` check syntax, keys, types and every value; call `validate()` again after applying flags (it also
/// requires an event, which may come from `--events`). The file may hold `//` and `/* */` comments, and keys starting
/// with `_` are documentation, ignored at every level. `config.example.json` documents every key.
public struct DaemonConfig: Equatable, Sendable, Decodable {
    /// Arithmetic of the network's linear layers: `float32` is output-identical to the official model (default);
    /// `bfloat16` is opt-in, AVX512-BF16 CPUs only, about 40 % faster, with scores drifting by about 1e-3.
    public enum Precision: String, CaseIterable, Sendable { case float32, bfloat16 }

    /// Per-event changes to `defaults`; nil fields inherit the default.
    public struct EventOverrides: Equatable, Sendable, Decodable {
        public var onThreshold: Float?, offThreshold: Float?, minDuration: Double?, mergeGap: Double?
        /// nil inherits the default; `.some(nil)` (JSON `null`) removes the limit for this event.
        public var maxDuration: Double??

        public init(onThreshold: Float? = nil, offThreshold: Float? = nil, minDuration: Double? = nil,
                    mergeGap: Double? = nil, maxDuration: Double?? = nil) {
            (self.onThreshold, self.offThreshold, self.minDuration) = (onThreshold, offThreshold, minDuration)
            (self.mergeGap, self.maxDuration) = (mergeGap, maxDuration)
        }

        /// Decodes `defaults` or an `event_settings` entry; the values are checked by `EventSettings.validate`.
        public init(from decoder: Decoder) throws {
            let o = try ConfigValue(decoder).object(allowed: DaemonConfig.eventSettingKeys)
            self.init(onThreshold: try o["on_threshold"].map { Float(try $0.number()) },
                      offThreshold: try o["off_threshold"].map { Float(try $0.number()) },
                      minDuration: try o["min_duration"]?.number(), mergeGap: try o["merge_gap"]?.number(),
                      maxDuration: try o["max_duration"].nullable { try $0.number() })
        }

        /// `base` with the fields set here replaced.
        public func applied(to base: EventSettings) -> EventSettings {
            var s = base
            s.onThreshold = onThreshold ?? s.onThreshold
            s.offThreshold = offThreshold ?? s.offThreshold
            s.minDuration = minDuration ?? s.minDuration
            s.mergeGap = mergeGap ?? s.mergeGap
            s.maxDuration = maxDuration ?? s.maxDuration
            return s
        }
    }

    /// Where event lines go.
    public struct Outputs: Equatable, Sendable, Decodable {
        /// Write event lines to standard output.
        public var stdout = true
        /// Unix stream socket path serving event lines to any number of readers, its file's mode and group
        /// (nil keeps the process's); nil for no socket.
        public var socket: String?, socketMode: UInt32 = 0o660, socketGroup: String?
        /// Append event lines to this file (reopened on SIGHUP); nil for none.
        public var logFile: String?
        /// A socket reader further behind than this many bytes is disconnected.
        public var maxClientBacklog = 256 * 1024

        public init() {}

        /// Decodes the `outputs` object.
        public init(from decoder: Decoder) throws {
            let o = try ConfigValue(decoder).object(allowed: DaemonConfig.outputKeys)
            stdout = try o["stdout"]?.bool() ?? stdout
            socket = try o["socket"].nullable { try $0.path() } ?? socket
            if let m = o["socket_mode"] {
                // A JSON number would be read as decimal (660 is not 0660), so only strings are accepted.
                guard let text = try? m.string() else { throw m.mismatch("an octal string such as \"0660\"") }
                guard let mode = DaemonConfig.parseSocketMode(text) else {
                    throw m.error("\(quote(text)) is not a permission mode; expected three octal digits such as \"0660\"")
                }
                socketMode = mode
            }
            socketGroup = try o["socket_group"].nullable { try $0.string() } ?? socketGroup
            logFile = try o["log_file"].nullable { try $0.path() } ?? logFile
            maxClientBacklog = try o["max_client_backlog"]?.integer() ?? maxClientBacklog
        }
    }

    /// Where scripts/download-model.sh puts the checkpoint.
    public static let defaultModelPath = "/var/lib/htsatd/HTSAT_AudioSet_Saved_1.ckpt"
    /// The AudioSet label file name, looked up beside the model when `labels` is unset.
    public static let labelsFileName = "class_labels_indices.csv"
    /// The built-in event defaults (on 0.5, off 0.3, min 0.3 s, merge 1 s, no max).
    public static let defaultEventSettings = EventSettings(
        onThreshold: 0.5, offThreshold: 0.3, minDuration: 0.3, mergeGap: 1.0, maxDuration: nil)

    // Allowed ranges, shared by validation and its messages.
    public static let periodMsRange = 5...200
    public static let threadsRange = 1...64
    public static let sampleRateRange = 8000...192_000
    public static let maxClientBacklogRange = 4096...(1 << 30)

    /// Top-level keys, in documentation order.
    public static let topLevelKeys = [
        "model", "labels", "preset", "sample_rate", "hop_size", "clip_samples", "device", "period_ms",
        "exit_on_device_error", "hop_seconds", "threads", "precision", "settle_seconds", "onset_settle_seconds",
        "custom_events", "events", "event_settings", "defaults", "outputs", "mqtt", "clips", "stats_interval", "metrics_file", "metrics_listen", "log_level",
    ]
    /// Keys of `outputs`.
    public static let outputKeys = ["stdout", "socket", "socket_mode", "socket_group", "log_file", "max_client_backlog"]
    /// Keys of `defaults` and of each `event_settings` entry.
    public static let eventSettingKeys = ["on_threshold", "off_threshold", "min_duration", "merge_gap", "max_duration"]

    // The file's keys in camelCase; config.example.json documents each.
    /// HTS-AT checkpoint; relative paths in a file are relative to the file's directory.
    public var model = DaemonConfig.defaultModelPath
    /// Labels CSV (index,mid,display_name); nil: class_labels_indices.csv beside the model if there is one, else the
    /// built-in set for the model's class count (AudioSet, ESC-50, Speech Commands V2).
    public var labels: String?
    /// The checkpoint's official configuration; nil reads it from the checkpoint, a value is checked against it.
    public var preset: ModelPreset?
    /// Overrides of the preset's sample rate (Hz), hop (samples) and window (samples).
    public var sampleRate: Int?, hopSize: Int?, clipSamples: Int?
    /// ALSA capture PCM, its period in ms, and whether a capture error exits (for systemd to restart) or reopens.
    public var device = "default", periodMs = 32, exitOnDeviceError = false
    /// Seconds between model windows, inference threads, arithmetic of the network.
    public var hopSeconds = 1.0, threads = 1, precision = Precision.float32
    /// Fusion's settle time and the early start read-out's lag, in seconds; nil for the defaults.
    public var settleSeconds: Double?, onsetSettleSeconds: Double?
    /// Custom event files (`htsatd enroll`) whose names `events` may use; relative paths are relative to the file.
    public var customEvents: [String] = []
    /// Event names (built-in groups or AudioSet labels), resolved later by `EventCatalog`.
    public var events: [String] = []
    /// Per-event overrides keyed by the name as written in `events`, and the settings of every other event.
    public var eventSettings: [String: EventOverrides] = [:], defaults = DaemonConfig.defaultEventSettings
    public var outputs = Outputs()
    /// Publishing to an MQTT broker (MQTTOptions.swift); off unless `mqtt.url` is set.
    public var mqtt = MQTT()
    /// Seconds between statistics log lines (0: none), and the minimum level of diagnostic log lines.
    public var statsInterval = 60.0, logLevel = Logger.Level.info
    /// Prometheus text-format metrics written here (atomically) every stats interval and at exit; nil for none.
    public var metricsFile: String?
    /// Serve `GET /metrics` here: `HOST:PORT` (e.g. 127.0.0.1:9464) or `unix:PATH`; nil for none.
    public var metricsListen: String?
    /// Event clips (`clips`, ClipsConfig.swift); none unless `clips.dir` is set.
    public var clips = Clips()

    /// The built-in defaults.
    public init() {}

    /// Decodes the file's top-level object; through `parse`, errors carry each key's line:column.
    public init(from decoder: Decoder) throws {
        let top = try ConfigValue(decoder).object(allowed: Self.topLevelKeys)
        model = try top["model"]?.path() ?? model
        labels = try top["labels"].nullable { try $0.path() } ?? labels
        preset = try top["preset"].nullable { try $0.choice("a preset") } ?? preset
        sampleRate = try top["sample_rate"].nullable { try $0.integer() } ?? sampleRate
        hopSize = try top["hop_size"].nullable { try $0.integer() } ?? hopSize
        clipSamples = try top["clip_samples"].nullable { try $0.integer() } ?? clipSamples
        device = try top["device"]?.string() ?? device
        periodMs = try top["period_ms"]?.integer() ?? periodMs
        exitOnDeviceError = try top["exit_on_device_error"]?.bool() ?? exitOnDeviceError
        hopSeconds = try top["hop_seconds"]?.number() ?? hopSeconds
        threads = try top["threads"]?.integer() ?? threads
        precision = try top["precision"]?.choice("a precision") ?? precision
        settleSeconds = try top["settle_seconds"].nullable { try $0.number() } ?? settleSeconds
        onsetSettleSeconds = try top["onset_settle_seconds"].nullable { try $0.number() } ?? onsetSettleSeconds
        customEvents = try top["custom_events"]?.array().map { try $0.path() } ?? customEvents
        events = try top["events"]?.array().map { try $0.string() } ?? events
        defaults = try top["defaults"].map { try EventOverrides(from: $0.decoder).applied(to: defaults) } ?? defaults
        // Any name is allowed here: names are resolved later, against the label file.
        eventSettings = try top["event_settings"]?.object(allowed: nil).mapValues { try EventOverrides(from: $0.decoder) } ?? [:]
        outputs = try top["outputs"].map { try Outputs(from: $0.decoder) } ?? outputs
        mqtt = try top["mqtt"].map { try MQTT(from: $0.decoder) } ?? mqtt
        statsInterval = try top["stats_interval"]?.number() ?? statsInterval
        metricsFile = try top["metrics_file"].nullable { try $0.path() } ?? metricsFile
        metricsListen = try top["metrics_listen"].nullable { try $0.string() } ?? metricsListen
        logLevel = try top["log_level"]?.choice("a log level") ?? logLevel
        clips = try top["clips"].map { try Clips(from: $0.decoder) } ?? clips
    }

    /// The labels file to read: `labels`, else class_labels_indices.csv beside the model when it exists; nil means
    /// the built-in set.
    public var labelsFile: String? {
        if let labels { return labels }
        let beside = Self.labelsPath(besideModel: model)
        return FileManager.default.fileExists(atPath: beside) ? beside : nil
    }

    /// The labels file looked for when `labels` is unset.
    public var labelsPath: String { labels ?? Self.labelsPath(besideModel: model) }

    /// class_labels_indices.csv in the directory of the checkpoint at `model`.
    public static func labelsPath(besideModel model: String) -> String {
        URL(fileURLWithPath: model).deletingLastPathComponent().appendingPathComponent(labelsFileName).path
    }

    /// The signal to check the timing against before the checkpoint is read: the preset's (AudioSet's when unset)
    /// with the overrides applied.
    public var signal: SignalConfig { signal(overriding: (preset ?? .audioset).signal) }

    /// `base` (the checkpoint's signal) with the configured sample rate, hop and window overrides applied.
    public func signal(overriding base: SignalConfig) -> SignalConfig {
        SignalConfig(sampleRate: sampleRate ?? base.sampleRate, hopSize: hopSize ?? base.hopSize,
                     clipSamples: clipSamples ?? base.clipSamples, fmin: base.fmin, fmax: base.fmax)
    }

    /// The window hop and read-out lags, as the detector takes them.
    public var timing: DetectionTiming {
        DetectionTiming(hopSeconds: hopSeconds, settleSeconds: settleSeconds, onsetSettleSeconds: onsetSettleSeconds)
    }

    /// The settings of `event` (a name as written in `events`): its overrides applied to `base`, by default `defaults`.
    public func settings(for event: String, base: EventSettings? = nil) -> EventSettings {
        eventSettings[event]?.applied(to: base ?? defaults) ?? base ?? defaults
    }

    /// Names in `event_settings` that are neither in `events` nor among `resolved` names (worth a warning: a typo).
    public func unusedEventSettings(resolved: [String] = []) -> [String] {
        eventSettings.keys.filter { !events.contains($0) && !resolved.contains($0) }.sorted()
    }

    /// Names in `event_settings` that are not in `events`.
    public var unusedEventSettings: [String] { unusedEventSettings() }

    /// Socket permissions from an octal string ("0660" or "660"), as `outputs.socket_mode` and `--socket-mode` take them.
    public static func parseSocketMode(_ text: String) -> UInt32? {
        let digits = text.count == 4 && text.hasPrefix("0") ? String(text.dropFirst()) : text
        guard digits.count == 3, digits.allSatisfy({ ("0"..."7").contains($0) }) else { return nil }
        return UInt32(digits, radix: 8)
    }

    /// Reads and checks the file at `path`; relative paths inside it become relative to its directory.
    public static func load(path: String) throws -> DaemonConfig {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
            throw ConfigError(source: path, message: "cannot read the configuration file: \(reason)")
        }
        var config = try parse(data: data, source: path)
        config.resolvePaths(relativeTo: URL(fileURLWithPath: path).deletingLastPathComponent())
        return config
    }

    /// Parses JSON `data`; `source` names it in errors. Checks keys, types and single values, not `events` being non-empty.
    public static func parse(data: Data, source: String = "<config>") throws -> DaemonConfig {
        do {
            let syntax = try ConfigSyntax([UInt8](data))
            let decoder = JSONDecoder()
            decoder.userInfo[ConfigValue.placesKey] = syntax.places
            let config = try decoder.decode(DaemonConfig.self, from: Data(syntax.json))
            try config.checkValues()
            return config
        } catch var error as ConfigError {
            error.source = source
            throw error
        } catch {
            // Unreachable while ConfigSyntax accepts only what JSONDecoder does; still a ConfigError, not a crash.
            throw ConfigError(source: source, message: "\(error)")
        }
    }

    /// A file's documentation by key path (`outputs.socket`; "" is the file's header): the comments just
    /// before each key, or the text of its `"_key"` entry.
    public static func documentation(data: Data) throws -> [String: String] { try ConfigSyntax([UInt8](data)).docs }

    /// Full check, for after command-line overrides: every value, and at least one event.
    public func validate() throws {
        try checkValues()
        guard !events.isEmpty else {
            throw ConfigError(key: "events", message: "no events selected; list them in \"events\" or pass --events (run 'htsatd events' for names)")
        }
    }

    /// Makes relative file paths relative to `directory` (the config file's), since a daemon's cwd is arbitrary.
    mutating func resolvePaths(relativeTo directory: URL) {
        func resolve(_ path: String) -> String { path.hasPrefix("/") ? path : directory.appendingPathComponent(path).standardized.path }
        model = resolve(model)
        labels = labels.map(resolve)
        outputs.socket = outputs.socket.map(resolve)
        outputs.logFile = outputs.logFile.map(resolve)
        mqtt.resolvePaths(resolve)
        clips.dir = clips.dir.map(resolve)
        metricsFile = metricsFile.map(resolve)
        customEvents = customEvents.map(resolve)
    }

    /// Checks every single value and the relations between them (everything but `events` being non-empty).
    private func checkValues() throws {
        func require(_ ok: Bool, _ key: String, _ value: Any, _ allowed: String) throws {
            if !ok { throw ConfigError(key: key, message: "\(render(value)) is not allowed; expected \(allowed)") }
        }
        let rates = Self.sampleRateRange, periods = Self.periodMsRange, threadCounts = Self.threadsRange
        try require(!model.isEmpty, "model", model, "a path to an HTS-AT checkpoint")
        try require(!(labels?.isEmpty ?? false), "labels", "", "a path to class_labels_indices.csv, or null")
        try require(sampleRate.map { rates.contains($0) } ?? true, "sample_rate", sampleRate ?? 0,
                    "a rate in Hz from \(rates.lowerBound) to \(rates.upperBound), or null for the preset's")
        let signal = self.signal, clip = signal.clipSeconds, most = signal.sampleRate * 60
        try require(hopSize.map { $0 >= 1 && $0 <= signal.sampleRate } ?? true, "hop_size", hopSize ?? 0,
                    "1 to \(signal.sampleRate) samples (the sample rate), or null for the preset's")
        try require(clipSamples.map { $0 >= signal.hopSize && $0 <= most } ?? true, "clip_samples", clipSamples ?? 0,
                    "\(signal.hopSize) (one hop) to \(most) samples (60 s), or null for the preset's")
        try require(!device.isEmpty, "device", device, "an ALSA PCM name such as \"default\" or \"plughw:CARD=Mic\"")
        try require(periods.contains(periodMs), "period_ms", periodMs, "\(periods.lowerBound) to \(periods.upperBound) ms")
        try require(threadCounts.contains(threads), "threads", threads, "\(threadCounts.lowerBound) to \(threadCounts.upperBound)")
        do { _ = try timing.resolved(clipSeconds: clip) } catch let e as DetectionTimingError {
            throw ConfigError(key: e.field, message: "\(render(e.value)) is not allowed; expected \(e.expected)")
        }
        for (i, event) in events.enumerated() {
            try require(!event.trimmingCharacters(in: .whitespaces).isEmpty, "events[\(i)]", event,
                        "an event name (run 'htsatd events' to list them)")
            guard !events[..<i].contains(event) else {
                throw ConfigError(key: "events[\(i)]", message: "\(render(event)) is listed twice; list each event once")
            }
        }
        // The rules are EventSettings' own; only the key names are added here.
        for (path, settings) in [("defaults", defaults)] + eventSettings.keys.sorted().map({ (Self.keyPath("event_settings", $0), settings(for: $0)) }) {
            do { try settings.validate(event: path) } catch let e as EventSettingsError {
                throw ConfigError(key: "\(path).\(e.field)", message: "\(e.value) is not allowed; expected \(e.expected)")
            }
        }
        try require(!(outputs.socket?.isEmpty ?? false), "outputs.socket", "", "a socket path, or null for none")
        try require(outputs.socketMode <= 0o777, "outputs.socket_mode", String(outputs.socketMode, radix: 8), "three octal digits such as \"0660\"")
        try require(outputs.socketGroup.map { getgrnam($0) != nil } ?? true, "outputs.socket_group", outputs.socketGroup ?? "",
                    "an existing group name (see /etc/group), e.g. \"audio\"")
        try require(!(outputs.logFile?.isEmpty ?? false), "outputs.log_file", "", "a file path, or null for none")
        let backlogs = Self.maxClientBacklogRange
        try require(backlogs.contains(outputs.maxClientBacklog), "outputs.max_client_backlog", outputs.maxClientBacklog,
                    "\(backlogs.lowerBound) to \(backlogs.upperBound) bytes")
        try mqtt.check()
        try require(statsInterval.isFinite && statsInterval >= 0, "stats_interval", statsInterval, "seconds, 0 or more (0 disables statistics)")
        try require(metricsListen.map { MetricsListener.parse($0) != nil } ?? true, "metrics_listen", metricsListen ?? "",
                    "HOST:PORT such as \"127.0.0.1:9464\", or \"unix:/run/htsatd/metrics.sock\", or null for none")
        try clips.check()
    }

    /// `parent.name`, quoting names that are not plain identifiers (AudioSet labels have spaces and commas).
    static func keyPath(_ parent: String, _ name: String) -> String {
        let plain = !name.isEmpty && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-" }
        let part = plain ? name : quote(name)
        return parent.isEmpty ? part : "\(parent).\(part)"
    }
}

/// A configuration problem: where (file, line:column, key path) and what is wrong, with what is allowed.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The configuration file, when the problem came from one.
    public var source: String?
    /// 1-based position in the file, when known.
    public var line: Int?, column: Int?
    /// Dotted key path, e.g. `outputs.socket_mode` or `events[2]`.
    public var key: String?
    /// What is wrong and what is allowed.
    public var message: String

    public init(source: String? = nil, line: Int? = nil, column: Int? = nil, key: String? = nil, message: String) {
        (self.source, self.line, self.column, self.key, self.message) = (source, line, column, key, message)
    }

    public var description: String {
        var out = ""
        if let source {
            out += source + (line.map { ":\($0)" + (column.map { ":\($0)" } ?? "") } ?? "") + ": "
        } else if let line {
            out += "line \(line)" + (column.map { ", column \($0)" } ?? "") + ": "
        }
        return out + (key.map { "\($0): " } ?? "") + message
    }
}

/// A short rendering of a value for messages (Floats print their shortest form: 0.6, not 0.6000000238418579).
private func render(_ value: Any) -> String {
    switch value {
    case let s as String: return quote(s)
    case let d as Double where d.isFinite && d == d.rounded() && abs(d) < 1e15: return String(Int(d))
    default: return "\(value)"
    }
}
