import Detection
import Foundation
import Logging

/// The daemon's configuration: a JSON file (`--config PATH`), then command-line flags set on top.
///
/// `parse`/`load` check types, keys and every single value; call `validate()` again after applying
/// command-line overrides (it also requires at least one event, which may come from `--events`).
/// The file may hold `//` and `/* */` comments; keys starting with `_` are documentation too, ignored at every level.
public struct DaemonConfig: Equatable, Sendable, Decodable {
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
            // Unreachable if ConfigSyntax accepts only what JSONDecoder does; still a ConfigError, not a crash.
            throw ConfigError(source: source, message: "\(error)")
        }
    }

    /// The documentation in a configuration file by key path (`outputs.socket`; "" for the file's header):
    /// the comments just before each key, or the text of its `"_key"` entry.
    public static func documentation(data: Data) throws -> [String: String] {
        try ConfigSyntax([UInt8](data)).docs
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

    /// Socket permissions from an octal string ("0660" or "660"), as `outputs.socket_mode` and `--socket-mode` take them.
    public static func parseSocketMode(_ text: String) -> UInt32? {
        let digits = text.count == 4 && text.hasPrefix("0") ? String(text.dropFirst()) : text
        guard digits.count == 3, digits.allSatisfy({ ("0"..."7").contains($0) }) else { return nil }
        return UInt32(digits, radix: 8)
    }

    // MARK: - Decoding

    /// Decodes the file's top-level object; through `parse`, errors carry each key's line:column.
    public init(from decoder: Decoder) throws {
        self.init()
        let top = try ConfigValue(decoder).object(allowed: Self.topLevelKeys)
        model = try top["model"]?.path() ?? model
        labels = try top["labels"].nullable { try $0.path() } ?? labels
        preset = try top["preset"]?.choice("a preset") ?? preset
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
        events = try top["events"]?.array().map { try $0.string() } ?? events
        defaults = try top["defaults"].map { try EventOverrides(from: $0.decoder).applied(to: defaults) } ?? defaults
        // Any name is allowed here: names are resolved later, against the label file.
        eventSettings = try top["event_settings"]?.object(allowed: nil).mapValues { try EventOverrides(from: $0.decoder) } ?? [:]
        outputs = try top["outputs"].map { try Outputs(from: $0.decoder) } ?? outputs
        statsInterval = try top["stats_interval"]?.number() ?? statsInterval
        logLevel = try top["log_level"]?.choice("a log level") ?? logLevel
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
                        "onset_settle_seconds", onsetSettleSeconds, "0 to settle_seconds (\(render(settle)) s), or null for the default")
        }
        for (i, event) in events.enumerated() {
            try require(!event.trimmingCharacters(in: .whitespaces).isEmpty, "events[\(i)]", event,
                        "an event name (run 'htsatd events' to list them)")
            guard !events[..<i].contains(event) else {
                throw ConfigError(key: "events[\(i)]", message: "\(render(event)) is listed twice; list each event once")
            }
        }
        // The rules are EventSettings' own; only the key names are added here.
        func check(_ settings: EventSettings, _ path: String) throws {
            do { try settings.validate(event: path) } catch let e as EventSettingsError {
                throw ConfigError(key: "\(path).\(e.field)", message: "\(e.value) is not allowed; expected \(e.expected)")
            }
        }
        try check(defaults, "defaults")
        for name in eventSettings.keys.sorted() {
            try require(!name.isEmpty, "event_settings", name, "event names as keys")
            try check(settings(for: name), Self.keyPath("event_settings", name))
        }
        try require(!(outputs.socket?.isEmpty ?? false), "outputs.socket", "", "a socket path, or null for none")
        try require(outputs.socketMode <= 0o777, "outputs.socket_mode", String(outputs.socketMode, radix: 8),
                    "three octal digits such as \"0660\"")
        if let group = outputs.socketGroup {
            try require(getgrnam(group) != nil, "outputs.socket_group", group, "an existing group name (see /etc/group), e.g. \"audio\"")
        }
        try require(!(outputs.logFile?.isEmpty ?? false), "outputs.log_file", "", "a file path, or null for none")
        try require(Self.maxClientBacklogRange.contains(outputs.maxClientBacklog), "outputs.max_client_backlog",
                    outputs.maxClientBacklog, "\(Self.maxClientBacklogRange.lowerBound) to \(Self.maxClientBacklogRange.upperBound) bytes")
        try require(statsInterval.isFinite && statsInterval >= 0, "stats_interval", statsInterval,
                    "seconds, 0 or more (0 disables statistics)")
    }

    /// `parent.name`, quoting names that are not plain identifiers (AudioSet labels have spaces and commas).
    static func keyPath(_ parent: String, _ name: String) -> String {
        let plain = !name.isEmpty && name.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-"
        }
        let part = plain ? name : quote(name)
        return parent.isEmpty ? part : "\(parent).\(part)"
    }
}

extension DaemonConfig.EventOverrides: Decodable {
    /// Decodes `defaults` or an `event_settings` entry.
    public init(from decoder: Decoder) throws {
        let o = try ConfigValue(decoder).object(allowed: DaemonConfig.eventSettingKeys)
        self.init(onThreshold: try o["on_threshold"].map { Float(try $0.number()) },
                  offThreshold: try o["off_threshold"].map { Float(try $0.number()) },
                  minDuration: try o["min_duration"]?.number(), mergeGap: try o["merge_gap"]?.number(),
                  maxDuration: try o["max_duration"].nullable { try $0.number() })
    }
}

extension DaemonConfig.Outputs: Decodable {
    /// Decodes the `outputs` object.
    public init(from decoder: Decoder) throws {
        self.init()
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

/// One value of the file, read through its Decoder; errors name its key path, line:column and what it holds.
struct ConfigValue {
    static let placesKey = CodingUserInfoKey(rawValue: "htsatd.config.places")!
    let decoder: Decoder

    init(_ decoder: Decoder) { self.decoder = decoder }

    private struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    private func place(_ path: [CodingKey]) -> (name: String, place: ConfigSyntax.Place?) {
        let name = path.reduce("") { p, k in k.intValue.map { "\(p)[\($0)]" } ?? DaemonConfig.keyPath(p, k.stringValue) }
        return (name, (decoder.userInfo[Self.placesKey] as? [String: ConfigSyntax.Place])?[name])
    }

    func error(_ message: String, key: CodingKey? = nil) -> ConfigError {
        let (name, place) = self.place(decoder.codingPath + (key.map { [$0] } ?? []))
        return ConfigError(line: place?.line, column: place?.column, key: name.isEmpty ? nil : name, message: message)
    }

    func mismatch(_ expected: String) -> ConfigError {
        error("expected \(expected), got \(place(decoder.codingPath).place?.shown ?? "another type")")
    }

    private func decode<T: Decodable>(_ expected: String) throws -> T {
        do { return try decoder.singleValueContainer().decode(T.self) } catch is DecodingError { throw mismatch(expected) }
    }

    func string() throws -> String { try decode("a string") }
    func bool() throws -> Bool { try decode("true or false") }
    func number() throws -> Double { try decode("a number") }

    func path() throws -> String {
        guard let path = try? string(), !path.isEmpty else { throw mismatch("a file path (a non-empty string)") }
        return path
    }

    /// Via Double, since JSONDecoder's error for 2.5 as Int has no coding path.
    func integer() throws -> Int {
        guard let n = try? number(), n == n.rounded(), abs(n) < 1e15 else { throw mismatch("an integer") }
        return Int(n)
    }

    func choice<T: CaseIterable & RawRepresentable>(_ what: String) throws -> T where T.RawValue == String {
        let name = try string()
        guard let value = T(rawValue: name) else {
            throw error("\(quote(name)) is not \(what); allowed: \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }

    /// nil for JSON null, else `read(self)`.
    func nullable<T>(_ read: (ConfigValue) throws -> T) throws -> T? {
        try decoder.singleValueContainer().decodeNil() ? nil : read(self)
    }

    func array() throws -> [ConfigValue] {
        guard var items = try? decoder.unkeyedContainer() else { throw mismatch("an array") }
        var values: [ConfigValue] = []
        while !items.isAtEnd { values.append(ConfigValue(try items.superDecoder())) }
        return values
    }

    /// The object's members but `_` documentation entries; any other key not in `allowed` (nil: any) is an error.
    func object(allowed: [String]?) throws -> [String: ConfigValue] {
        guard let object = try? decoder.container(keyedBy: Key.self) else { throw mismatch("an object { ... }") }
        let keys = object.allKeys.filter { !$0.stringValue.hasPrefix("_") }
        func position(_ key: Key) -> [Int] {
            place(decoder.codingPath + [key]).place.map { [$0.line, $0.column] } ?? []
        }
        if let allowed, let unknown = keys.filter({ !allowed.contains($0.stringValue) })
            .min(by: { position($0).lexicographicallyPrecedes(position($1)) }) {
            let parent = place(decoder.codingPath).name
            throw error("unknown key; allowed keys\(parent.isEmpty ? "" : " in \(parent)"): \(allowed.joined(separator: ", "))", key: unknown)
        }
        return try Dictionary(uniqueKeysWithValues: keys.map { ($0.stringValue, ConfigValue(try object.superDecoder(forKey: $0))) })
    }
}

extension Optional where Wrapped == ConfigValue {
    /// nil when the key is absent, `.some(nil)` for JSON null, else `read`'s result.
    func nullable<T>(_ read: (ConfigValue) throws -> T) throws -> T?? { try map { try $0.nullable(read) } }
}

/// A short rendering of a value for messages; Floats via their shortest description (0.6, not 0.6000000238418579).
private func render(_ value: Any) -> String {
    switch value {
    case let s as String: return quote(s)
    case let d as Double where d.isFinite && d == d.rounded() && abs(d) < 1e15: return String(Int(d))
    default: return "\(value)"
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
