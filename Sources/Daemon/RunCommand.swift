import ArgumentParser
import Foundation
import Logging
import SystemSupport

/// The daemon: live ALSA capture (or `--input FILE`) to start/stop event lines. The root command's default.
public struct Run: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Detect sound events live from an ALSA device (the default command), or in a file with --input.",
        discussion: """
        Events are JSON lines on stdout (unless --no-stdout), on a Unix socket (--socket) and in a log file \
        (--log-file). Flags override the configuration file. SIGTERM/SIGINT stop cleanly (open events get their \
        stop line); SIGHUP reopens the log file.
        """
    )

    @Option(help: "JSON configuration file (see config.example.json).") var config: String?
    @Option(help: "Model checkpoint: the official .ckpt, a torch.save state_dict or .safetensors.") var model: String?
    @Option(help: "Labels CSV (index,mid,display_name); default: class_labels_indices.csv beside the model, else the built-in set for its class count.") var labels: String?
    @Option(help: "Check the checkpoint against this preset: audioset, esc50 or scv2 (default: read from the checkpoint).") var preset: String?
    @Option(help: "ALSA capture device, e.g. hw:1, plughw:1,0, default.") var device: String?
    @Option(help: "Comma-separated event names (built-in groups or AudioSet labels; see 'htsatd events').")
    var events: [String] = []
    @Option(name: .customLong("custom-events"), help: "Comma-separated custom event files from 'htsatd enroll'; their names join --events.")
    var customEvents: [String] = []
    @Option(help: "On threshold for every event (the config may override it per event).") var threshold: Float?
    @Option(name: .customLong("off-threshold"), help: "Off threshold for every event (hysteresis).") var offThreshold: Float?
    @Option(help: "Seconds between analysis windows.") var hop: Double?
    @Option(help: "Seconds a fused score waits for more overlapping windows before tracking (latency vs. accuracy).")
    var settle: Double?
    @Option(name: .customLong("onset-settle"), help: "Seconds before a start is announced from the not yet settled score (0 ... settle).")
    var onsetSettle: Double?
    @Option(help: "Inference threads.") var threads: Int?
    @Flag(name: .customLong("bf16"), help: "Opt-in bfloat16 inference (AVX512-BF16 CPUs; scores drift by ~1e-3 from the official model).")
    var bf16 = false
    @Option(help: "Serve events on this Unix socket path (e.g. /run/htsatd/events.sock).") var socket: String?
    @Option(name: .customLong("socket-mode"), help: "Socket file mode, octal (default 0660).") var socketMode: String?
    @Option(name: .customLong("socket-group"), help: "Group of the socket file (its members may connect).") var socketGroup: String?
    @Option(name: .customLong("log-file"), help: "Append events to this file; SIGHUP reopens it.") var logFile: String?
    @Flag(name: .customLong("no-stdout"), help: "Do not write events to stdout.") var noStdout = false
    @Flag(name: .customLong("exit-on-device-error"), help: "Exit non-zero when the device fails instead of retrying.")
    var exitOnDeviceError = false
    @Option(help: "Analyse an audio file (WAV/FLAC/OGG; - reads stdin) as fast as possible, then exit.") var input: String?
    @Option(name: .customLong("stats-interval"), help: "Seconds between stats lines on stderr (0: off).") var statsInterval: Double?
    @Option(name: .customLong("metrics-file"), help: "Write Prometheus metrics to this file every stats interval and at exit.")
    var metricsFile: String?
    @Option(name: .customLong("metrics-listen"), help: "Serve GET /metrics on HOST:PORT (e.g. 127.0.0.1:9464) or unix:PATH.")
    var metricsListen: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?
    @Flag(name: .customLong("pace-realtime"), help: .hidden) var paceRealtime = false
    @Option(help: "Publish to this MQTT broker: mqtt://[user[:password]@]host[:port] or mqtts://... (TLS).") var mqtt: String?
    @Option(name: .customLong("mqtt-node"), help: "Topic level of this daemon, <prefix>/<node>/... (default: the host name).") var mqttNode: String?
    @Option(name: .customLong("mqtt-prefix"), help: "First topic level (default htsatd).") var mqttPrefix: String?
    @Option(name: .customLong("mqtt-username"), help: "MQTT user name.") var mqttUsername: String?
    @Option(name: .customLong("mqtt-password-file"), help: "File whose first line is the MQTT password.") var mqttPasswordFile: String?
    @Option(name: .customLong("mqtt-ca-file"), help: "CA bundle for mqtts:// (default: the system store).") var mqttCAFile: String?
    @Flag(name: .customLong("ha-discovery"), help: "Publish Home Assistant MQTT discovery configs (one binary_sensor per event).")
    var haDiscovery = false
    @Option(help: "Write a clip of each event (with pre- and post-roll) under this directory (config \"clips\" for the rest).")
    var clips: String?

    public init() {}

    /// The configuration file with the flags applied on top, validated.
    func effectiveConfig() throws -> DaemonConfig {
        var c = try config.map { try DaemonConfig.load(path: $0) } ?? DaemonConfig()
        if let model { c.model = model }
        if let labels { c.labels = labels }
        if let preset {
            c.preset = try modelPreset(preset)
        }
        if let device { c.device = device }
        let names = events.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        if !names.isEmpty { c.events = names }
        let customFiles = customEvents.flatMap { $0.split(separator: ",") }.map(String.init).filter { !$0.isEmpty }
        if !customFiles.isEmpty { c.customEvents = customFiles }
        for (flag, value) in [("--threshold", threshold), ("--off-threshold", offThreshold)] {
            if let value, !(value > 0 && value < 1) {
                throw DaemonError("\(flag) \(value): expected a score between 0 and 1 (exclusive)")
            }
        }
        if let threshold {
            c.defaults.onThreshold = threshold
            // Keep hysteresis valid when only --threshold is given below the default off threshold.
            if offThreshold == nil, c.defaults.offThreshold > threshold { c.defaults.offThreshold = threshold }
        }
        if let offThreshold { c.defaults.offThreshold = offThreshold }
        if let hop { c.hopSeconds = hop }
        if let settle { c.settleSeconds = settle }
        if let onsetSettle { c.onsetSettleSeconds = onsetSettle }
        if let threads { c.threads = threads }
        if bf16 { c.precision = .bfloat16 }
        if let socket { c.outputs.socket = socket }
        if let socketMode {
            guard let mode = DaemonConfig.parseSocketMode(socketMode) else {
                throw DaemonError("--socket-mode \(socketMode): expected an octal mode such as 0660")
            }
            c.outputs.socketMode = mode
        }
        if let socketGroup { c.outputs.socketGroup = socketGroup }
        if let logFile { c.outputs.logFile = logFile }
        if noStdout { c.outputs.stdout = false }
        if exitOnDeviceError { c.exitOnDeviceError = true }
        if let statsInterval { c.statsInterval = statsInterval }
        if let metricsFile { c.metricsFile = metricsFile }
        if let metricsListen { c.metricsListen = metricsListen }
        if let mqtt { c.mqtt.url = mqtt }
        if let mqttNode { c.mqtt.node = mqttNode }
        if let mqttPrefix { c.mqtt.prefix = mqttPrefix }
        if let mqttUsername { c.mqtt.username = mqttUsername }
        if let mqttPasswordFile { c.mqtt.passwordFile = mqttPasswordFile }
        if let mqttCAFile { c.mqtt.caFile = mqttCAFile }
        if haDiscovery { c.mqtt.haDiscovery = true }
        if let clips { c.clips.dir = clips }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else {
                throw DaemonError("--log-level \(logLevel): expected trace, debug, info, notice, warning, error or critical")
            }
            c.logLevel = level
        }
        try c.validate()
        return c
    }

    public func run() throws {
        try runReportingErrors {
            let config = try effectiveConfig()
            let logger = makeLogger(level: config.logLevel)
            ignoreSIGPIPE()
            try DaemonRun(config: config, logger: logger).run(input: input, paceToRealTime: paceRealtime)
        }
    }
}

/// Prints `error: …` for any failure and exits 1, instead of ArgumentParser's generic report.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        FileHandle.standardError.write(Data("htsatd: error: \(error)\n".utf8))
        throw ExitCode.failure
    }
}

/// A stderr logger (journald adds its own timestamps under systemd).
func makeLogger(level: Logger.Level) -> Logger {
    var logger = Logger(label: "htsatd") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = level
    return logger
}
