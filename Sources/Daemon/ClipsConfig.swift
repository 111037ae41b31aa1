import Clips
import Foundation

extension DaemonConfig {
    /// Keys of `clips`.
    public static let clipKeys = ["dir", "pre_roll", "post_roll", "format", "max_seconds", "max_age_days", "max_bytes",
                                  "min_free_percent", "spectrogram"]

    /// Event clips: one audio file per event under `dir` (nil: no clips), with its budget.
    public struct Clips: Equatable, Sendable, Decodable {
        public var dir: String?
        public var preRoll = 2.0, postRoll = 1.0
        public var format = ClipFormat.flac
        public var maxSeconds = 120.0
        public var maxAgeDays: Double?, maxBytes: Int?, minFreePercent: Double?
        public var spectrogram = false

        public init() {}

        /// Decodes the `clips` object.
        public init(from decoder: Decoder) throws {
            let o = try ConfigValue(decoder).object(allowed: DaemonConfig.clipKeys)
            dir = try o["dir"].nullable { try $0.path() } ?? dir
            preRoll = try o["pre_roll"]?.number() ?? preRoll
            postRoll = try o["post_roll"]?.number() ?? postRoll
            format = try o["format"]?.choice("a clip format") ?? format
            maxSeconds = try o["max_seconds"]?.number() ?? maxSeconds
            maxAgeDays = try o["max_age_days"].nullable { try $0.number() } ?? maxAgeDays
            maxBytes = try o["max_bytes"].nullable { try $0.integer() } ?? maxBytes
            minFreePercent = try o["min_free_percent"].nullable { try $0.number() } ?? minFreePercent
            spectrogram = try o["spectrogram"]?.bool() ?? spectrogram
        }

        /// The writer's settings, when clips are on.
        public var settings: ClipSettings? {
            guard let dir else { return nil }
            var s = ClipSettings(dir: dir)
            (s.preRoll, s.postRoll, s.format, s.maxSeconds, s.spectrogram) = (preRoll, postRoll, format, maxSeconds, spectrogram)
            s.budget = ClipBudget(maxAgeDays: maxAgeDays, maxBytes: maxBytes.map(Int64.init), minFreePercent: minFreePercent)
            return s
        }

        /// Every value in range, or the key that is not.
        func check() throws {
            func require(_ ok: Bool, _ key: String, _ value: Any, _ allowed: String) throws {
                if !ok { throw ConfigError(key: "clips.\(key)", message: "\(value) is not allowed; expected \(allowed)") }
            }
            try require(!(dir?.isEmpty ?? false), "dir", "\"\"", "a directory path, or null for no clips")
            for (key, value) in [("pre_roll", preRoll), ("post_roll", postRoll)] {
                try require(value.isFinite && value >= 0 && value <= 30, key, value, "0 to 30 seconds")
            }
            try require(maxSeconds.isFinite && maxSeconds >= 1 && maxSeconds <= 3600, "max_seconds", maxSeconds, "1 to 3600 seconds")
            try require(maxAgeDays.map { $0.isFinite && $0 > 0 } ?? true, "max_age_days", maxAgeDays ?? 0, "more than 0 days, or null for no limit")
            try require(maxBytes.map { $0 > 0 } ?? true, "max_bytes", maxBytes ?? 0, "a positive number of bytes, or null for no limit")
            try require(minFreePercent.map { $0.isFinite && $0 >= 0 && $0 < 100 } ?? true, "min_free_percent", minFreePercent ?? 0,
                        "0 to 100 (exclusive) percent, or null for no limit")
        }
    }
}
