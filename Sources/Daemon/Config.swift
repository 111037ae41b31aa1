import Detection
import Foundation
import Logging

/// The daemon's configuration: a JSON file (`--config PATH`), then command-line flags set on top.
///
/// `parse`/`load` check types, keys and every single value; call `validate()` again after applying
/// command-line overrides (it also requires at least one event, which may come from `--events`).
/// Keys starting with `_` are documentation and ignored at every level (JSON has no comments).
public struct DaemonConfig: Equatable, Sendable {
    /// Signal parameters of the official HTS-AT training setups (config.py / esc_config.py).
    public enum Preset: String, CaseIterable, Sendable {
        case audioset, esc50, scv2

        /// Sample rate in Hz: 16 kHz for Speech Commands, 32 kHz otherwise.
        public var sampleRate: Int { self == .scv2 ? 16000 : 32000 }
        /// STFT hop in samples (10 ms).
        public var hopSize: Int { self == .scv2 ? 160 : 320 }
        /// Samples per model window: all three train on 10-s inputs (ESC-50 doubles its 5-s clips,
        /// Speech Commands repeats its 1-s clips up to `clip_samples`).
        public var clipSamples: Int { sampleRate * 10 }
    }

    /// Arithmetic of the network's linear layers.
    public enum Precision: String, CaseIterable, Sendable {
        /// Output-identical to the official model (default).
        case float32
        /// Opt-in, AVX512-BF16 CPUs only: about 40 % faster, scores drift by about 1e-3.
        case bfloat16
    }

    /// The effective signal parameters: the preset's, with any overrides applied.
    public struct Signal: Equatable, Sendable {
        public var sampleRate: Int
        public var hopSize: Int
        public var clipSamples: Int

        public init(sampleRate: Int, hopSize: Int, clipSamples: Int) {
            self.sampleRate = sampleRate
            self.hopSize = hopSize
            self.clipSamples = clipSamples
        }

        /// Window length in seconds.
        public var clipSeconds: Double { Double(clipSamples) / Double(sampleRate) }
    }

    /// Per-event changes to `defaults`; nil fields inherit the default.
    public struct EventOverrides: Equatable, Sendable {
        public var onThreshold: Float?
        public var offThreshold: Float?
        public var minDuration: Double?
        public var mergeGap: Double?
        /// nil inherits the default; `.some(nil)` (JSON `null`) removes the limit for this event.
        public var maxDuration: Double??

        public init(onThreshold: Float? = nil, offThreshold: Float? = nil, minDuration: Double? = nil,
                    mergeGap: Double? = nil, maxDuration: Double?? = nil) {
            self.onThreshold = onThreshold
            self.offThreshold = offThreshold
            self.minDuration = minDuration
            self.mergeGap = mergeGap
            self.maxDuration = maxDuration
        }

        /// `base` with the fields set here replaced.
        public func applied(to base: EventSettings) -> EventSettings {
            var s = base
            if let onThreshold { s.onThreshold = onThreshold }
            if let offThreshold { s.offThreshold = offThreshold }
            if let minDuration { s.minDuration = minDuration }
            if let mergeGap { s.mergeGap = mergeGap }
            if let maxDuration { s.maxDuration = maxDuration }
            return s
        }
    }

    /// Where event lines go.
    public struct Outputs: Equatable, Sendable {
        /// Write event lines to standard output.
        public var stdout = true
        /// Unix stream socket path serving event lines to any number of readers; nil for none.
        public var socket: String?
        /// Permission bits of the socket file.
        public var socketMode: UInt32 = 0o660
        /// Group name for the socket file (its members may connect at mode 0660); nil keeps the process's group.
        public var socketGroup: String?
        /// Append event lines to this file (reopened on SIGHUP); nil for none.
        public var logFile: String?
        /// A socket reader further behind than this many bytes is disconnected.
        public var maxClientBacklog = 256 * 1024

        public init() {}
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

    /// HTS-AT checkpoint (.ckpt); relative paths in a file are relative to the file's directory.
    public var model = DaemonConfig.defaultModelPath
    /// AudioSet class_labels_indices.csv; nil means the one beside the model.
    public var labels: String?
    /// Signal parameters the checkpoint was trained with.
    public var preset = Preset.audioset
    /// Overrides of the preset's sample rate (Hz), hop (samples) and window (samples).
    public var sampleRate: Int?
    public var hopSize: Int?
    public var clipSamples: Int?
    /// ALSA PCM name to capture from.
    public var device = "default"
    /// ALSA period length in milliseconds.
    public var periodMs = 32
    /// Exit (for systemd to restart) instead of reopening the device after a capture error.
    public var exitOnDeviceError = false
    /// Seconds between successive model windows.
    public var hopSeconds = 1.0
    /// Inference threads.
    public var threads = 1
    /// Arithmetic of the network: float32 (parity with the official model) or the opt-in bfloat16 path.
    public var precision = Precision.float32
    /// Seconds a fused score waits for later overlapping windows before it is final; nil for the default.
    public var settleSeconds: Double?
    /// Lag of the provisional read-out that announces starts early (0 ... settle); nil uses the built-in default.
    public var onsetSettleSeconds: Double?
    /// Event names (built-in groups or AudioSet labels), resolved later by `EventCatalog`.
    public var events: [String] = []
    /// Per-event overrides keyed by the name as written in `events`.
    public var eventSettings: [String: EventOverrides] = [:]
    /// Settings of every event unless overridden.
    public var defaults = DaemonConfig.defaultEventSettings
    /// Output sinks.
    public var outputs = Outputs()
    /// Seconds between statistics log lines; 0 disables them.
    public var statsInterval = 60.0
    /// Minimum level of diagnostic log lines (stderr / journal).
    public var logLevel = Logger.Level.info

    /// The built-in defaults.
    public init() {}

    /// The label file: `labels`, or class_labels_indices.csv in the model's directory.
    public var labelsPath: String { labels ?? Self.labelsPath(besideModel: model) }

    /// class_labels_indices.csv in the directory of the checkpoint at `model`.
    public static func labelsPath(besideModel model: String) -> String {
        URL(fileURLWithPath: model).deletingLastPathComponent().appendingPathComponent(labelsFileName).path
    }

    /// The preset's signal parameters with any overrides applied.
    public var signal: Signal {
        Signal(sampleRate: sampleRate ?? preset.sampleRate, hopSize: hopSize ?? preset.hopSize,
               clipSamples: clipSamples ?? preset.clipSamples)
    }

    /// The settings of `event` (a name as written in `events`): `defaults` with its overrides applied.
    public func settings(for event: String) -> EventSettings {
        eventSettings[event]?.applied(to: defaults) ?? defaults
    }

    /// Names in `event_settings` that are not in `events` (worth a warning: likely a typo).
    public var unusedEventSettings: [String] {
        eventSettings.keys.filter { !events.contains($0) }.sorted()
    }

    // MARK: - Loading

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
            let root = try JSONParser.parse([UInt8](data))
            var config = DaemonConfig()
            try config.read(root)
            try config.checkValues()
            return config
        } catch var error as ConfigError {
            error.source = source
            throw error
        }
    }

    /// Full check, for after command-line overrides: every value, and at least one event.
    public func validate() throws {
        try checkValues()
        guard !events.isEmpty else {
            throw ConfigError(key: "events", message: "no events selected; list them in \"events\" or pass --events (run 'htsatd events' for names)")
        }
    }

    /// Makes relative file paths relative to `directory` (the config file's), since a daemon's cwd is arbitrary.
    mutating func resolvePaths(relativeTo directory: URL) {
        func resolve(_ path: String) -> String {
            path.hasPrefix("/") ? path : directory.appendingPathComponent(path).standardized.path
        }
        model = resolve(model)
        labels = labels.map(resolve)
        outputs.socket = outputs.socket.map(resolve)
        outputs.logFile = outputs.logFile.map(resolve)
    }

    // MARK: - Keys

    /// Top-level keys, in documentation order.
    public static let topLevelKeys = [
        "model", "labels", "preset", "sample_rate", "hop_size", "clip_samples",
        "device", "period_ms", "exit_on_device_error",
        "hop_seconds", "threads", "precision", "settle_seconds", "onset_settle_seconds",
        "events", "event_settings", "defaults", "outputs",
        "stats_interval", "log_level",
    ]
    /// Keys of `outputs`.
    public static let outputKeys = ["stdout", "socket", "socket_mode", "socket_group", "log_file", "max_client_backlog"]
    /// Keys of `defaults` and of each `event_settings` entry.
    public static let eventSettingKeys = ["on_threshold", "off_threshold", "min_duration", "merge_gap", "max_duration"]

    private mutating func read(_ root: JSONValue) throws {
        let top = try Members(root, path: "", allowed: Self.topLevelKeys)
        if let m = top["model"] { model = try m.filePath() }
        if let m = top["labels"] { labels = try m.nullable { try $0.filePath() } }
        if let m = top["preset"] {
            let name = try m.string()
            guard let preset = Preset(rawValue: name) else {
                throw m.error("\(render(name)) is not a preset; allowed: \(Preset.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.preset = preset
        }
        if let m = top["sample_rate"] { sampleRate = try m.nullable { try $0.integer() } }
        if let m = top["hop_size"] { hopSize = try m.nullable { try $0.integer() } }
        if let m = top["clip_samples"] { clipSamples = try m.nullable { try $0.integer() } }
        if let m = top["device"] { device = try m.string() }
        if let m = top["period_ms"] { periodMs = try m.integer() }
        if let m = top["exit_on_device_error"] { exitOnDeviceError = try m.bool() }
        if let m = top["hop_seconds"] { hopSeconds = try m.number() }
        if let m = top["threads"] { threads = try m.integer() }
        if let m = top["precision"] {
            let name = try m.string()
            guard let precision = Precision(rawValue: name) else {
                throw m.error("\(render(name)) is not a precision; allowed: \(Precision.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self.precision = precision
        }
        if let m = top["settle_seconds"] { settleSeconds = try m.nullable { try $0.number() } }
        if let m = top["onset_settle_seconds"] { onsetSettleSeconds = try m.nullable { try $0.number() } }
        if let m = top["events"] { events = try m.array().map { try $0.string() } }
        if let m = top["defaults"] {
            defaults = try Self.readOverrides(m.value, path: "defaults").applied(to: defaults)
        }
        if let m = top["event_settings"] {
            // Any name is allowed here: names are resolved later, against the label file.
            let entries = try Members(m.value, path: "event_settings", allowed: nil)
            for entry in entries.list {
                eventSettings[entry.key] = try Self.readOverrides(entry.value, path: entry.path)
            }
        }
        if let m = top["outputs"] {
            let o = try Members(m.value, path: "outputs", allowed: Self.outputKeys)
            if let m = o["stdout"] { outputs.stdout = try m.bool() }
            if let m = o["socket"] { outputs.socket = try m.nullable { try $0.filePath() } }
            if let m = o["socket_mode"] { outputs.socketMode = try Self.readMode(m) }
            if let m = o["socket_group"] { outputs.socketGroup = try m.nullable { try $0.string() } }
            if let m = o["log_file"] { outputs.logFile = try m.nullable { try $0.filePath() } }
            if let m = o["max_client_backlog"] { outputs.maxClientBacklog = try m.integer() }
        }
        if let m = top["stats_interval"] { statsInterval = try m.number() }
        if let m = top["log_level"] {
            let name = try m.string()
            guard let level = Logger.Level(rawValue: name) else {
                throw m.error("\(render(name)) is not a log level; allowed: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            logLevel = level
        }
    }

    private static func readOverrides(_ value: JSONValue, path: String) throws -> EventOverrides {
        let s = try Members(value, path: path, allowed: eventSettingKeys)
        var o = EventOverrides()
        if let m = s["on_threshold"] { o.onThreshold = try Float(m.number()) }
        if let m = s["off_threshold"] { o.offThreshold = try Float(m.number()) }
        if let m = s["min_duration"] { o.minDuration = try m.number() }
        if let m = s["merge_gap"] { o.mergeGap = try m.number() }
        if let m = s["max_duration"] {
            let limit = try m.nullable { try $0.number() }
            o.maxDuration = .some(limit)
        }
        return o
    }

    /// Socket permissions from an octal string ("0660" or "660"), as `outputs.socket_mode` and `--socket-mode` take them.
    public static func parseSocketMode(_ text: String) -> UInt32? {
        let digits = text.count == 4 && text.hasPrefix("0") ? String(text.dropFirst()) : text
        guard digits.count == 3, digits.allSatisfy({ ("0"..."7").contains($0) }) else { return nil }
        return UInt32(digits, radix: 8)
    }

    /// A JSON number would be read as decimal (660 is not 0660), so only strings are accepted.
    private static func readMode(_ m: Member) throws -> UInt32 {
        guard case .string(let text) = m.value else {
            throw m.error("expected an octal string such as \"0660\", got \(render(m.value))")
        }
        guard let mode = parseSocketMode(text) else {
            throw m.error("\(render(text)) is not a permission mode; expected three octal digits such as \"0660\"")
        }
        return mode
    }

    // MARK: - Validation

    /// Checks every single value and the relations between them (everything but `events` being non-empty).
    private func checkValues() throws {
        func require(_ ok: Bool, _ key: String, _ value: Any, _ allowed: String) throws {
            if !ok { throw ConfigError(key: key, message: "\(render(value)) is not allowed; expected \(allowed)") }
        }
        try require(!model.isEmpty, "model", model, "a path to an HTS-AT checkpoint")
        if let labels { try require(!labels.isEmpty, "labels", labels, "a path to class_labels_indices.csv, or null") }
        if let sampleRate {
            try require(Self.sampleRateRange.contains(sampleRate), "sample_rate", sampleRate,
                        "a rate in Hz from \(Self.sampleRateRange.lowerBound) to \(Self.sampleRateRange.upperBound), or null for the preset's")
        }
        let signal = self.signal
        if let hopSize {
            try require(hopSize >= 1 && hopSize <= signal.sampleRate, "hop_size", hopSize,
                        "1 to \(signal.sampleRate) samples (the sample rate), or null for the preset's")
        }
        if let clipSamples {
            let most = signal.sampleRate * 60
            try require(clipSamples >= signal.hopSize && clipSamples <= most, "clip_samples", clipSamples,
                        "\(signal.hopSize) (one hop) to \(most) samples (60 s), or null for the preset's")
        }
        try require(!device.isEmpty, "device", device, "an ALSA PCM name such as \"default\" or \"plughw:CARD=Mic\"")
        try require(Self.periodMsRange.contains(periodMs), "period_ms", periodMs,
                    "\(Self.periodMsRange.lowerBound) to \(Self.periodMsRange.upperBound) ms")
        let clip = signal.clipSeconds
        try require(hopSeconds.isFinite && hopSeconds > 0 && hopSeconds <= clip, "hop_seconds", hopSeconds,
                    "more than 0 and at most the window length, \(render(clip)) s")
        try require(Self.threadsRange.contains(threads), "threads", threads,
                    "\(Self.threadsRange.lowerBound) to \(Self.threadsRange.upperBound)")
        if let settleSeconds {
            try require(settleSeconds.isFinite && settleSeconds >= 0 && settleSeconds <= clip, "settle_seconds", settleSeconds,
                        "0 to the window length, \(render(clip)) s, or null for the default")
        }
        if let onsetSettleSeconds {
            let settle = settleSeconds ?? Detector.defaultSettle(clipSeconds: clip, hopSeconds: hopSeconds)
            try require(onsetSettleSeconds.isFinite && onsetSettleSeconds >= 0 && onsetSettleSeconds <= settle,
                        "onset_settle_seconds", onsetSettleSeconds,
                        "0 to settle_seconds (\(render(settle)) s), or null for the default")
        }
        var seen: Set<String> = []
        for (i, event) in events.enumerated() {
            try require(!event.trimmingCharacters(in: .whitespaces).isEmpty, "events[\(i)]", event,
                        "an event name (run 'htsatd events' to list them)")
            guard seen.insert(event).inserted else {
                throw ConfigError(key: "events[\(i)]", message: "\(render(event)) is listed twice; list each event once")
            }
        }
        try Self.check(defaults, path: "defaults")
        for name in eventSettings.keys.sorted() {
            try require(!name.isEmpty, "event_settings", name, "event names as keys")
            try Self.check(settings(for: name), path: Self.keyPath("event_settings", name))
        }
        try require(!(outputs.socket?.isEmpty ?? false), "outputs.socket", "", "a socket path, or null for none")
        try require(outputs.socketMode <= 0o777, "outputs.socket_mode", String(outputs.socketMode, radix: 8),
                    "three octal digits such as \"0660\"")
        if let group = outputs.socketGroup {
            try require(getgrnam(group) != nil, "outputs.socket_group", group, "an existing group name (see /etc/group), e.g. \"audio\"")
        }
        try require(!(outputs.logFile?.isEmpty ?? false), "outputs.log_file", "", "a file path, or null for none")
        try require(Self.maxClientBacklogRange.contains(outputs.maxClientBacklog), "outputs.max_client_backlog",
                    outputs.maxClientBacklog,
                    "\(Self.maxClientBacklogRange.lowerBound) to \(Self.maxClientBacklogRange.upperBound) bytes")
        try require(statsInterval.isFinite && statsInterval >= 0, "stats_interval", statsInterval,
                    "seconds, 0 or more (0 disables statistics)")
    }

    /// The same rules as `EventSettings.validate`, but naming the configuration key.
    private static func check(_ s: EventSettings, path: String) throws {
        func fail(_ key: String, _ value: Any, _ allowed: String) -> ConfigError {
            ConfigError(key: "\(path).\(key)", message: "\(render(value)) is not allowed; expected \(allowed)")
        }
        guard s.onThreshold > 0, s.onThreshold < 1 else { throw fail("on_threshold", s.onThreshold, "a score between 0 and 1 (exclusive)") }
        guard s.offThreshold > 0, s.offThreshold < 1 else { throw fail("off_threshold", s.offThreshold, "a score between 0 and 1 (exclusive)") }
        guard s.offThreshold <= s.onThreshold else {
            throw fail("off_threshold", s.offThreshold,
                       "at most on_threshold (\(render(s.onThreshold))): the event ends when the score falls below off_threshold")
        }
        guard s.minDuration.isFinite, s.minDuration >= 0 else { throw fail("min_duration", s.minDuration, "seconds, 0 or more") }
        guard s.mergeGap.isFinite, s.mergeGap >= 0 else { throw fail("merge_gap", s.mergeGap, "seconds, 0 or more") }
        if let maxDuration = s.maxDuration {
            guard maxDuration.isFinite, maxDuration > 0, maxDuration >= s.minDuration else {
                throw fail("max_duration", maxDuration, "seconds, at least min_duration (\(render(s.minDuration))), or null for no limit")
            }
        }
    }

    /// `parent.name`, quoting names that are not plain identifiers (AudioSet labels have spaces and commas).
    static func keyPath(_ parent: String, _ name: String) -> String {
        let plain = !name.isEmpty && name.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-"
        }
        let part = plain ? name : render(name)
        return parent.isEmpty ? part : "\(parent).\(part)"
    }
}

/// A configuration problem: where (file, line:column, key path) and what is wrong, with what is allowed.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    /// The configuration file, when the problem came from one.
    public var source: String?
    /// 1-based position in the file, when known.
    public var line: Int?
    public var column: Int?
    /// Dotted key path, e.g. `outputs.socket_mode` or `events[2]`.
    public var key: String?
    /// What is wrong and what is allowed.
    public var message: String

    public init(source: String? = nil, line: Int? = nil, column: Int? = nil, key: String? = nil, message: String) {
        self.source = source
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        var out = ""
        if let source {
            out += source
            if let line { out += ":\(line)" + (column.map { ":\($0)" } ?? "") }
            out += ": "
        } else if let line {
            out += "line \(line)" + (column.map { ", column \($0)" } ?? "") + ": "
        }
        if let key { out += "\(key): " }
        return out + message
    }
}

// MARK: - Reading JSON objects

/// One member of a JSON object, with its key path and position for error messages.
private struct Member {
    let key: String
    let path: String
    let value: JSONValue
    let line: Int
    let column: Int

    func error(_ message: String) -> ConfigError {
        ConfigError(line: line, column: column, key: path, message: message)
    }

    private func expected(_ what: String) -> ConfigError { error("expected \(what), got \(render(value))") }

    func string() throws -> String {
        guard case .string(let s) = value else { throw expected("a string") }
        return s
    }

    func filePath() throws -> String {
        guard case .string(let s) = value, !s.isEmpty else { throw expected("a file path (a non-empty string)") }
        return s
    }

    func bool() throws -> Bool {
        guard case .bool(let b) = value else { throw expected("true or false") }
        return b
    }

    func number() throws -> Double {
        guard case .number(let n) = value else { throw expected("a number") }
        return n
    }

    func integer() throws -> Int {
        guard case .number(let n) = value, n == n.rounded(), abs(n) < 1e15 else { throw expected("an integer") }
        return Int(n)
    }

    func array() throws -> [Member] {
        guard case .array(let items) = value else { throw expected("an array") }
        return items.enumerated().map { Member(key: key, path: "\(path)[\($0.offset)]", value: $0.element, line: line, column: column) }
    }

    /// nil for JSON null, else `read(self)`.
    func nullable<T>(_ read: (Member) throws -> T) throws -> T? {
        if case .null = value { return nil }
        return try read(self)
    }
}

/// A JSON object's members, checked against the allowed keys; `_`-prefixed keys (documentation) are dropped.
private struct Members {
    let list: [Member]

    init(_ value: JSONValue, path: String, allowed: [String]?) throws {
        guard case .object(let members) = value else {
            throw ConfigError(key: path.isEmpty ? nil : path,
                              message: "expected an object { ... }, got \(render(value))")
        }
        var list: [Member] = []
        var seen: Set<String> = []
        for m in members where !m.key.hasPrefix("_") {
            let keyPath = DaemonConfig.keyPath(path, m.key)
            if let allowed, !allowed.contains(m.key) {
                throw ConfigError(line: m.line, column: m.column, key: keyPath,
                                  message: "unknown key; allowed keys\(path.isEmpty ? "" : " in \(path)"): \(allowed.joined(separator: ", "))")
            }
            guard seen.insert(m.key).inserted else {
                throw ConfigError(line: m.line, column: m.column, key: keyPath, message: "duplicate key; give each key once")
            }
            list.append(Member(key: m.key, path: keyPath, value: m.value, line: m.line, column: m.column))
        }
        self.list = list
    }

    subscript(key: String) -> Member? { list.first { $0.key == key } }
}

/// A short, JSON-like rendering of a value for messages.
private func render(_ value: Any) -> String {
    switch value {
    case let s as String:
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    case let f as Float:
        // Via its shortest description, so 0.6 does not print as 0.6000000238418579.
        return render(Double(f.description) ?? Double(f))
    case let d as Double:
        if d.isFinite, d == d.rounded(), abs(d) < 1e15 { return String(Int(d)) }
        return String(d)
    case let j as JSONValue:
        switch j {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .number(let n): return render(n)
        case .string(let s): return render(s) + " (a string)"
        case .array: return "an array"
        case .object: return "an object"
        }
    default:
        return String(describing: value)
    }
}

// MARK: - JSON

/// A parsed JSON value; objects keep their member order and positions for error messages.
enum JSONValue {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue, line: Int, column: Int)])
}

/// A strict RFC 8259 parser that reports line and column; Foundation's parsers give neither
/// (and JSONSerialization cannot tell `true` from `1`).
struct JSONParser {
    private let bytes: [UInt8]
    private var pos = 0
    private var line = 1
    private var lineStart = 0
    private var depth = 0
    private static let maxDepth = 64

    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        // A UTF-8 byte order mark is harmless; skip it.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { parser.pos = 3; parser.lineStart = 3 }
        parser.skipWhitespace()
        guard parser.pos < bytes.count else { throw parser.error("the file is empty; expected a JSON object { ... }") }
        let value = try parser.parseValue()
        parser.skipWhitespace()
        guard parser.pos == bytes.count else { throw parser.error("unexpected text after the end of the JSON document") }
        return value
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    /// Column in characters (UTF-8 continuation bytes do not count).
    private func column(at offset: Int) -> Int {
        var column = 1
        var i = lineStart
        while i < offset && i < bytes.count {
            if bytes[i] & 0xC0 != 0x80 { column += 1 }
            i += 1
        }
        return column
    }

    private func error(_ message: String, at offset: Int? = nil) -> ConfigError {
        ConfigError(line: line, column: column(at: offset ?? pos), message: "invalid JSON: \(message)")
    }

    private var current: UInt8? { pos < bytes.count ? bytes[pos] : nil }

    private func describeCurrent() -> String {
        guard let c = current else { return "the end of the file" }
        if c >= 0x20 && c < 0x7F { return "'\(Character(UnicodeScalar(c)))'" }
        return String(format: "byte 0x%02X", c)
    }

    private mutating func skipWhitespace() {
        while let c = current {
            switch c {
            case 0x20, 0x09, 0x0D: pos += 1
            case 0x0A: pos += 1; line += 1; lineStart = pos
            default: return
            }
        }
    }

    private mutating func expect(_ literal: String, _ value: JSONValue) throws -> JSONValue {
        let start = pos
        for byte in literal.utf8 {
            guard current == byte else { throw error("unknown word; expected a value such as \"text\", 1, true, false or null", at: start) }
            pos += 1
        }
        return value
    }

    private mutating func parseValue() throws -> JSONValue {
        guard let c = current else { throw error("expected a value, found the end of the file") }
        switch c {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw error("expected a value, found \(describeCurrent())")
        }
    }

    private mutating func nest() throws {
        depth += 1
        guard depth <= Self.maxDepth else { throw error("nested more than \(Self.maxDepth) levels deep") }
    }

    private mutating func parseObject() throws -> JSONValue {
        try nest()
        pos += 1
        var members: [(key: String, value: JSONValue, line: Int, column: Int)] = []
        skipWhitespace()
        if current == UInt8(ascii: "}") { pos += 1; depth -= 1; return .object(members) }
        while true {
            skipWhitespace()
            guard current == UInt8(ascii: "\"") else {
                throw error("expected a key in double quotes, found \(describeCurrent())"
                            + (current == UInt8(ascii: "}") ? " (JSON allows no trailing comma)" : ""))
            }
            let keyLine = line, keyColumn = column(at: pos)
            let key = try parseString()
            skipWhitespace()
            guard current == UInt8(ascii: ":") else { throw error("expected ':' after the key \"\(key)\", found \(describeCurrent())") }
            pos += 1
            skipWhitespace()
            members.append((key, try parseValue(), keyLine, keyColumn))
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "}"): pos += 1; depth -= 1; return .object(members)
            default: throw error("expected ',' or '}' after the value of \"\(key)\", found \(describeCurrent())")
            }
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        try nest()
        pos += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if current == UInt8(ascii: "]") { pos += 1; depth -= 1; return .array(items) }
        while true {
            skipWhitespace()
            if current == UInt8(ascii: "]") { throw error("expected a value, found ']' (JSON allows no trailing comma)") }
            items.append(try parseValue())
            skipWhitespace()
            switch current {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "]"): pos += 1; depth -= 1; return .array(items)
            default: throw error("expected ',' or ']' in the array, found \(describeCurrent())")
            }
        }
    }

    private mutating func parseNumber() throws -> Double {
        let start = pos
        func digits() -> Int {
            let from = pos
            while let c = current, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") { pos += 1 }
            return pos - from
        }
        if current == UInt8(ascii: "-") { pos += 1 }
        if current == UInt8(ascii: "0") {
            pos += 1
        } else if digits() == 0 {
            throw error("expected a digit, found \(describeCurrent())")
        }
        if current == UInt8(ascii: ".") {
            pos += 1
            guard digits() > 0 else { throw error("expected a digit after the decimal point, found \(describeCurrent())") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            pos += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { pos += 1 }
            guard digits() > 0 else { throw error("expected a digit in the exponent, found \(describeCurrent())") }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw error("number \(text) is out of range", at: start) }
        return value
    }

    private mutating func parseString() throws -> String {
        let start = pos
        pos += 1
        var out: [UInt8] = []
        while true {
            guard let c = current else { throw error("unterminated string", at: start) }
            switch c {
            case UInt8(ascii: "\""):
                pos += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw error("the string is not valid UTF-8", at: start) }
                return s
            case UInt8(ascii: "\\"):
                pos += 1
                guard let e = current else { throw error("unterminated string", at: start) }
                pos += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code) {
                        // A high surrogate must be followed by \u and a low surrogate.
                        guard current == UInt8(ascii: "\\"), pos + 1 < bytes.count, bytes[pos + 1] == UInt8(ascii: "u") else {
                            throw error("unpaired surrogate in \\u escape")
                        }
                        pos += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in \\u escape") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let scalar = UnicodeScalar(code) else { throw error("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw error("invalid escape '\\\(Character(UnicodeScalar(e)))' in a string", at: pos - 2)
                }
            default:
                guard c >= 0x20 else {
                    throw error(c == 0x0A ? "unterminated string (a line break inside quotes)" : "control character in a string")
                }
                out.append(c)
                pos += 1
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        var code: UInt32 = 0
        for _ in 0..<4 {
            guard let c = current, let digit = UInt32(String(UnicodeScalar(c)), radix: 16) else {
                throw error("expected four hex digits after \\u")
            }
            code = code * 16 + digit
            pos += 1
        }
        return code
    }
}
